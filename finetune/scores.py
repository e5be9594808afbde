"""Scoring predictions: the GLUE MRPC metric, and bootstrap confidence intervals around it.

On MRPC's 408 validation pairs one example is 0.25 accuracy points, so every point metric
the pipeline reports comes with a 95% percentile-bootstrap interval. Accuracy and F1 have
one implementation, `accuracy_and_f1`, vectorised over resamples: the `evaluate` module
(`glue_metric.py`), `compute_metrics` and the bootstrap all call it.
"""

import functools
from pathlib import Path

import evaluate
import numpy as np
import torch

METRIC_SCRIPT = Path(__file__).with_name("glue_metric.py")
CONFIDENCE = 0.95
# Resamples drawn at once: bounds memory to ~chunk x examples indices.
_RESAMPLE_CHUNK = 500


def accuracy_and_f1(predictions, references):
    """Accuracy and F1 of the positive class (1) along the last axis of 0/1 label arrays.

    1-D arrays give two floats; 2-D arrays (one resample per row) give two arrays. F1 is
    0.0, not NaN, when there is no positive at all (scikit-learn's convention)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    true_positives = ((predictions == 1) & (references == 1)).sum(axis=-1)
    false_positives = ((predictions == 1) & (references == 0)).sum(axis=-1)
    false_negatives = ((predictions == 0) & (references == 1)).sum(axis=-1)
    denominator = 2 * true_positives + false_positives + false_negatives
    f1 = np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0)
    return (predictions == references).mean(axis=-1), f1


@functools.cache
def _mrpc_metric():
    return evaluate.load(str(METRIC_SCRIPT))


def mrpc_metrics(predictions, references):
    """Accuracy and F1 as GLUE reports them for MRPC, from the project's `evaluate` module."""
    return _mrpc_metric().compute(predictions=predictions, references=references)


def example_losses(logits, labels):
    """Cross-entropy of each example, from its logits and label (numpy arrays)."""
    return torch.nn.functional.cross_entropy(torch.from_numpy(np.asarray(logits, dtype=np.float32)),
                                             torch.from_numpy(np.asarray(labels)), reduction="none").numpy()


def compute_metrics(eval_prediction):
    """`Trainer`'s compute_metrics: logits and labels in, accuracy, F1 and loss out.

    The loss replaces Trainer's own, a mean of batch losses: on several processes Accelerate
    pads an uneven last batch with repeated examples, which its predictions drop but that
    batch's loss keeps. Per-example losses from the gathered logits count each example once.
    """
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    return {**mrpc_metrics(logits.argmax(axis=-1), labels), "loss": float(example_losses(logits, labels).mean())}


def bootstrap_intervals(predictions, references, losses, resamples, seed):
    """95% percentile-bootstrap intervals of accuracy, F1 and mean loss.

    Each resample draws len(references) examples with replacement from one seeded
    generator, so the same inputs and seed always give the same intervals.
    """
    predictions, references, losses = map(np.asarray, (predictions, references, losses))
    generator = np.random.default_rng(seed)
    samples = {"accuracy": [], "f1": [], "loss": []}
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        rows = generator.integers(0, len(references), size=(min(_RESAMPLE_CHUNK, resamples - start), len(references)))
        accuracy, f1 = accuracy_and_f1(predictions[rows], references[rows])
        samples["accuracy"].append(accuracy)
        samples["f1"].append(f1)
        samples["loss"].append(losses[rows].mean(axis=1))
    tail = (1 - CONFIDENCE) / 2 * 100
    return {
        name: tuple(float(bound) for bound in np.percentile(np.concatenate(values), [tail, 100 - tail]))
        for name, values in samples.items()
    }
