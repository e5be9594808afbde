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
import os
from pathlib import Path

import datasets

from finetune.core.errors import PipelineError
from finetune.core.params import HUB_DATASET
from finetune.core.paths import TOKENIZED_DIR, raw_split_file
from finetune.core.tasks import NO_LABEL, glue_task, own_data_task
from finetune.data.files import GLUE_TSV, GlueTsv, read_delimited, read_parquet, read_table_file
from finetune.data.label_sets import label_set_columns, label_sets, train_label_names
from finetune.data.splits import LabelReading, normalised_split, require_columns, split_dataset, written_label

# A few thousand rows per split: per-operation progress bars would be noise, not progress.
datasets.disable_progress_bars()

GLUE_DIR_VARIABLE = "GLUE_DIR"
OWN_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")
# Your own files: the names each split may have (exactly one file per split).
OWN_SPLIT_FILES = {"train": ("train",), "validation": ("validation", "dev"), "test": ("test",)}


def load_data(params):
    """Return (task, splits, source): the task, its normalised splits as a DatasetDict, and
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
    splits = datasets.DatasetDict({split: _glue_split(task, split, f"{dataset}/{config} {split}", hub[split].to_dict(),
                                                      columns) for split in task.splits})
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
    splits = datasets.DatasetDict()
    for split, split_files in files.items():
        if layout == "parquet":
            table, columns = read_parquet(split_files).to_pydict(), _hub_columns(task)
        else:
            (path,) = split_files
            names = tsv.columns if path.name in tsv.headerless else None
            table, columns = read_delimited(path, "\t", csv.QUOTE_NONE, names=names, strict=False), tsv
        splits[split] = _glue_split(task, split, ", ".join(map(str, split_files)), table, columns)
    files_sha256 = {path.name: sha256(path) for split_files in files.values() for path in split_files}
    return splits, {"kind": "local", "layout": layout, "files_sha256": files_sha256}


def _hub_columns(task):
    """The columns of the Hub's data (and of its parquet files): the task's own, and `label`."""
    return GlueTsv(task.name, {}, {column: column for column in task.text_columns}, "label",
                   "float" if task.regression else "index")


def _glue_split(task, split, name, table, columns):
    """A GLUE split normalised; -1 (-1.0 for STS-B) means "no label", on test splits only."""
    unlabelled = frozenset({NO_LABEL} if split in task.test_splits else ())
    if columns.labels == "float":
        reading = LabelReading(None, unlabelled, "a number")
    else:
        classes = range(task.num_labels) if columns.labels == "index" else task.label_names
        reading = LabelReading({label: index for index, label in enumerate(classes)}, unlabelled,
                               f"one of {', '.join(map(str, classes))}")
    return normalised_split(task, name, table, columns.text, columns.label, reading)


def _load_own_data(folder, text_columns, label_column, label_delimiter, allow_empty_labels):
    label_columns = label_column if isinstance(label_column, tuple) else (label_column,)
    if {"label", "idx", *label_columns} & set(text_columns):
        raise PipelineError(f"params.yaml: text_columns must not include label_column ({label_column!r}), 'label' "
                            f"or 'idx' (data/raw's names for the label and row number), got {list(text_columns)}")
    files = _own_files(folder)
    tables = {split: read_table_file(path) for split, path in files.items()}
    require_columns(files["train"], tables["train"], [*text_columns, *label_columns])
    label_set_source = label_set_columns(label_column, label_delimiter, allow_empty_labels, tables["train"])
    if label_set_source:
        return _own_label_sets(folder, files, tables, text_columns, label_set_source)
    train_labels = [written_label(value) for value in tables["train"][label_column]]
    known = [label for label in train_labels if label is not None]
    # Any fractional number makes a regression; whole numbers and strings are classes.
    regression = any(isinstance(label, float) for label in known)
    classes = None if regression else sorted(set(known), key=lambda label: (isinstance(label, str), label))
    if classes is not None and len(classes) < 2:
        raise PipelineError(f"{files['train']}: column {label_column!r} has {len(classes)} distinct label(s) "
                            f"({_listed(classes)}); a classification needs at least two")
    label_names = None if regression else [str(label) for label in classes]
    task = own_data_task(folder.resolve().name, text_columns, label_names, "test" in files)
    if regression:
        expected = "a number (train's labels are numbers: a regression)"
    else:
        expected = f"one of train's labels ({_listed(label_names)})"
    class_indices = None if regression else {label: index for index, label in enumerate(classes)}
    splits = datasets.DatasetDict({
        split: normalised_split(task, str(path), tables[split], {column: column for column in text_columns}, label_column,
                           LabelReading(class_indices, frozenset({None} if split == "test" else ()), expected))
        for split, path in files.items()})
    return task, splits, {"kind": "local", "layout": "own", "files_sha256": {path.name: sha256(path)
                                                                             for path in files.values()}}


def _own_label_sets(folder, files, tables, text_columns, source):
    """A multi-label task of your own files (finetune/data/label_sets.py)."""
    label_names = train_label_names(files["train"], tables["train"], source)
    task = own_data_task(folder.resolve().name, text_columns, label_names, "test" in files, multi_label=True)
    splits = datasets.DatasetDict()
    for split, path in files.items():
        require_columns(path, tables[split], [*text_columns, *([] if split == "test" else source.names)])
        labels = label_sets(path, tables[split], source, label_names, unlabelled_allowed=split == "test")
        splits[split] = split_dataset(task, str(path), tables[split], {column: column for column in text_columns},
                                       labels)
    return task, splits, {"kind": "local", "layout": "own", "files_sha256": {path.name: sha256(path)
                                                                             for path in files.values()}}


def _own_files(folder):
    files = {}
    for split, names in OWN_SPLIT_FILES.items():
        found = [folder / f"{name}.{fmt}" for name in names for fmt in OWN_FORMATS if (folder / f"{name}.{fmt}").is_file()]
        if len(found) > 1:
            raise PipelineError(f"split {split!r} has {len(found)} files: {', '.join(map(str, found))}; keep one")
        if found:
            files[split] = found[0]
        elif split != "test":
            raise PipelineError(f"split {split!r} missing: no file {' or '.join(names)} "
                                f"(.{', .'.join(OWN_FORMATS[:-1])} or .{OWN_FORMATS[-1]}) in {folder}")
    return files


def _listed(labels, limit=10):
    shown = ", ".join(map(str, labels[:limit]))
    return shown if len(labels) <= limit else f"{shown}, ... ({len(labels)} in all)"


def load_raw_splits(task):
    missing = [raw_split_file(split) for split in task.splits if not raw_split_file(split).is_file()]
    if missing:
        raise PipelineError(f"{missing[0]} not found: run `dvc repro download` first")
    return datasets.DatasetDict({split: datasets.Dataset(read_parquet([raw_split_file(split)]))
                                 for split in task.splits})


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
