"""The report's figures: learning curves, confusion matrices (a multi-label task's: each label's
hits and misses), predicted-vs-true scatters, and a classifier's ROC, precision-recall and
calibration curves."""

import matplotlib

matplotlib.use("Agg")  # files only, never a window: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from finetune.core.metrics import METRICS, label_matrix  # noqa: E402


def curves_of(task):
    """{file name: (title, y label, [(history, column, legend)])}: loss, each of the task's
    metrics on the train subset and each validation split, and the learning rate."""
    sets = [(name, name.replace("_", " ")) for name in task.evaluation_sets]
    loss_label = ("squared error" if task.regression else "binary cross-entropy (mean of the labels)"
                  if task.multi_label else "cross-entropy loss")
    curves = {"loss.png": ("Loss", loss_label, [("train", "train_loss", "train (running mean)"),
                                                *(("evaluations", f"{name}_loss", label) for name, label in sets)])}
    for metric in task.metrics:
        curves[f"{metric}.png"] = (METRICS[metric].title, metric,
                                   [("evaluations", f"{name}_{metric}", label) for name, label in sets])
    curves["learning_rate.png"] = ("Learning rate", "learning rate", [("train", "learning_rate", "learning rate")])
    return curves


def plot_curves(histories, title, y_label, series, path, baseline=None):
    figure, axis = plt.subplots(figsize=(7, 4))
    for history, column, label in series:
        rows = [row for row in histories[history] if row[column] not in ("", None)]
        marker = "o" if history == "evaluations" else None
        axis.plot([float(row["step"]) for row in rows], [float(row[column]) for row in rows], label=label,
                  marker=marker, alpha=0.8)
    if baseline is not None:
        axis.axhline(baseline, color="gray", linestyle="--", label=f"majority baseline ({baseline:.3f})")
    axis.set(xlabel="step", ylabel=y_label, title=title)
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, path)


def plot_confusion(predictions, label_names, split, path):
    """An N x N confusion matrix with the class names, from prediction rows (names, as written)."""
    index = {name: position for position, name in enumerate(label_names)}
    counts = np.zeros((len(label_names), len(label_names)), dtype=int)
    for row in predictions:
        counts[index[row["label"]], index[row["prediction"]]] += 1
    size = max(4.5, 0.9 * len(label_names) + 2.5)
    figure, axis = plt.subplots(figsize=(size, size - 0.5))
    axis.imshow(counts, cmap="Blues")
    # imshow spans the colours from the smallest count to the largest: white text on the darker half.
    middle = (counts.min() + counts.max()) / 2
    for (actual, predicted), count in np.ndenumerate(counts):
        color = "white" if count > middle else "black"
        axis.text(predicted, actual, str(count), ha="center", va="center", color=color)
    ticks = range(len(label_names))
    axis.set(xticks=ticks, yticks=ticks, xticklabels=label_names, yticklabels=label_names,
             xlabel="predicted", ylabel="actual", title=f"Confusion matrix ({split})")
    plt.setp(axis.get_xticklabels(), rotation=20, ha="right")
    _save(figure, path)


def plot_label_outcomes(predictions, label_names, split, path):
    """A multi-label task's confusion: per label (down), how many examples it was rightly given, missed
    on, and wrongly given, from prediction rows (JSON lists of names)."""
    truth, predicted = (label_matrix(predictions, column, label_names, True) for column in ("label", "prediction"))
    counts = np.stack([(truth & predicted).sum(axis=0), (truth & ~predicted).sum(axis=0),
                       (~truth & predicted).sum(axis=0)], axis=1)
    figure, axis = plt.subplots(figsize=(6, max(3.0, 0.3 * len(label_names) + 1.5)))
    axis.imshow(counts, cmap="Blues", aspect="auto")
    middle = (counts.min() + counts.max()) / 2
    for (label, outcome), count in np.ndenumerate(counts):
        axis.text(outcome, label, str(count), ha="center", va="center", color="white" if count > middle else "black")
    axis.set(xticks=range(3), yticks=range(len(label_names)), yticklabels=label_names,
             xticklabels=["given, rightly", "missed", "given, wrongly"], ylabel="label",
             title=f"Each label's hits and misses ({split})")
    _save(figure, path)


# The classifier's curves, a folder of files each (finetune/scoring/curves.py): title, and whether a
# diagonal reads them (chance for ROC, perfect calibration).
CURVES = {
    "roc": ("ROC", True),
    "precision_recall": ("Precision-recall", False),
    "calibration": ("Calibration: how often the predicted class is right", True),
}


def plot_curve(kind, files, path):
    """One line per file of a curve folder (a class against the rest, or a split), named after it;
    each file's first two columns are x and y."""
    title, diagonal = CURVES[kind]
    x, y = list(next(iter(files.values()))[0])[:2]
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for name, rows in files.items():
        axis.plot([float(row[x]) for row in rows], [float(row[y]) for row in rows], label=name,
                  marker="o" if kind == "calibration" else None, alpha=0.8)
    if diagonal:
        axis.plot([0, 1], [0, 1], color="gray", linestyle="--", label="chance" if kind == "roc" else "perfect")
    axis.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "), title=title, xlim=(0, 1), ylim=(0, 1.02))
    many = len(files) > 8  # a multi-label task's dozens of labels: a legend beside, not over, the curves
    axis.legend(fontsize="x-small" if many else None, loc="upper left" if many else None,
                bbox_to_anchor=(1.02, 1) if many else None)
    axis.grid(alpha=0.3)
    _save(figure, path)


def plot_scatter(predictions, split, path):
    """Predicted against true scores of a regression, with the diagonal of perfect predictions."""
    true = np.array([float(row["label"]) for row in predictions])
    predicted = np.array([float(row["prediction"]) for row in predictions])
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(true, predicted, s=8, alpha=0.5)
    low, high = min(true.min(), predicted.min()), max(true.max(), predicted.max())
    axis.plot([low, high], [low, high], color="gray", linestyle="--", label="perfect")
    axis.set(xlabel="true", ylabel="predicted", title=f"Predicted against true ({split})")
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, path)


def _save(figure, path):
    figure.savefig(path, dpi=100, bbox_inches="tight")  # keeps long tick labels inside the image
    plt.close(figure)
