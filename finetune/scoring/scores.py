"""Scoring predictions: each task's metrics, and bootstrap confidence intervals around them.

On MRPC's 408 validation pairs one example is 0.25 accuracy points, so every point metric
the pipeline reports comes with a 95% percentile-bootstrap interval. Each metric has one
implementation, in finetune/core/metrics.py, vectorised over resamples (one resample per row):
the `evaluate` module (`glue_metric.py`), `compute_metrics` and the bootstrap all call it.
"""

import functools
import json
from pathlib import Path

import evaluate
import numpy as np
import torch
from transformers import TrainerCallback

from finetune.core.metrics import LOSS, label_set_counts, label_set_values, metric_values
from finetune.core.outputs import write_csv
from finetune.core.tasks import NO_LABEL
from finetune.data.loading import sorted_by_length, token_counts
from finetune.data.progress import Progress

METRIC_SCRIPT = Path(__file__).with_name("glue_metric.py")
CONFIDENCE = 0.95
# Resamples drawn at once: at most this many, and at most _DRAWS_PER_CHUNK example indices in all,
# which bounds memory whatever the split's size (500 x 391k test pairs would be GBs). Drawing in
# chunks of any size takes the same numbers from the generator, so the intervals do not depend on it.
_RESAMPLE_CHUNK = 500
_DRAWS_PER_CHUNK = 4_000_000


@functools.cache
def _metric_module(task_name, metrics, num_labels, multi_label):
    return evaluate.load(str(METRIC_SCRIPT), config_name=task_name, metrics=metrics, num_labels=num_labels,
                         multi_label=multi_label)


def task_metrics(task, predictions, references):
    """The task's metrics, as GLUE reports them, from the project's `evaluate` module."""
    module = _metric_module(task.name, task.metrics, task.num_labels, task.multi_label)
    return module.compute(predictions=predictions, references=references_of(task, references))


def references_of(task, labels):
    """Labels as the metrics score them: a multi-label task's multi-hot floats as 0/1 integers."""
    labels = np.asarray(labels)
    return (labels > 0.5).astype(np.int64) if task.multi_label else labels


def probabilities_of(task, logits):
    """Each class's softmax probability, or a multi-label task's sigmoid of each label."""
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return (logits.sigmoid() if task.multi_label else logits.softmax(dim=-1)).numpy()


def predictions_of(task, logits, threshold=0.5):
    """Class indices (argmax), a multi-label task's 0/1 per label (its probability at least
    `threshold`, the param multi_label_threshold) or, for a regression, the single output."""
    if task.multi_label:
        return (probabilities_of(task, logits) >= threshold).astype(np.int64)
    logits = np.asarray(logits, dtype=np.float32)
    return logits[:, 0] if task.regression else logits.argmax(axis=-1)


def example_losses(task, logits, labels):
    """Each example's loss, as the model's own: cross-entropy, squared error for a regression, the
    mean binary cross-entropy of its labels for a multi-label task."""
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    if task.regression:
        return ((logits[:, 0] - torch.from_numpy(np.asarray(labels, dtype=np.float32))) ** 2).numpy()
    if task.multi_label:
        targets = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1).numpy()
    return torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(labels)), reduction="none").numpy()


def metrics_function(task, threshold=0.5):
    """`Trainer`'s compute_metrics for `task`: logits and labels in, its metrics and loss out.

    The loss replaces Trainer's own, a mean of batch losses: on several processes Accelerate
    pads an uneven last batch with repeated examples, which its predictions drop but that
    batch's loss keeps. Per-example losses from the gathered logits count each example once.
    """
    def compute_metrics(eval_prediction):
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        return {**task_metrics(task, predictions_of(task, logits, threshold), labels),
                LOSS: float(example_losses(task, logits, labels).mean())}
    return compute_metrics


def bootstrap_intervals(task, predictions, references, losses, resamples, seed, what="evaluate"):
    """95% percentile-bootstrap intervals of the task's metrics and of the mean loss.

    Each resample draws len(references) examples with replacement from one seeded
    generator, so the same inputs and seed always give the same intervals. `what` names the
    command in progress lines.
    """
    predictions, references, losses = np.asarray(predictions), references_of(task, references), np.asarray(losses)
    if not (task.regression or task.multi_label):  # class indices: small arrays gather 8x faster (in cache)
        predictions, references = predictions.astype(np.int16), references.astype(np.int16)
    examples = len(references)
    chunk = max(1, min(_RESAMPLE_CHUNK, _DRAWS_PER_CHUNK // examples))
    generator = np.random.default_rng(seed)
    samples = {metric: [] for metric in (*task.metrics, LOSS)}
    progress = Progress(f"{what}: bootstrap of {examples:,} examples", resamples, unit="resamples")
    for start in range(0, resamples, chunk):
        rows = generator.integers(0, examples, size=(min(chunk, resamples - start), examples),
                                  dtype=np.int32 if examples < 2**31 else np.int64)
        if task.multi_label:  # each resample as how often it draws each example: its counts, a matrix product
            values = label_set_values(task.metrics, label_set_counts(predictions, references, _draws(rows)))
        else:
            values = metric_values(task.metrics, predictions[rows], references[rows], task.num_labels)
        for metric, value in values.items():
            samples[metric].append(value)
        samples[LOSS].append(losses[rows].mean(axis=1))
        progress.advance(len(rows))
    tail = (1 - CONFIDENCE) / 2 * 100
    return {
        name: tuple(float(bound) for bound in np.percentile(np.concatenate(values), [tail, 100 - tail]))
        for name, values in samples.items()
    }


def _draws(rows):
    """(resamples, examples): how many times each resample (a row of example indices) draws each example."""
    resamples, examples = rows.shape
    offsets = rows + examples * np.arange(resamples)[:, None]
    return np.bincount(offsets.ravel(), minlength=resamples * examples).reshape(resamples, examples).astype(np.float64)


def predict_split(predictor, task, split_data, what="predict"):
    """(idx, labels, logits) of a tokenized split, in idx order, from a Trainer's `predict`; `what` names
    it in progress lines.

    Predicted in length order (little padding), then put back in idx order, with progress lines on a
    large split. Under `accelerate launch` each process predicts a share and Trainer gathers every
    prediction, each example once, to every process."""
    ordered = sorted_by_length(split_data)
    progress = _PredictionProgress(what, np.sort(token_counts(split_data)), predictor.args)
    predictor.add_callback(progress)
    try:
        output = predictor.predict(ordered.remove_columns(["idx", "labels"]))
    finally:
        predictor.remove_callback(progress)
    order = np.argsort(ordered["idx"])
    ordered = ordered.select(order)
    return ordered["idx"], np.asarray(ordered["labels"]), np.asarray(output.predictions, dtype=np.float32)[order]


class _PredictionProgress(TrainerCallback):
    """Progress lines of a prediction in length order: the rows of each batch (of every process: the
    main one prints), and the time left from its padded tokens (the batches grow longer)."""

    def __init__(self, what, sorted_lengths, args):
        self.rows = args.per_device_eval_batch_size * args.world_size
        # Each batch costs about its rows x its longest row: the last row of its slice.
        self.batch_work = sorted_lengths[np.minimum(np.arange(self.rows, len(sorted_lengths) + self.rows, self.rows),
                                                    len(sorted_lengths)) - 1] * self.rows
        self.progress = Progress(what, len(sorted_lengths), total_work=int(self.batch_work.sum()))
        self.batch = 0

    def on_prediction_step(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.batch < len(self.batch_work):
            self.progress.advance(self.rows, int(self.batch_work[self.batch]))
            self.batch += 1


def point_scores(task, split, logits, labels, threshold=0.5):
    """{<split>_<metric>: value} of the task's metrics and the mean loss, and the per-example losses."""
    losses = example_losses(task, logits, labels)
    scores = {**task_metrics(task, predictions_of(task, logits, threshold), labels), LOSS: float(losses.mean())}
    return {f"{split}_{name}": value for name, value in scores.items()}, losses


def write_predictions(path, task, indices, labels, logits, threshold=0.5):
    """One row per example: label and prediction (class names, scores for a regression, a JSON list
    of names for a multi-label task), and the probability of class 1 (two classes) or of each class
    (each label). An unlabelled example's label is empty."""
    predictions = predictions_of(task, logits, threshold)
    if task.multi_label:
        probabilities = probabilities_of(task, logits)
        header = ["idx", "label", "prediction", *(f"probability_{name}" for name in task.label_names)]
        rows = [[index, "" if NO_LABEL in label else label_set_names(task, label), label_set_names(task, prediction),
                 *(f"{probability:.6f}" for probability in row)]
                for index, label, prediction, row in zip(indices, labels, predictions, probabilities, strict=True)]
    elif task.regression:
        header = ["idx", "label", "prediction"]
        rows = [[index, "" if np.isnan(label) else f"{label:.6f}", f"{prediction:.6f}"]
                for index, label, prediction in zip(indices, labels.tolist(), predictions.tolist(), strict=True)]
    else:
        probabilities = probabilities_of(task, logits)
        shown = [1] if task.num_labels == 2 else list(range(task.num_labels))
        header = ["idx", "label", "prediction", *(f"probability_{task.label_names[label]}" for label in shown)]
        names = [*task.label_names, ""]  # index NO_LABEL (-1): no name
        rows = [[index, names[label], names[prediction], *(f"{row[label]:.6f}" for label in shown)]
                for index, label, prediction, row in zip(indices, labels.tolist(), predictions.tolist(),
                                                         probabilities, strict=True)]
    write_csv(path, header, rows)


def label_set_names(task, flags):
    """A multi-label row's labels as a JSON list of names, in the task's order."""
    return json.dumps([name for name, flag in zip(task.label_names, flags, strict=True) if flag > 0.5])
