"""Curves of a classifier's probabilities on a labelled split: ROC and precision-recall (for a
binary task its positive class, else each class against the rest; a multi-label task's each
label) and calibration (how often the predicted class is right against how sure the model was;
for a multi-label task, each label's yes or no at probability 0.5), as CSV rows that `dvc plots`
draws (one file per curve, metrics/curves/<kind>/) and the report's figures redraw.

Beside them, the pairs (label, prediction) that `dvc plots`' confusion matrix counts: a
classifier's one pair per example; a multi-label task's one per label an example has or is given,
"(none)" on the side where it is not (a missed label, a label given wrongly), so that its matrix
reads like the report's per-label figure rather than as label sets against label sets.

They read the predictions files' rows only (labels and probabilities), so a search trial's
evaluate, which loads no model, writes them too.
"""

import json

import numpy as np

from finetune.core.metrics import label_matrix
from finetune.core.outputs import atomic_output, write_csv
from finetune.core.paths import CURVES_DIR

FOLDER_README = """ROC and precision-recall curves of a classifier's validation predictions (a file per class
against the rest; a binary task's positive class), its calibration, and the (label, prediction)
pairs of its confusion matrix; none for a regression. Written by the evaluate stage
(finetune/scoring/curves.py), drawn by `dvc plots show`.
"""
CALIBRATION_BINS = 10
# Columns of each curve's file, x first.
ROC_COLUMNS = ("false_positive_rate", "true_positive_rate", "threshold")
PRECISION_RECALL_COLUMNS = ("recall", "precision", "threshold")
CALIBRATION_COLUMNS = ("confidence", "accuracy", "perfectly_calibrated", "examples")
CONFUSION_COLUMNS = ("label", "prediction")
# A multi-label confusion pair's other side: the label was not there, or not given.
NO_LABEL_NAME = "(none)"


def curve_files(task, split, rows):
    """{kind: {file name stem: points}} of a labelled split's predictions rows."""
    truth = label_matrix(rows, "label", task.label_names, task.multi_label)
    probabilities = _probabilities(task, rows)
    # A binary task's curve is its positive class's (the probability its predictions file keeps).
    classes = task.label_names[1:] if task.num_labels == 2 and not task.multi_label else task.label_names
    roc, precision_recall = {}, {}
    for name in classes:
        column = task.label_names.index(name)
        stem = f"{split}_{name}"
        roc[stem] = roc_rows(truth[:, column], probabilities[:, column])
        precision_recall[stem] = precision_recall_rows(truth[:, column], probabilities[:, column])
    if task.multi_label:  # every (example, label) decision, as sure as its probability is far from 0.5
        confidence = np.maximum(probabilities, 1 - probabilities).ravel()
        correct = ((probabilities >= 0.5) == truth).ravel()
    else:
        confidence, correct = probabilities.max(axis=1), truth[np.arange(len(rows)), probabilities.argmax(axis=1)]
    return {"roc": roc, "precision_recall": precision_recall,
            "calibration": {split: calibration_rows(confidence, correct)},
            "confusion": {split: confusion_rows(task, rows)}}


def confusion_rows(task, rows):
    """The (label, prediction) pairs of a split's confusion matrix."""
    if not task.multi_label:
        return [(row["label"], row["prediction"]) for row in rows]
    pairs = []
    for row in rows:
        truth, given = set(json.loads(row["label"])), set(json.loads(row["prediction"]))
        pairs += [(name if name in truth else NO_LABEL_NAME, name if name in given else NO_LABEL_NAME)
                  for name in task.label_names if name in truth | given]
    return pairs


def roc_rows(truth, scores):
    """The ROC curve from (0, 0) to (1, 1): a point per distinct score, highest first."""
    true_positives, false_positives, thresholds = _cumulative(truth, scores)
    positives, negatives = max(truth.sum(), 1), max((~truth).sum(), 1)
    points = [(0.0, 0.0, 1.0), *zip(false_positives / negatives, true_positives / positives, thresholds, strict=True)]
    return [tuple(round(float(value), 6) for value in point) for point in points]


def precision_recall_rows(truth, scores):
    """Precision against recall, a point per distinct score, highest first."""
    true_positives, false_positives, thresholds = _cumulative(truth, scores)
    recall = true_positives / max(truth.sum(), 1)
    precision = true_positives / (true_positives + false_positives)
    return [tuple(round(float(value), 6) for value in point) for point in zip(recall, precision, thresholds, strict=True)]


def calibration_rows(confidence, correct, bins=CALIBRATION_BINS):
    """Per bin of confidence (equal widths over [0, 1]) that holds examples: their mean confidence,
    how often they were right, the diagonal, and how many they are."""
    edges = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for bin_index in range(bins):
        members = edges == bin_index
        if members.any():
            mean = float(confidence[members].mean())
            rows.append((round(mean, 6), round(float(correct[members].mean()), 6), round(mean, 6), int(members.sum())))
    return rows


def _cumulative(truth, scores):
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(truth)[last_of_each_score]
    false_positives = np.cumsum(~truth)[last_of_each_score]
    return true_positives, false_positives, scores[last_of_each_score]


def _probabilities(task, rows):
    """Each row's probability of each class, from the predictions file (a binary task keeps its
    positive class's only)."""
    if task.num_labels == 2 and not task.multi_label:
        positive = np.array([float(row[f"probability_{task.label_names[1]}"]) for row in rows])
        return np.stack([1 - positive, positive], axis=1)
    return np.array([[float(row[f"probability_{name}"]) for name in task.label_names] for row in rows])


def write_curves(task, labelled, folder=CURVES_DIR):
    """The curves of each validation split in `labelled` ({split: its labelled prediction rows};
    none for a regression), as CSV files under `folder`/<kind>/."""
    columns = {"roc": ROC_COLUMNS, "precision_recall": PRECISION_RECALL_COLUMNS, "calibration": CALIBRATION_COLUMNS,
               "confusion": CONFUSION_COLUMNS}
    with atomic_output(folder) as staging:
        staging.mkdir(parents=True)
        # Git keeps no empty folder: this file keeps the output in every clone, a regression's too.
        (staging / "README.md").write_text(FOLDER_README)
        for split, rows in labelled.items():
            for kind, files in curve_files(task, split, rows).items():
                (staging / kind).mkdir(exist_ok=True)
                for stem, points in files.items():
                    write_csv(staging / kind / f"{stem}.csv", columns[kind], points)
