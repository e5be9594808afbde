"""Loading a task's data from where it is, and reading back what the stages wrote.

Sources: a GLUE task (`dataset: nyu-mll/glue`, `dataset_config` one of finetune/core/tasks.py's
GLUE_TASKS) from the Hugging Face Hub, or offline from `GLUE_DIR` (the variable BERT's GLUE
scripts use, so machine-specific paths stay out of params.yaml) in either layout:
  - the Hub's parquet files: <GLUE_DIR>/<config>/<split>-*.parquet
  - GLUE's own TSV files: <GLUE_DIR>/<folder>/<file>.tsv, as the table GLUE_TSV describes them
or a folder of your own files: train, validation (or dev) and optionally test, each .csv, .tsv,
.json (an array of records, or JSON lines), .jsonl or .parquet, UTF-8 with or without a BOM.

Every source becomes the same normalised splits, checked (finetune/data/splits.py).
"""

import csv
import hashlib
import itertools
import os
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute
import pyarrow.dataset

from finetune.core.errors import PipelineError
from finetune.core.params import HUB_DATASET
from finetune.core.paths import TOKENIZED_DIR, raw_split_file
from finetune.core.tasks import NO_LABEL, glue_task, own_data_task
from finetune.data.files import (
    CHUNK_ROWS,
    GLUE_TSV,
    GlueTsv,
    delimited_chunks,
    joined,
    parquet_chunks,
    table_chunks,
)
from finetune.data.label_sets import label_set_columns, label_sets, train_label_names
from finetune.data.splits import LabelReading, normalised_chunks, require_columns, split_dataset, written_label

# The stages print their own progress lines (finetune/data/progress.py), per split, not per operation.
datasets.disable_progress_bars()

GLUE_DIR_VARIABLE = "GLUE_DIR"
OWN_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")
# Your own files: the names each split may have (exactly one file per split).
OWN_SPLIT_FILES = {"train": ("train",), "validation": ("validation", "dev"), "test": ("test",)}


def load_data(params):
    """Return (task, splits, source): the task, {split: its normalised rows, an iterable of Datasets of
    up to CHUNK_ROWS rows each (read as they are iterated: memory stays flat in the data's size)}, and
    where they came from (for provenance.json)."""
    if params.dataset != HUB_DATASET:
        return _load_own_data(Path(params.dataset), params.text_columns, params.label_column, params.label_delimiter,
                              params.allow_empty_labels)
    task = glue_task(params.dataset_config)
    glue_dir = os.environ.get(GLUE_DIR_VARIABLE)
    splits, source = _load_glue_dir(Path(glue_dir), task) if glue_dir else _load_from_hub(params.dataset, task)
    return task, splits, source


def _load_from_hub(dataset, task):
    config = task.name
    try:
        hub = datasets.load_dataset(dataset, config)
    except (OSError, ConnectionError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(
            f"could not load {dataset!r} (config {config!r}) from the Hugging Face Hub ({reason}). "
            f"To use a local copy, set {GLUE_DIR_VARIABLE} to the folder that contains {config}/ "
            f"(Hub parquet files) or {GLUE_TSV[config].folder}/ (GLUE TSV files), "
            f"e.g. {GLUE_DIR_VARIABLE}=../shared/data/glue dvc repro"
        ) from None
    missing = [split for split in task.splits if split not in hub]
    if missing:
        raise PipelineError(f"split {missing[0]!r} missing (found: {', '.join(hub)})")
    columns = _hub_columns(task)
    splits = {split: _glue_split(task, split, f"{dataset}/{config} {split}", hub[split].iter(batch_size=CHUNK_ROWS),
                                 columns) for split in task.splits}
    return splits, {"kind": "hub", "dataset": dataset, "config": config}


def _load_glue_dir(glue_dir, task):
    tsv = GLUE_TSV[task.name]
    parquet_dir, tsv_dir = glue_dir / task.name, glue_dir / tsv.folder
    if not glue_dir.is_dir():
        raise PipelineError(f"{GLUE_DIR_VARIABLE}={glue_dir}: no such folder; point it at the folder that "
                            f"contains {task.name}/ (Hub parquet files) or {tsv.folder}/ (GLUE TSV files)")
    if parquet_dir.is_dir() and any(parquet_dir.glob("*.parquet")):
        layout, files = "parquet", {split: sorted(parquet_dir.glob(f"{split}-*.parquet")) for split in task.splits}
    elif tsv_dir.is_dir() and any(tsv_dir.glob("*.tsv")):
        layout, files = "tsv", {split: [tsv_dir / tsv.files[split]] for split in task.splits}
    else:
        raise PipelineError(f"{GLUE_DIR_VARIABLE}={glue_dir}: found neither {parquet_dir}/*.parquet nor {tsv_dir}/*.tsv")
    for split, split_files in files.items():
        if not split_files or not all(path.is_file() for path in split_files):
            expected = split_files[0] if split_files else parquet_dir / f"{split}-*.parquet"
            raise PipelineError(f"split {split!r} missing: no file {expected}")
    splits = {}
    for split, split_files in files.items():
        if layout == "parquet":
            chunks, columns = parquet_chunks(split_files), _hub_columns(task)
        else:
            (path,) = split_files
            names = tsv.columns if path.name in tsv.headerless else None
            chunks, columns = delimited_chunks(path, "\t", csv.QUOTE_NONE, names=names, strict=False), tsv
        splits[split] = _glue_split(task, split, ", ".join(map(str, split_files)), chunks, columns)
    files_sha256 = {path.name: sha256(path) for split_files in files.values() for path in split_files}
    return splits, {"kind": "local", "layout": layout, "files_sha256": files_sha256}


def _hub_columns(task):
    """The columns of the Hub's data (and of its parquet files): the task's own, and `label`."""
    return GlueTsv(task.name, {}, {column: column for column in task.text_columns}, "label",
                   "float" if task.regression else "index")


def _glue_split(task, split, name, chunks, columns):
    """A GLUE split normalised; -1 (-1.0 for STS-B) means "no label", on test splits only."""
    unlabelled = frozenset({NO_LABEL} if split in task.test_splits else ())
    if columns.labels == "float":
        reading = LabelReading(None, unlabelled, "a number")
    else:
        classes = range(task.num_labels) if columns.labels == "index" else task.label_names
        reading = LabelReading({label: index for index, label in enumerate(classes)}, unlabelled,
                               f"one of {', '.join(map(str, classes))}")
    return normalised_chunks(task, name, chunks, columns.text, columns.label, reading)


def _load_own_data(folder, text_columns, label_column, label_delimiter, allow_empty_labels):
    label_columns = label_column if isinstance(label_column, tuple) else (label_column,)
    if {"label", "idx", *label_columns} & set(text_columns):
        raise PipelineError(f"params.yaml: text_columns must not include label_column ({label_column!r}), 'label' "
                            f"or 'idx' (data/raw's names for the label and row number), got {list(text_columns)}")
    shards = _own_files(folder)
    sources = {"kind": "local", "layout": "own",
               "files_sha256": {path.name: sha256(path) for paths in shards.values() for path in paths}}
    label_sets_given = isinstance(label_column, tuple) or label_delimiter
    known, lists = (set(), True) if label_sets_given else _train_labels(shards["train"], text_columns, label_column)
    if lists:  # a multi-label task, read whole (its label names are known only once every row is read)
        files = {split: _named(paths) for split, paths in shards.items()}
        tables = {split: joined(itertools.chain.from_iterable(map(table_chunks, paths))) for split, paths in shards.items()}
        require_columns(files["train"], tables["train"], [*text_columns, *label_columns])
        source = label_set_columns(label_column, label_delimiter, allow_empty_labels, tables["train"])
        return (*_own_label_sets(folder, files, tables, text_columns, source), sources)
    # Any fractional number makes a regression; whole numbers and strings are classes.
    regression = any(isinstance(label, float) for label in known)
    classes = None if regression else sorted(known, key=lambda label: (isinstance(label, str), label))
    if classes is not None and len(classes) < 2:
        raise PipelineError(f"{_named(shards['train'])}: column {label_column!r} has {len(classes)} distinct label(s) "
                            f"({_listed(classes)}); a classification needs at least two")
    label_names = None if regression else [str(label) for label in classes]
    task = own_data_task(folder.resolve().name, text_columns, label_names, "test" in shards)
    if regression:
        expected = "a number (train's labels are numbers: a regression)"
    else:
        expected = f"one of train's labels ({_listed(label_names)})"
    class_indices = None if regression else {label: index for index, label in enumerate(classes)}
    text = {column: column for column in text_columns}
    splits = {split: _shard_chunks(task, paths, text, label_column,
                                   LabelReading(class_indices, frozenset({None} if split == "test" else ()), expected))
              for split, paths in shards.items()}
    return task, splits, sources


def _shard_chunks(task, paths, text, label, reading):
    """The normalised chunks of a split's files one after the other, numbered on across them (a bad
    row is named by its file and its row there)."""
    earlier_rows = 0
    for path in paths:
        rows = 0
        for chunk in normalised_chunks(task, str(path), table_chunks(path), text, label, reading, earlier_rows):
            rows += len(chunk)
            yield chunk
        earlier_rows += rows


def _train_labels(paths, text_columns, label_column):
    """(train's distinct labels as written, whether a cell holds a list: a multi-label task), read
    chunk by chunk; the train files' columns checked."""
    known = set()
    for path in paths:
        for chunk in table_chunks(path):
            require_columns(path, chunk, [*text_columns, label_column])
            values = chunk[label_column]
            if any(isinstance(value, list) for value in values):
                return known, True
            known.update(label for label in map(written_label, values) if label is not None)
    return known, False


def _own_label_sets(folder, files, tables, text_columns, source):
    """A multi-label task of your own files (finetune/data/label_sets.py)."""
    label_names = train_label_names(files["train"], tables["train"], source)
    task = own_data_task(folder.resolve().name, text_columns, label_names, "test" in files, multi_label=True)
    splits = {}
    for split, path in files.items():
        require_columns(path, tables[split], [*text_columns, *([] if split == "test" else source.names)])
        labels = label_sets(path, tables[split], source, label_names, unlabelled_allowed=split == "test")
        splits[split] = [split_dataset(task, str(path), tables[split], {column: column for column in text_columns},
                                       labels)]
    return task, splits


def _own_files(folder):
    """{split: its files}: one file (train.csv), or shards of one format read in name order
    (train-00000-of-00004.parquet, ...)."""
    files = {}
    for split, names in OWN_SPLIT_FILES.items():
        found = [[folder / f"{name}.{fmt}"] for name in names for fmt in OWN_FORMATS if (folder / f"{name}.{fmt}").is_file()]
        found += [shards for name in names for fmt in OWN_FORMATS if (shards := sorted(folder.glob(f"{name}-*.{fmt}")))]
        if len(found) > 1:
            raise PipelineError(f"split {split!r} has {len(found)} files or sets of shards: "
                                f"{'; '.join(map(_named, found))}; keep one (shards: of one format)")
        if found:
            files[split] = found[0]
        elif split != "test":
            raise PipelineError(f"split {split!r} missing: no file {' or '.join(names)} "
                                f"(.{', .'.join(OWN_FORMATS[:-1])} or .{OWN_FORMATS[-1]}) in {folder}")
    return files


def _named(paths):
    """A split's file, or its shards as a pattern: <folder>/train-*.csv."""
    if len(paths) == 1:
        return str(paths[0])
    return str(paths[0].with_name(f"{paths[0].name.split('-')[0]}-*{paths[0].suffix}"))


def _listed(labels, limit=10):
    shown = ", ".join(map(str, labels[:limit]))
    return shown if len(labels) <= limit else f"{shown}, ... ({len(labels)} in all)"


def load_raw_splits(task, scratch):
    """data/raw's splits, memory-mapped from Arrow copies in the folder `scratch` (not read into memory)."""
    missing = [raw_split_file(split) for split in task.splits if not raw_split_file(split).is_file()]
    if missing:
        raise PipelineError(f"{missing[0]} not found: run `dvc repro download` first")
    # Arrow's pre-buffering reads row groups ahead of the conversion: tokenize took 150 to 200 MB more
    # at a million rows than at 100,000 with it, about 50 MB more without (docs/measurements.md).
    reading = pyarrow.dataset.ParquetFragmentScanOptions(pre_buffer=False)
    return datasets.DatasetDict({
        split: datasets.Dataset.from_parquet(str(raw_split_file(split)), cache_dir=scratch,
                                             fragment_scan_options=reading)
        for split in task.splits})


def load_tokenized():
    """The tokenize stage's output, in memory: then shuffles and selects never write cache
    files into data/tokenized/, which would change that DVC output under DVC's feet."""
    if not TOKENIZED_DIR.is_dir():
        raise PipelineError(f"{TOKENIZED_DIR} not found: run `dvc repro tokenize` first")
    return datasets.load_from_disk(str(TOKENIZED_DIR), keep_in_memory=True)


def sorted_by_length(split_data):
    """The split ordered by token count: batches of similar lengths need little padding,
    and evaluation results do not depend on the order. Ties keep the split's order."""
    return split_data.select(np.argsort(token_counts(split_data), kind="stable"))


def token_counts(split_data):
    """Each row's token count, from Arrow (a million rows are not a million Python lists)."""
    return pyarrow.compute.list_value_length(split_data.with_format("arrow")["input_ids"]).to_numpy()


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as data_file:
        for block in iter(lambda: data_file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
