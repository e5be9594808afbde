"""Build a multi-label text data set from GoEmotions (Demszky et al., 2020): Reddit comments,
each with one or more of 27 emotions or `neutral`. Reads the rater-agreement split
(train.tsv, dev.tsv, test.tsv: text, comma-separated label ids, comment id; no header) and the
label names (emotions.txt, or labels.txt in copies such as monologg/GoEmotions-pytorch's
data/original), and writes train.jsonl, validation.jsonl and test.jsonl with one
{"text": ..., "labels": [names...]} a line.

Source: https://github.com/google-research/google-research/tree/master/goemotions (data/).
Licence: that repository's README releases its data sets under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/legalcode); credit the paper when you use them.
The files are for your runs, not for this repository.

    python scripts/goemotions.py path/to/goemotions/data data/goemotions
    python scripts/goemotions.py --git-dir /path/to/GoEmotions-pytorch.git data/original data/goemotions
    python scripts/goemotions.py ... --max-train 2000     # the first 2000 train rows: a short CPU run
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
LABEL_FILES = ("emotions.txt", "labels.txt")


class BadInputError(Exception):
    pass


def decode(name, data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        row = data.count(b"\n", 0, error.start) + 1
        raise BadInputError(f"{name}:{row}: not UTF-8 ({error.reason})") from None


def reader_for(source, git_dir, revision):
    """A function from a file name to its text, or None if the source lacks it."""
    if git_dir is None:
        if not Path(source).is_dir():
            raise BadInputError(f"{source}: not a folder")
        print(f"source: {source}")

        def read(name):
            path = Path(source) / name
            return decode(name, path.read_bytes()) if path.is_file() else None

        return read

    # Resolved once, so every file comes from the same commit, and named for the record.
    resolved = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-parse", "--verify", f"{revision}^{{commit}}"], capture_output=True, text=True
    )
    if resolved.returncode != 0:
        raise BadInputError(f"{git_dir}: not a git repository with a commit {revision!r}")
    commit = resolved.stdout.strip()
    print(f"source: {git_dir} {commit}:{source}")

    def read(name):
        # Paths inside a git tree are always '/'-separated, whatever the OS.
        spec = f"{commit}:{source.strip('/')}/{name}"
        shown = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "blob", spec], capture_output=True)
        return decode(name, shown.stdout) if shown.returncode == 0 else None

    return read


def read_label_names(read):
    for file_name in LABEL_FILES:
        text = read(file_name)
        if text is not None:
            break
    else:
        raise BadInputError(f"no label names file ({' or '.join(LABEL_FILES)}) in the source")
    names = text.splitlines()
    for row, name in enumerate(names, start=1):
        if not name.strip() or name != name.strip() or names.index(name) != row - 1:
            raise BadInputError(f"{file_name}:{row}: empty, padded or repeated label name {name!r}")
    return names


def read_split(file_name, text, names, limit=None):
    records = []
    # One record a line: GoEmotions has no line breaks inside texts, so a quote that runs over
    # a line end is an error here, reported on its own row rather than rows later.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for row, line in enumerate(lines, start=1):
        if limit is not None and len(records) == limit:
            break
        # csv, not str.split: the texts carry CSV quoting ("" for a quote), as pandas reads
        # them in Google's own code.
        try:
            fields = next(csv.reader([line.removesuffix("\r")], delimiter="\t", strict=True))
        except csv.Error as error:
            raise BadInputError(f"{file_name}:{row}: {error}") from None
        if len(fields) != 3:
            raise BadInputError(f"{file_name}:{row}: {len(fields)} fields, not text, label ids, id")
        comment, label_ids, _ = fields
        if not comment.strip():
            raise BadInputError(f"{file_name}:{row}: empty text")
        try:
            ids = [int(part) for part in label_ids.split(",")]
        except ValueError:
            raise BadInputError(f"{file_name}:{row}: label ids {label_ids!r} are not integers") from None
        if any(not 0 <= i < len(names) for i in ids) or len(set(ids)) != len(ids):
            raise BadInputError(f"{file_name}:{row}: label ids {label_ids!r} out of 0..{len(names) - 1} or repeated")
        records.append({"text": comment, "labels": [names[i] for i in ids]})
    if not records:
        raise BadInputError(f"{file_name}: no rows")
    return records


def write_atomically(path, records):
    # A temp file beside the target, then a rename: a reader sees the old file or the whole new one.
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with open(descriptor, "w", encoding="utf-8") as temp_file:
            for record in records:
                temp_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        # mkstemp makes files owner-only; the data set should get the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_name, 0o666 & ~umask)
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the folder of the TSVs and label names (inside --git-dir's tree, if given)")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--git-dir", type=Path, help="read the source from this git repository, not the file system")
    parser.add_argument("--revision", default="HEAD", help="the commit to read with --git-dir (HEAD)")
    parser.add_argument("--max-train", type=int, help="keep only the first N train rows")
    arguments = parser.parse_args(argv)
    if arguments.max_train is not None and arguments.max_train < 1:
        parser.error(f"--max-train must be at least 1, got {arguments.max_train}")

    try:
        read = reader_for(arguments.source, arguments.git_dir, arguments.revision)
        names = read_label_names(read)
        splits = {}
        # Every split is read and checked before any is written: bad input leaves no new files.
        for split, file_name in SPLITS.items():
            text = read(file_name)
            if text is None:
                raise BadInputError(f"{file_name}: not in the source")
            limit = arguments.max_train if split == "train" else None
            splits[split] = read_split(file_name, text, names, limit)
    except (BadInputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        write_atomically(arguments.output_dir / f"{split}.jsonl", records)
        several = sum(len(record["labels"]) > 1 for record in records)
        print(f"{split}: {len(records)} rows, {several / len(records):.1%} with more than one label")
    print(f"{len(names)} labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
