"""`finetune predict`: a published model on new rows, in the input's order, to a CSV.

Reads any file the pipeline reads (csv, tsv, json, jsonl, parquet, or a folder of them, in name
order) chunk by chunk (finetune/data/files.py), predicts each chunk in length-sorted batches and
appends its rows to the output, so memory stays flat in the input's length. Where the input has the
label column, prints the task's metrics with bootstrap intervals, as the evaluate stage reports them.
"""

import csv
import json
import time
from pathlib import Path

import numpy as np

from finetune.core.errors import PipelineError
from finetune.core.metrics import LOSS
from finetune.core.outputs import atomic_output
from finetune.data.files import table_chunks
from finetune.data.loading import OWN_FORMATS
from finetune.data.progress import Progress
from finetune.data.splits import checked_texts, require_columns, written_label
from finetune.scoring.scores import (
    bootstrap_intervals,
    example_losses,
    label_set_names,
    predictions_of,
    probabilities_of,
    task_metrics,
)
from finetune.serving.engines import load_engine

FORMATS = tuple(f".{fmt}" for fmt in OWN_FORMATS)
# Rows tokenized and predicted at a time: memory is set by this, not by the file's length (the
# tokenizer's Python lists of 50,000 pairs took 0.9 GB more than those of 10,000, measured).
CHUNK_ROWS = 10_000


def input_files(path):
    """The files of `path`: itself, or a folder's files of the formats read, in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(file for file in path.iterdir() if file.suffix in FORMATS)
        if not files:
            raise PipelineError(f"{path}: no {', '.join(FORMATS)} file in the folder")
        return files
    if not path.is_file():
        raise PipelineError(f"{path}: no such file or folder")
    if path.suffix not in FORMATS:
        raise PipelineError(f"{path}: not a file the pipeline reads ({', '.join(FORMATS)})")
    return [path]


def predict(source, output, engine_name, model_folder, exported_folder, options):
    """Predictions of every row of `source` to `output` (CSV); the metrics where it has labels.
    `options`: batch_size, precision, label_column, id_column, threshold (None: the model's),
    bootstrap_resamples, bootstrap_seed."""
    files = input_files(source)
    engine = load_engine(engine_name, model_folder, exported_folder, options.batch_size, options.precision)
    task, threshold = engine.served.task, options.threshold or engine.served.multi_label_threshold
    started, rows = time.perf_counter(), 0
    labelled = _Labelled(task)
    progress = Progress(f"predict ({engine_name})", _known_rows(files))
    with atomic_output(output) as staging, open(staging, "w", newline="") as output_file:
        writer = csv.writer(output_file)
        writer.writerow(_header(task, options.id_column))
        for path in files:
            for chunk in table_chunks(path, CHUNK_ROWS):
                count = max((len(values) for values in chunk.values()), default=0)
                if not count:
                    continue
                require_columns(str(path), chunk, task.text_columns)
                texts = [checked_texts(path, column, chunk[column], rows) for column in task.text_columns]
                ids = chunk[options.id_column] if options.id_column in chunk else range(rows, rows + count)
                labels = labelled.read(path, rows, chunk.get(options.label_column))
                logits = engine.logits(texts, lambda done, _: progress.advance(done))
                writer.writerows(_rows(task, ids, logits, threshold))
                labelled.add(labels, logits, threshold)
                rows += count
    elapsed = time.perf_counter() - started
    print(f"predict: {rows:,} rows ({engine_name}) -> {output} in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)")
    if labelled.complete and rows:
        started = time.perf_counter()
        metrics = labelled.metrics(options.bootstrap_resamples, options.bootstrap_seed)
        print("predict: " + ", ".join(f"{name} {value:.4f} [{low:.4f}, {high:.4f}]"
                                      for name, (value, low, high) in metrics.items())
              + f" ({options.bootstrap_resamples:,} bootstrap resamples in {time.perf_counter() - started:.0f}s)")
        return metrics
    return None


def _known_rows(files):
    """The rows of the input where its files say so without being read (parquet's metadata): the
    progress lines then give the time left; else None (rows and rows/s only)."""
    if not all(path.suffix == ".parquet" for path in files):
        return None
    import pyarrow.parquet

    return sum(pyarrow.parquet.ParquetFile(path).metadata.num_rows for path in files)


def _header(task, id_column):
    if task.regression:
        return [id_column, "prediction"]
    return [id_column, "prediction", *(f"probability_{name}" for name in task.label_names)]


def _rows(task, ids, logits, threshold):
    predictions = predictions_of(task, logits, threshold)
    if task.regression:
        return [[row_id, f"{value:.6f}"] for row_id, value in zip(ids, predictions.tolist(), strict=True)]
    probabilities = probabilities_of(task, logits)
    if task.multi_label:
        shown = [label_set_names(task, flags) for flags in predictions]
    else:
        shown = np.asarray(task.label_names, dtype=object)[predictions].tolist()
    return [[row_id, prediction, *(f"{value:.6f}" for value in row)]
            for row_id, prediction, row in zip(ids, shown, probabilities, strict=True)]


class _Labelled:
    """The labels of an input that has them, and what the metrics need of each row: its prediction,
    its label and its loss (numbers, not texts: memory stays small however long the input)."""

    def __init__(self, task):
        self.task, self.complete = task, True
        self.predictions, self.labels, self.losses = [], [], []
        self.names = {} if task.regression else {name: index for index, name in enumerate(task.label_names)}

    def read(self, path, first_row, values):
        if values is None:
            self.complete = False
        if not self.complete:
            return None
        return [self._label(path, first_row + row, value) for row, value in enumerate(values)]

    def _label(self, path, row, value):
        task, names = self.task, self.names
        if task.multi_label:
            written = value if isinstance(value, list) else json.loads(value) if isinstance(value, str) else None
            unknown = [name for name in written or () if name not in names]
            if written is None or unknown:
                raise PipelineError(f"{path} row {row}: label {value!r} is not a list of the model's labels "
                                    f"({', '.join(task.label_names)})")
            return [float(name in written) for name in task.label_names]
        written = written_label(value)
        if task.regression and isinstance(written, (int, float)) and not isinstance(written, bool):
            return float(written)
        if not task.regression and str(written) in names:
            return names[str(written)]
        if not task.regression and isinstance(written, int) and 0 <= written < task.num_labels:
            return written  # a class index, as GLUE's files write labels
        expected = "a number" if task.regression else f"one of {', '.join(task.label_names)} or a class index"
        raise PipelineError(f"{path} row {row}: label {value!r} is not {expected}")

    def add(self, labels, logits, threshold):
        if labels is None:
            return
        labels = np.asarray(labels, dtype=np.float32 if self.task.regression or self.task.multi_label else np.int64)
        self.predictions.append(predictions_of(self.task, logits, threshold))
        self.labels.append(labels)
        self.losses.append(example_losses(self.task, logits, labels))

    def metrics(self, resamples, seed):
        """{metric: (value, interval low, high)} of the task's metrics and the mean loss."""
        predictions, labels, losses = (np.concatenate(parts) for parts in (self.predictions, self.labels, self.losses))
        points = {**task_metrics(self.task, predictions, labels), LOSS: float(losses.mean())}
        intervals = bootstrap_intervals(self.task, predictions, labels, losses, resamples, seed, "predict")
        return {name: (value, *intervals[name]) for name, value in points.items()}
