"""Scoring predictions: each task's metrics, and bootstrap confidence intervals around them.

On MRPC's 408 validation pairs one example is 0.25 accuracy points, so every point metric
the pipeline reports comes with a 95% percentile-bootstrap interval. Each metric has one
implementation here, vectorised over resamples (one resample per row): the `evaluate` module
(`glue_metric.py`), `compute_metrics` and the bootstrap all call it.
"""

import functools
from pathlib import Path

import evaluate
import numpy as np
import scipy.stats
import torch

METRIC_SCRIPT = Path(__file__).with_name("glue_metric.py")
CONFIDENCE = 0.95
# Resamples drawn at once: bounds memory to ~chunk x examples indices.
_RESAMPLE_CHUNK = 500


def _binary_f1(predictions, references, positive=1):
    true_positives = ((predictions == positive) & (references == positive)).sum(axis=-1)
    false_positives = ((predictions == positive) & (references != positive)).sum(axis=-1)
    false_negatives = ((predictions != positive) & (references == positive)).sum(axis=-1)
    denominator = 2 * true_positives + false_positives + false_negatives
    # scikit-learn's convention: F1 is 0.0, not NaN, when the class is absent from both.
    return np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0)


def _matthews_correlation(predictions, references, num_labels):
    """Matthews correlation of K classes (Gorodkin's R_K; the binary MCC for K = 2), 0 when undefined."""
    samples = references.shape[-1]
    correct = (predictions == references).sum(axis=-1)
    predicted = np.stack([(predictions == label).sum(axis=-1) for label in range(num_labels)], axis=-1)
    actual = np.stack([(references == label).sum(axis=-1) for label in range(num_labels)], axis=-1)
    covariance = correct * samples - (predicted * actual).sum(axis=-1)
    spread = np.sqrt((samples**2 - (predicted**2).sum(axis=-1)).astype(float)
                     * (samples**2 - (actual**2).sum(axis=-1)).astype(float))
    return np.where(spread > 0, covariance / np.where(spread > 0, spread, 1), 0.0)


def _pearson(predictions, references):
    predictions = predictions - predictions.mean(axis=-1, keepdims=True)
    references = references - references.mean(axis=-1, keepdims=True)
    spread = np.sqrt((predictions**2).sum(axis=-1) * (references**2).sum(axis=-1))
    return np.where(spread > 0, (predictions * references).sum(axis=-1) / np.where(spread > 0, spread, 1), 0.0)


def metric_values(metrics, predictions, references, num_labels):
    """{metric: value} along the last axis: floats for 1-D arrays, arrays for 2-D (one resample a row)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    compute = {
        "accuracy": lambda: (predictions == references).mean(axis=-1),
        "f1": lambda: _binary_f1(predictions, references),
        "macro_f1": lambda: np.mean([_binary_f1(predictions, references, label) for label in range(num_labels)],
                                    axis=0),
        "matthews_correlation": lambda: _matthews_correlation(predictions, references, num_labels),
        "pearson": lambda: _pearson(predictions.astype(float), references.astype(float)),
        "spearmanr": lambda: _pearson(scipy.stats.rankdata(predictions, axis=-1),
                                      scipy.stats.rankdata(references, axis=-1)),
    }
    return {metric: compute[metric]() for metric in metrics}


@functools.cache
def _metric_module(task_name, metrics, num_labels):
    return evaluate.load(str(METRIC_SCRIPT), config_name=task_name, metrics=metrics, num_labels=num_labels)


def task_metrics(task, predictions, references):
    """The task's metrics, as GLUE reports them, from the project's `evaluate` module."""
    module = _metric_module(task.name, task.metrics, task.num_labels)
    return module.compute(predictions=predictions, references=references)


def predictions_of(task, logits):
    """Class indices (argmax) or, for a regression, the single output."""
    logits = np.asarray(logits, dtype=np.float32)
    return logits[:, 0] if task.regression else logits.argmax(axis=-1)


def example_losses(task, logits, labels):
    """Each example's loss, as the model's own: cross-entropy, or squared error for a regression."""
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    if task.regression:
        return ((logits[:, 0] - torch.from_numpy(np.asarray(labels, dtype=np.float32))) ** 2).numpy()
    return torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(labels)), reduction="none").numpy()


def metrics_function(task):
    """`Trainer`'s compute_metrics for `task`: logits and labels in, its metrics and loss out.

    The loss replaces Trainer's own, a mean of batch losses: on several processes Accelerate
    pads an uneven last batch with repeated examples, which its predictions drop but that
    batch's loss keeps. Per-example losses from the gathered logits count each example once.
    """
    def compute_metrics(eval_prediction):
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        return {**task_metrics(task, predictions_of(task, logits), labels),
                "loss": float(example_losses(task, logits, labels).mean())}
    return compute_metrics


def bootstrap_intervals(task, predictions, references, losses, resamples, seed):
    """95% percentile-bootstrap intervals of the task's metrics and of the mean loss.

    Each resample draws len(references) examples with replacement from one seeded
    generator, so the same inputs and seed always give the same intervals.
    """
    predictions, references, losses = map(np.asarray, (predictions, references, losses))
    generator = np.random.default_rng(seed)
    samples = {metric: [] for metric in (*task.metrics, "loss")}
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        rows = generator.integers(0, len(references), size=(min(_RESAMPLE_CHUNK, resamples - start), len(references)))
        values = metric_values(task.metrics, predictions[rows], references[rows], task.num_labels)
        for metric, value in values.items():
            samples[metric].append(value)
        samples["loss"].append(losses[rows].mean(axis=1))
    tail = (1 - CONFIDENCE) / 2 * 100
    return {
        name: tuple(float(bound) for bound in np.percentile(np.concatenate(values), [tail, 100 - tail]))
        for name, values in samples.items()
    }
