"""Every metric the pipeline can report, in one table: its key, how it is computed, which way is
better, whether it scores class indices or a regression's scores, and which tasks of your own data
report it (GLUE's tasks name theirs in finetune/core/tasks.py).

A multi-label task's metrics score label sets, 0/1 matrices of examples x labels, through their
counts per label (the `label_sets` computation; macro-F1 has both).

Params validation (`best_model_metric`), scoring and its bootstrap (finetune/scoring/), the
diagnosis and the figures, the model card and the commands that rank runs all read this table:
adding a metric is one entry here. Each computation is vectorised along the last axis, so that one
call scores a single prediction array or a whole matrix of bootstrap resamples (one per row).
"""

import dataclasses
import json
from collections.abc import Callable

import numpy as np

# The model's own loss, reported beside every task's metrics; lower is better.
LOSS = "loss"


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # the key: <split>_<name> in metrics/evaluation.json and in the histories
    title: str  # as the model card and the Hub show it
    compute: Callable | None  # (predictions, references, num_labels) -> values along the last axis
    higher_is_better: bool
    regression: bool  # scores a regression's outputs (else class indices)
    # Which tasks report it besides those that name it (GLUE's, finetune/core/tasks.py): "classification"
    # every classification task; "own classification", "own binary", "own regression" your own data's.
    reported_by: str | None
    # A multi-label task's computation, from the LabelSetCounts of its 0/1 matrices (examples x
    # labels); such a task reports every metric that has one.
    label_sets: Callable | None = None


def _f1_of_counts(true_positives, false_positives, false_negatives):
    denominator = 2 * true_positives + false_positives + false_negatives
    # scikit-learn's convention: F1 is 0.0, not NaN, when the class is absent from both.
    return np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0)


def _f1_of(predictions, references, positive):
    return _f1_of_counts(((predictions == positive) & (references == positive)).sum(axis=-1),
                         ((predictions == positive) & (references != positive)).sum(axis=-1),
                         ((predictions != positive) & (references == positive)).sum(axis=-1))


def _accuracy(predictions, references, num_labels):
    return (predictions == references).mean(axis=-1)


def _f1(predictions, references, num_labels):
    """F1 of class 1, GLUE's F1 for MRPC and QQP."""
    return _f1_of(predictions, references, 1)


def _macro_f1(predictions, references, num_labels):
    return np.mean([_f1_of(predictions, references, label) for label in range(num_labels)], axis=0)


def _balanced_accuracy(predictions, references, num_labels):
    """The mean recall of the classes present in the references (scikit-learn's convention)."""
    present = np.stack([(references == label).sum(axis=-1) for label in range(num_labels)], axis=-1)
    hits = np.stack([((predictions == label) & (references == label)).sum(axis=-1) for label in range(num_labels)],
                    axis=-1)
    return (hits / np.maximum(present, 1)).sum(axis=-1) / np.maximum((present > 0).sum(axis=-1), 1)


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


def _pearson(predictions, references, num_labels=1):
    predictions = predictions - predictions.mean(axis=-1, keepdims=True)
    references = references - references.mean(axis=-1, keepdims=True)
    spread = np.sqrt((predictions**2).sum(axis=-1) * (references**2).sum(axis=-1))
    return np.where(spread > 0, (predictions * references).sum(axis=-1) / np.where(spread > 0, spread, 1), 0.0)


def _spearman(predictions, references, num_labels=1):
    import scipy.stats  # only here: the other metrics need NumPy alone

    return _pearson(scipy.stats.rankdata(predictions, axis=-1), scipy.stats.rankdata(references, axis=-1))


@dataclasses.dataclass(frozen=True)
class LabelSetCounts:
    """What a multi-label task's metrics are computed from, per label and over examples (leading
    axes: one set of predictions, or one resample a row)."""
    true_positives: np.ndarray  # (..., labels)
    false_positives: np.ndarray
    false_negatives: np.ndarray
    exact: np.ndarray  # (...): examples whose predicted set is exactly right
    examples: int


def label_set_counts(predictions, references, weights=None):
    """LabelSetCounts of 0/1 matrices (..., examples, labels). `weights`: (resamples, examples),
    how often each example is in each bootstrap resample, which makes a resample's counts one
    matrix product instead of a copy of its examples (GoEmotions validation, 50,000 resamples of
    5,426 texts x 28 labels: 2.8 s against 74 s)."""
    predictions, references = np.asarray(predictions, dtype=bool), np.asarray(references, dtype=bool)
    outcomes = [predictions & references, predictions & ~references, ~predictions & references,
                (predictions == references).all(axis=-1)]
    if weights is None:
        counted = [outcome.sum(axis=-2) for outcome in outcomes[:3]] + [outcomes[3].sum(axis=-1)]
    else:
        counted = [weights @ outcome.astype(np.float64) for outcome in outcomes]
    return LabelSetCounts(*counted, examples=predictions.shape[-2])


def _micro_f1(counts):
    """F1 of every (example, label) decision pooled: frequent labels weigh more."""
    return _f1_of_counts(counts.true_positives.sum(axis=-1), counts.false_positives.sum(axis=-1),
                         counts.false_negatives.sum(axis=-1))


def _label_macro_f1(counts):
    """The mean of each label's F1: a rare label weighs as much as a frequent one."""
    return _f1_of_counts(counts.true_positives, counts.false_positives, counts.false_negatives).mean(axis=-1)


def _subset_accuracy(counts):
    """The share of examples whose predicted label set is exactly right."""
    return counts.exact / counts.examples


METRICS = {metric.name: metric for metric in (
    Metric("accuracy", "Accuracy", _accuracy, True, False, reported_by="own classification"),
    Metric("f1", "F1", _f1, True, False, reported_by="own binary"),
    Metric("matthews_correlation", "Matthews correlation", _matthews_correlation, True, False, reported_by=None),
    Metric("pearson", "Pearson", _pearson, True, True, reported_by="own regression"),
    Metric("spearmanr", "Spearman", _spearman, True, True, reported_by="own regression"),
    # What a skewed class balance hides from accuracy, for every classification task.
    Metric("balanced_accuracy", "Balanced accuracy", _balanced_accuracy, True, False, reported_by="classification"),
    Metric("micro_f1", "Micro F1", None, True, False, reported_by=None, label_sets=_micro_f1),
    Metric("macro_f1", "Macro F1", _macro_f1, True, False, reported_by="classification", label_sets=_label_macro_f1),
    Metric("subset_accuracy", "Subset accuracy", None, True, False, reported_by=None, label_sets=_subset_accuracy),
)}


def metric_values(metrics, predictions, references, num_labels, multi_label=False):
    """{metric: value} along the examples' axis: floats for one set of predictions, arrays for a
    matrix of them (one resample a row). `multi_label`: 0/1 matrices of examples x labels."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    if multi_label:
        return label_set_values(metrics, label_set_counts(predictions, references))
    if any(METRICS[metric].regression for metric in metrics):
        predictions, references = predictions.astype(float), references.astype(float)
    return {metric: METRICS[metric].compute(predictions, references, num_labels) for metric in metrics}


def label_set_values(metrics, counts):
    """{metric: value} of a multi-label task's metrics from their LabelSetCounts."""
    return {metric: METRICS[metric].label_sets(counts) for metric in metrics}


def interval_text(scores, key):
    """`[low, high]`, the 95% interval of `key` in `scores` (evaluation.json's keys), or "-" where
    there is none: a search trial's scores come without."""
    if f"{key}_ci_low" not in scores:
        return "-"
    return f"[{scores[key + '_ci_low']:.4f}, {scores[key + '_ci_high']:.4f}]"


def higher_is_better(metric):
    """Which way `metric` (a key of METRICS, or the loss) improves."""
    return metric != LOSS and METRICS[metric].higher_is_better


def task_metrics(named, label_names, own_data, multi_label=False):
    """What a task reports: the metrics it names (GLUE's official ones; none for your own data),
    then the table's for its kind. `label_names` None: a regression."""
    if multi_label:
        return tuple(metric.name for metric in METRICS.values() if metric.label_sets)
    kind = "regression" if label_names is None else "binary" if len(label_names) == 2 else "classification"
    kinds = {"regression": ["own regression"], "binary": ["own classification", "own binary", "classification"],
             "classification": ["own classification", "classification"]}[kind]
    if not own_data:
        kinds = [kind for kind in kinds if not kind.startswith("own ")]
    extra = [metric.name for metric in METRICS.values() if metric.reported_by in kinds and metric.name not in named]
    return (*named, *extra)


def per_class_scores(rows, label_names, multi_label=False):
    """{label: {precision, recall, f1, support}} from prediction rows, what accuracy and the averages
    hide when one class dominates; support counts the examples of the class, and precision is 0 for
    a class never predicted (scikit-learn's zero_division=0). A multi-label task's rows: each label
    against the rest."""
    truth, predicted = (label_matrix(rows, column, label_names, multi_label) for column in ("label", "prediction"))
    counts = label_set_counts(predicted, truth)
    true_positives, false_positives, false_negatives = counts.true_positives, counts.false_positives, counts.false_negatives
    f1 = _f1_of_counts(true_positives, false_positives, false_negatives)
    scores = {}
    for position, name in enumerate(label_names):
        hits, said, actual = (int(count[position]) for count in (true_positives, true_positives + false_positives,
                                                                   true_positives + false_negatives))
        scores[name] = {"precision": round(hits / said if said else 0.0, 6),
                        "recall": round(hits / actual if actual else 0.0, 6),
                        "f1": round(float(f1[position]), 6), "support": actual}
    return scores


def label_matrix(rows, column, label_names, multi_label):
    """Prediction rows' `column` (label or prediction) as a 0/1 matrix of examples x labels: a class
    name (one 1 a row), or a multi-label task's JSON list of names."""
    index = {name: position for position, name in enumerate(label_names)}
    matrix = np.zeros((len(rows), len(label_names)), dtype=bool)
    for row_number, row in enumerate(rows):
        for name in json.loads(row[column]) if multi_label else [row[column]]:
            matrix[row_number, index[name]] = True
    return matrix
