"""Stage `plot`: the run's report, metrics/report/report.md, with its PNGs beside it.

Learning curves (loss; accuracy of train subset and validation; validation F1; learning
rate), confusion matrices, the diagnosis in one sentence, the final metrics and the params
that differ from the committed params.yaml. `dvc plots show` draws the same curves from
the CSVs (see `plots:` in dvc.yaml); the report is for reading one run without DVC.
"""

import json
import subprocess
import time

import matplotlib

matplotlib.use("Agg")  # files only, never a window: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from finetune.data import LABEL_NAMES, NO_LABEL  # noqa: E402
from finetune.diagnosis import REMEDIES, explanation  # noqa: E402
from finetune.errors import PipelineError, run_stage  # noqa: E402
from finetune.outputs import atomic_output, read_csv  # noqa: E402
from finetune.params import load_params, read_yaml  # noqa: E402
from finetune.paths import (  # noqa: E402
    DIAGNOSIS_FILE,
    EVALUATED_SPLITS,
    EVALUATION_HISTORY_FILE,
    EVALUATION_METRICS_FILE,
    PARAMS_FILE,
    REPORT_DIR,
    TRAIN_HISTORY_FILE,
    predictions_file,
)

CURVES = {  # file name -> (title, y label, [(history, column, label)])
    "loss.png": ("Loss", "cross-entropy loss", [("train", "train_loss", "train (running mean)"),
                                                ("evaluations", "train_subset_loss", "train subset"),
                                                ("evaluations", "validation_loss", "validation")]),
    "accuracy.png": ("Accuracy", "accuracy", [("evaluations", "train_subset_accuracy", "train subset"),
                                              ("evaluations", "validation_accuracy", "validation")]),
    "f1.png": ("F1", "F1", [("evaluations", "train_subset_f1", "train subset"),
                            ("evaluations", "validation_f1", "validation")]),
    "learning_rate.png": ("Learning rate", "learning rate", [("train", "learning_rate", "learning rate")]),
}


def main():
    params = load_params()
    started = time.perf_counter()
    histories = {"train": _read_csv(TRAIN_HISTORY_FILE), "evaluations": _read_csv(EVALUATION_HISTORY_FILE)}
    diagnosis = json.loads(DIAGNOSIS_FILE.read_text())
    with atomic_output(REPORT_DIR) as staging:
        staging.mkdir()
        for file_name, (title, y_label, series) in CURVES.items():
            baseline = diagnosis["majority_baseline"] if file_name == "accuracy.png" else None
            _plot_curves(histories, title, y_label, series, staging / file_name, baseline)
        confusion_files = []
        for split in EVALUATED_SPLITS:
            predictions = _read_csv(predictions_file(split))
            if all(int(row["label"]) != NO_LABEL for row in predictions):
                confusion_files.append(f"confusion_{split}.png")
                _plot_confusion(predictions, split, staging / confusion_files[-1])
        (staging / "report.md").write_text(_report(diagnosis, explanation(diagnosis, params), confusion_files))
        written = sorted(path.name for path in staging.iterdir())
    print(f"plot: {', '.join(written)} -> {REPORT_DIR}/ in {time.perf_counter() - started:.1f}s")


def _report(diagnosis, verdict_sentence, confusion_files):
    metrics = json.loads(EVALUATION_METRICS_FILE.read_text())
    lines = ["# Training report", "", f"**Verdict: {verdict_sentence}.**", "",
             f"Suggested remedies: {REMEDIES[diagnosis['verdict']]}.", "", "## Final metrics", "",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for key, value in metrics.items():
        if not key.endswith(("_ci_low", "_ci_high")):
            lines.append(f"| {key} | {value:.4f} | [{metrics[key + '_ci_low']:.4f}, {metrics[key + '_ci_high']:.4f}] |")
    lines += ["", "## Params that differ from the committed params.yaml", ""]
    changed = _changed_params()
    if changed is None:
        lines.append("(no Git commit to compare with)")
    else:
        lines += [f"- `{key}`: {old!r} → {new!r}" for key, (old, new) in changed.items()] or ["(none)"]
    lines += ["", "## Curves", ""] + [f"![{name}]({name})" for name in [*CURVES, *confusion_files]]
    return "\n".join(lines) + "\n"


def _changed_params():
    """Params of this run that differ from params.yaml at Git's HEAD (None outside Git).

    `dvc exp run -S` and queued experiments change params.yaml on top of HEAD, so this
    names exactly what the experiment varied."""
    committed = subprocess.run(["git", "show", f"HEAD:{PARAMS_FILE}"], capture_output=True, text=True)
    if committed.returncode != 0:
        return None
    before, now = read_yaml(committed.stdout) or {}, read_yaml(PARAMS_FILE.read_text())
    return {key: (before.get(key), value) for key, value in now.items() if before.get(key) != value}


def _read_csv(path):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro train evaluate` first")
    return read_csv(path)


def _column(rows, name):
    return [float(row[name]) for row in rows if row[name] not in ("", None)]


def _plot_curves(histories, title, y_label, series, path, baseline=None):
    figure, axis = plt.subplots(figsize=(7, 4))
    for history, column, label in series:
        rows = histories[history]
        marker = "o" if history == "evaluations" else None
        axis.plot(_column(rows, "step"), _column(rows, column), label=label, marker=marker, alpha=0.8)
    if baseline is not None:
        axis.axhline(baseline, color="gray", linestyle="--", label=f"majority baseline ({baseline:.3f})")
    axis.set(xlabel="step", ylabel=y_label, title=title)
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
