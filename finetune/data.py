"""Loading MRPC: from the Hugging Face Hub, or offline from a local GLUE folder; and checking it.

Offline, `GLUE_DIR` names a folder in one of two layouts (the same variable BERT's
original GLUE scripts use, so machine-specific paths stay out of params.yaml):
  - the Hub's parquet layout: <GLUE_DIR>/mrpc/{train,validation,test}-*.parquet
  - the classic GLUE TSV layout: <GLUE_DIR>/MRPC/{train,dev,test}.tsv (test without labels)
"""

import csv
import hashlib
import os
from pathlib import Path

import datasets
import pyarrow
import pyarrow.parquet

from finetune.errors import PipelineError
from finetune.paths import SPLITS, TOKENIZED_DIR, raw_split_file

# MRPC is a few thousand rows: per-operation progress bars would be noise, not progress.
datasets.disable_progress_bars()

GLUE_DIR_VARIABLE = "GLUE_DIR"
LABEL_NAMES = ["not_equivalent", "equivalent"]
# GLUE's convention for a split without labels (its test sets).
NO_LABEL = -1
FEATURES = datasets.Features(
    {
        "sentence1": datasets.Value("string"),
        "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=LABEL_NAMES),
        "idx": datasets.Value("int32"),
    }
)
TSV_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def load_mrpc(dataset, config):
    """Return (splits, source): a DatasetDict with FEATURES, and where it came from."""
    glue_dir = os.environ.get(GLUE_DIR_VARIABLE)
    if glue_dir:
        return _load_local(Path(glue_dir), config)
    return _load_from_hub(dataset, config)


def _load_from_hub(dataset, config):
    try:
        splits = datasets.load_dataset(dataset, config)
    except (OSError, ConnectionError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(
            f"could not load {dataset!r} (config {config!r}) from the Hugging Face Hub ({reason}). "
            f"To use a local copy, set {GLUE_DIR_VARIABLE} to the folder that contains {config}/ "
            f"(Hub parquet files) or {config.upper()}/ (GLUE TSV files), "
            f"e.g. {GLUE_DIR_VARIABLE}=../shared/data/glue dvc repro"
        ) from None
    source = {"kind": "hub", "dataset": dataset, "config": config}
    return _checked(splits, {split: f"{dataset}/{config} {split}" for split in splits}), source


def _load_local(glue_dir, config):
    if not glue_dir.is_dir():
        raise PipelineError(
            f"{GLUE_DIR_VARIABLE}={glue_dir}: no such folder; point it at the folder that "
            f"contains {config}/ (Hub parquet files) or {config.upper()}/ (GLUE TSV files)"
        )
    parquet_dir, tsv_dir = glue_dir / config, glue_dir / config.upper()
    if parquet_dir.is_dir() and any(parquet_dir.glob("*.parquet")):
        files = {split: sorted(parquet_dir.glob(f"{split}-*.parquet")) for split in SPLITS}
        layout, read = "parquet", _read_parquet
    elif tsv_dir.is_dir() and any(tsv_dir.glob("*.tsv")):
        files = {split: [tsv_dir / TSV_FILES[split]] for split in SPLITS}
        layout, read = "tsv", _read_tsv
    else:
        raise PipelineError(
            f"{GLUE_DIR_VARIABLE}={glue_dir}: found neither {parquet_dir}/*.parquet "
            f"nor {tsv_dir}/*.tsv"
        )
    for split, split_files in files.items():
        if not split_files or not all(path.is_file() for path in split_files):
            expected = split_files[0] if split_files else parquet_dir / f"{split}-*.parquet"
            raise PipelineError(f"split {split!r} missing: no file {expected}")
    splits = datasets.DatasetDict({split: read(split_files) for split, split_files in files.items()})
    source = {
        "kind": "local",
        "layout": layout,
        "files_sha256": {path.name: sha256(path) for split_files in files.values() for path in split_files},
    }
    names = {split: ", ".join(str(path) for path in split_files) for split, split_files in files.items()}
    return _checked(splits, names), source


def _read_parquet(paths):
    tables = []
    for path in paths:
        try:
            tables.append(pyarrow.parquet.read_table(path))
        except (pyarrow.ArrowException, OSError) as error:
            raise PipelineError(f"{path}: unreadable parquet file ({error})") from None
    return datasets.Dataset(pyarrow.concat_tables(tables))


def _read_tsv(paths):
    (path,) = paths
    with open(path, newline="", encoding="utf-8") as tsv_file:
        # GLUE's TSVs are not quoted: sentences contain bare " characters.
        rows = list(csv.DictReader(tsv_file, delimiter="\t", quoting=csv.QUOTE_NONE))
    columns = {"sentence1": [], "sentence2": [], "label": [], "idx": []}
    for row_number, row in enumerate(rows):
        for tsv_column in ("#1 String", "#2 String"):
            if tsv_column not in row:
                raise PipelineError(f"{path}: missing column {tsv_column!r}")
        columns["sentence1"].append(row["#1 String"])
        columns["sentence2"].append(row["#2 String"])
        columns["label"].append(_tsv_label(path, row_number, row.get("Quality")))
        columns["idx"].append(row_number)
    return datasets.Dataset.from_dict(columns)


def _tsv_label(path, row_number, value):
    if value is None:  # GLUE's test.tsv has no Quality column
        return NO_LABEL
    try:
        return int(value)
    except ValueError:
        raise PipelineError(f"{path} row {row_number}: label {value!r} is not 0 or 1") from None


def _checked(splits, names):
    """Check every split's columns, labels and sentences; return them cast to FEATURES."""
    missing_splits = [split for split in SPLITS if split not in splits]
    if missing_splits:
        raise PipelineError(f"split {missing_splits[0]!r} missing (found: {', '.join(splits)})")
    checked = datasets.DatasetDict()
    for split in SPLITS:
        data, name = splits[split], names[split]
        missing = [column for column in FEATURES if column not in data.column_names]
        if missing:
            raise PipelineError(f"{name}: missing column {missing[0]!r} (found: {', '.join(data.column_names)})")
        if len(data) == 0:
            raise PipelineError(f"{name}: no rows")
        labels = data["label"]
        allowed = {0, 1, NO_LABEL} if split == "test" else {0, 1}
        for row, label in enumerate(labels):
            if label not in allowed:
                raise PipelineError(f"{name} row {row}: label {label!r} is not 0 or 1")
        for column in ("sentence1", "sentence2"):
            for row, sentence in enumerate(data[column]):
                if not isinstance(sentence, str) or not sentence.strip():
                    raise PipelineError(f"{name} row {row}: {column} is empty or not text ({sentence!r})")
        checked[split] = data.select_columns(list(FEATURES)).cast(FEATURES)
    return checked


def has_labels(split_data):
    return NO_LABEL not in set(split_data["label"])


def load_raw_splits():
    missing = [raw_split_file(split) for split in SPLITS if not raw_split_file(split).is_file()]
    if missing:
        raise PipelineError(f"{missing[0]} not found: run `dvc repro download` first")
    return datasets.DatasetDict({split: _read_parquet([raw_split_file(split)]) for split in SPLITS})


def load_tokenized():
    """The tokenize stage's output, in memory: then shuffles and selects never write cache
    files into data/tokenized/, which would change that DVC output under DVC's feet."""
    if not TOKENIZED_DIR.is_dir():
        raise PipelineError(f"{TOKENIZED_DIR} not found: run `dvc repro tokenize` first")
    return datasets.load_from_disk(str(TOKENIZED_DIR), keep_in_memory=True)


def sorted_by_length(split_data):
    """The split ordered by token count: batches of similar lengths need little padding,
    and evaluation results do not depend on the order."""
    lengths = [len(input_ids) for input_ids in split_data["input_ids"]]
    return split_data.select(sorted(range(len(lengths)), key=lengths.__getitem__))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as data_file:
        for block in iter(lambda: data_file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
