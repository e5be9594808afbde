"""Stage `plot`: learning curves and confusion matrices as PNGs in metrics/plots/.

`dvc plots show` draws the same curves from the CSVs (see `plots:` in dvc.yaml); these
PNGs are for reading a single run without DVC, e.g. in a report or a pull request.
"""

import csv
import time

import matplotlib

matplotlib.use("Agg")  # files only, never a window: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stages.common import PipelineError, atomic_output, run_stage  # noqa: E402
from stages.data import LABEL_NAMES, NO_LABEL  # noqa: E402
from stages.paths import EVALUATED_SPLITS, EVALUATION_HISTORY_FILE, PLOTS_DIR, TRAIN_HISTORY_FILE, predictions_file  # noqa: E402


def main():
    started = time.perf_counter()
    train_history = _read_csv(TRAIN_HISTORY_FILE)
    validation_history = _read_csv(EVALUATION_HISTORY_FILE)
    with atomic_output(PLOTS_DIR) as staging:
        staging.mkdir()
        _plot_loss(train_history, validation_history, staging / "loss.png")
        _plot_validation_scores(validation_history, staging / "validation_scores.png")
        for split in EVALUATED_SPLITS:
            predictions = _read_csv(predictions_file(split))
            if all(int(row["label"]) != NO_LABEL for row in predictions):
                _plot_confusion(predictions, split, staging / f"confusion_{split}.png")
        written = sorted(path.name for path in staging.iterdir())
    print(f"plot: {', '.join(written)} -> {PLOTS_DIR}/ in {time.perf_counter() - started:.1f}s")


def _read_csv(path):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro train evaluate` first")
    with open(path, newline="") as csv_file:
        return list(csv.DictReader(csv_file))


def _column(rows, name):
    return [float(row[name]) for row in rows if row[name] not in ("", None)]


def _plot_loss(train_history, validation_history, path):
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(_column(train_history, "step"), _column(train_history, "train_loss"), label="train loss", alpha=0.7)
    axis.plot(_column(validation_history, "step"), _column(validation_history, "validation_loss"),
              label="validation loss", marker="o")
    axis.set(xlabel="step", ylabel="cross-entropy loss", title="Loss")
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, path)


def _plot_validation_scores(validation_history, path):
    figure, axis = plt.subplots(figsize=(7, 4))
    steps = _column(validation_history, "step")
    for metric in ("validation_accuracy", "validation_f1"):
        axis.plot(steps, _column(validation_history, metric), label=metric, marker="o")
    axis.set(xlabel="step", ylabel="score", title="Validation accuracy and F1")
    axis.legend()
    axis.grid(alpha=0.3)
    _save(figure, path)


def _plot_confusion(predictions, split, path):
    counts = np.zeros((len(LABEL_NAMES), len(LABEL_NAMES)), dtype=int)
    for row in predictions:
        counts[int(row["label"]), int(row["prediction"])] += 1
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(counts, cmap="Blues")
    for (actual, predicted), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axis.text(predicted, actual, str(count), ha="center", va="center", color=color)
    ticks = range(len(LABEL_NAMES))
    axis.set(xticks=ticks, yticks=ticks, xticklabels=LABEL_NAMES, yticklabels=LABEL_NAMES,
             xlabel="predicted", ylabel="actual", title=f"Confusion matrix ({split})")
    _save(figure, path)


def _save(figure, path):
    figure.savefig(path, dpi=100, bbox_inches="tight")  # keeps long tick labels inside the image
    plt.close(figure)


if __name__ == "__main__":
    run_stage(main)
