"""Stage `plot`: the run's report, metrics/report/report.md, with its PNGs beside it.

Learning curves (loss and each of the task's metrics on the train subset and validation;
learning rate), confusion matrices (or predicted-vs-true scatters for a regression), the
diagnosis in one sentence, the final metrics and every param of the run. `dvc plots show` draws
curves from the CSVs (see `plots:` in dvc.yaml); the report is for reading one run without DVC.
"""

import json
import time

from finetune.core.errors import PipelineError, run_stage
from finetune.core.outputs import atomic_output, read_csv
from finetune.core.params import load_params, params_table
from finetune.core.paths import (
    DIAGNOSIS_FILE,
    EVALUATION_HISTORY_FILE,
    EVALUATION_METRICS_FILE,
    REPORT_DIR,
    TRAIN_HISTORY_FILE,
    predictions_file,
)
from finetune.core.tasks import load_task
from finetune.reporting.diagnosis import REMEDIES, explanation
from finetune.reporting.figures import curves_of, plot_confusion, plot_curves, plot_scatter

# The report's PNGs, in a folder of their own that dvc.yaml declares as plots: any task's figures.
FIGURES = "figures"


def main():
    params = load_params()
    task = load_task()
    started = time.perf_counter()
    histories = {"train": _read_csv(TRAIN_HISTORY_FILE), "evaluations": _read_csv(EVALUATION_HISTORY_FILE)}
    diagnosis = json.loads(DIAGNOSIS_FILE.read_text())
    curves = curves_of(task)
    with atomic_output(REPORT_DIR) as staging:
        figures = staging / FIGURES
        figures.mkdir(parents=True)
        for file_name, (title, y_label, series) in curves.items():
            baseline = diagnosis.get("majority_baseline") if file_name == "accuracy.png" else None
            plot_curves(histories, title, y_label, series, figures / file_name, baseline)
        prediction_files = []
        for split in task.evaluated_splits:
            predictions = _read_csv(predictions_file(split))
            if any(row["label"] == "" for row in predictions):
                continue  # a split without labels: nothing to compare with
            prediction_files.append(f"{'scatter' if task.regression else 'confusion'}_{split}.png")
            if task.regression:
                plot_scatter(predictions, split, figures / prediction_files[-1])
            else:
                plot_confusion(predictions, task.label_names, split, figures / prediction_files[-1])
        sentence = explanation(task, diagnosis, params)
        (staging / "report.md").write_text(_report(params, diagnosis, sentence, [*curves, *prediction_files]))
        written = sorted(str(path.relative_to(staging)) for path in staging.rglob("*.*"))
    print(f"plot: {', '.join(written)} -> {REPORT_DIR}/ in {time.perf_counter() - started:.1f}s")


def _report(params, diagnosis, verdict_sentence, figures):
    metrics = json.loads(EVALUATION_METRICS_FILE.read_text())
    lines = ["# Training report", "", f"**Verdict: {verdict_sentence}.**", "",
             f"Suggested remedies: {REMEDIES[diagnosis['verdict']]}.", "", "## Final metrics", "",
             "| metric | value | 95% interval |", "|---|---|---|"]
    for key, value in metrics.items():
        if not key.endswith(("_ci_low", "_ci_high")):
            lines.append(f"| {key} | {value:.4f} | [{metrics[key + '_ci_low']:.4f}, {metrics[key + '_ci_high']:.4f}] |")
    lines += ["", "## Params of the run", "", *params_table(params), "", "## Curves", ""]
    lines += [f"![{name}]({FIGURES}/{name})" for name in figures]
    return "\n".join(lines) + "\n"


def _read_csv(path):
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `dvc repro train evaluate` first")
    return read_csv(path)


if __name__ == "__main__":
    run_stage(main)
