"""Stage `plot`: the run's report, metrics/report/report.md, with its PNGs beside it.

Learning curves (loss and each of the task's metrics on the train subset and validation;
learning rate), confusion matrices (or predicted-vs-true scatters for a regression, each label's
hits and misses for a multi-label task), the
diagnosis in one sentence, the final metrics, each class's precision, recall and F1, and every
param of the run. `dvc plots show` draws curves from the CSVs (see `plots:` in dvc.yaml); the
report is for reading one run without DVC.
"""

import json
import time

from finetune.core.errors import PipelineError, run_stage
from finetune.core.metrics import interval_text
from finetune.core.outputs import atomic_output, read_csv
from finetune.core.params import load_params, params_table
from finetune.core.paths import (
    CURVES_DIR,
    DIAGNOSIS_FILE,
    EVALUATION_HISTORY_FILE,
    EVALUATION_METRICS_FILE,
    PER_CLASS_METRICS_FILE,
    REPORT_DIR,
    TRAIN_HISTORY_FILE,
    predictions_file,
)
from finetune.core.tasks import load_task
from finetune.reporting.diagnosis import explanation
from finetune.reporting.remedies import remedies_text

# The report's PNGs, in a folder of their own that dvc.yaml declares as plots: any task's figures.
FIGURES = "figures"


def main():
    params = load_params()
    task = load_task()
    started = time.perf_counter()
    histories = {"train": _read_csv(TRAIN_HISTORY_FILE), "evaluations": _read_csv(EVALUATION_HISTORY_FILE)}
    diagnosis = json.loads(DIAGNOSIS_FILE.read_text())
    with atomic_output(REPORT_DIR) as staging:
        (staging / FIGURES).mkdir(parents=True)
        # A search trial's curves are in `dvc plots diff`; its report draws nothing (matplotlib's
        # import and the figures took a second of every trial).
        figures = [] if params.trial else _draw(task, histories, diagnosis, staging / FIGURES)
        sentence = explanation(task, diagnosis, params)
        trained_steps = int(histories["evaluations"][-1]["step"])
        remedies = remedies_text(task, diagnosis, params, trained_steps)
        (staging / "report.md").write_text(_report(params, task, sentence, remedies, figures))
        written = sorted(str(path.relative_to(staging)) for path in staging.rglob("*.*"))
    print(f"plot: {', '.join(written)} -> {REPORT_DIR}/ in {time.perf_counter() - started:.1f}s")


def _draw(task, histories, diagnosis, folder):
    """The PNGs of the curves and of the predictions; returns their names."""
    from finetune.reporting.figures import (
        CURVES,
        curves_of,
        plot_confusion,
        plot_curve,
        plot_curves,
        plot_label_outcomes,
        plot_scatter,
    )

    curves = curves_of(task)
    for file_name, (title, y_label, series) in curves.items():
        baseline = diagnosis.get("majority_baseline") if file_name == f"{task.diagnosis_metric}.png" else None
        plot_curves(histories, title, y_label, series, folder / file_name, baseline)
    prediction_files = []
    for kind in CURVES:
        curve_files = sorted((CURVES_DIR / kind).glob("*.csv"))
        if curve_files:  # a classifier's, with a labelled validation split
            prediction_files.append(f"{kind}.png")
            plot_curve(kind, {path.stem: _read_csv(path) for path in curve_files}, folder / prediction_files[-1])
    for split in task.evaluated_splits:
        predictions = _read_csv(predictions_file(split))
        if any(row["label"] == "" for row in predictions):
            continue  # a split without labels: nothing to compare with
        prediction_files.append(f"{'scatter' if task.regression else 'confusion'}_{split}.png")
        if task.regression:
            plot_scatter(predictions, split, folder / prediction_files[-1])
        elif task.multi_label:
            plot_label_outcomes(predictions, task.label_names, split, folder / prediction_files[-1])
        else:
            plot_confusion(predictions, task.label_names, split, folder / prediction_files[-1])
    return [*curves, *prediction_files]


def _report(params, task, verdict_sentence, remedies, figures):
    metrics = json.loads(EVALUATION_METRICS_FILE.read_text())
    lines = ["# Training report", "", f"**Verdict: {verdict_sentence}.**", "",
             "## What to try", "", *remedies, "", "## Final metrics", "",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for key, value in metrics.items():
        if not key.endswith(("_ci_low", "_ci_high")):
            lines.append(f"| {key} | {value:.4f} | {interval_text(metrics, key)} |")
    lines += _per_class_lines(task)
    lines += ["", "## Params of the run", "", *params_table(params), "", "## Curves", ""]
    lines += [f"![{name}]({FIGURES}/{name})" for name in figures] or [
        f"A trial of a search ({params.trial}): no figures; `dvc plots diff` draws its curves."]
    return "\n".join(lines) + "\n"


def _per_class_lines(task):
    """A table per labelled split of a classification: each class's (label's) precision, recall, F1, count."""
    kind = "label" if task.multi_label else "class"
    lines = []
    for split, classes in json.loads(PER_CLASS_METRICS_FILE.read_text()).items():
        lines += ["", f"## Per {kind} ({split})", "", f"| {kind} | precision | recall | F1 | examples |",
                  "|---|---|---|---|---|"]
        lines += [f"| {name} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1']:.4f} | "
                  f"{scores['support']} |" for name, scores in classes.items()]
    return lines


def _read_csv(path):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro train evaluate` first")
    return read_csv(path)


if __name__ == "__main__":
    run_stage(main)
