"""Stage `evaluate`: the trained model on every validation and test split, to metrics/ and predictions/.

Reports the task's metrics (GLUE's, from the project's `evaluate` module) and the mean loss
per split, each with a 95% bootstrap confidence interval, plus one CSV row per example for
confusion matrices and scatter plots, and for a classification each class's (each label's)
precision, recall and F1 (metrics/per_class.json) and the ROC, precision-recall and calibration
curves of its validation predictions (metrics/curves/). A split without labels (GLUE's test sets) gets
predictions but no metrics. A search trial (param `trial`) publishes the validation scores and
predictions its train stage made, without intervals: all a search and `finetune pick` read.
"""

import json
import shutil
import sys
import time

from finetune.core.errors import PipelineError, run_stage
from finetune.core.metrics import interval_text, per_class_scores
from finetune.core.outputs import atomic_output, read_csv, write_json
from finetune.core.params import load_params
from finetune.core.paths import (
    EVALUATION_METRICS_FILE,
    PER_CLASS_METRICS_FILE,
    PREDICTIONS_DIR,
    TRIAL_SCORES_DIR,
    TRIAL_SCORES_FILE,
    predictions_file,
    trained_model_dir,
)
from finetune.core.tasks import load_task
from finetune.processes import launch
from finetune.scoring.curves import write_curves


def main():
    params = load_params()
    status = launch("stages.evaluate", params.processes)
    if status is not None:  # ran on several processes, launched from here
        sys.exit(status)
    task = load_task()
    started = time.perf_counter()
    if params.trial:
        metrics = _publish_trial_scores(task)
    else:
        metrics = _evaluate(params, task)
    if metrics is None:
        return  # not the main process of `accelerate launch`
    write_json(EVALUATION_METRICS_FILE, metrics)
    labelled = _labelled_predictions(task)
    write_json(PER_CLASS_METRICS_FILE, {split: per_class_scores(rows, task.label_names, task.multi_label)
                                        for split, rows in labelled.items()})
    write_curves(task, {split: rows for split, rows in labelled.items() if split in task.validation_splits})
    summary = ", ".join(f"{key} {value:.4f} {interval_text(metrics, key)}" for key, value in metrics.items()
                        if not key.endswith(("_ci_low", "_ci_high")))
    print(f"evaluate: {summary} -> {EVALUATION_METRICS_FILE} in {time.perf_counter() - started:.0f}s")


def _evaluate(params, task):
    """The task's metrics with their intervals, and every split's predictions; None on a process
    other than the main one."""
    # Imported here: a trial's evaluate needs none of them (4 s of imports, measured).
    import tempfile

    from transformers import DataCollatorWithPadding, ProgressCallback, Trainer, TrainingArguments

    from finetune.data.loading import load_tokenized
    from finetune.data.splits import has_labels
    from finetune.models import device_arguments, load_classifier, load_tokenizer
    from finetune.scoring.scores import (
        bootstrap_intervals,
        point_scores,
        predict_split,
        predictions_of,
        write_predictions,
    )

    model_dir = str(trained_model_dir())
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir)
    tokenized = load_tokenized()
    with tempfile.TemporaryDirectory() as scratch_dir:
        predictor = Trainer(model=model, data_collator=DataCollatorWithPadding(tokenizer),
                            args=TrainingArguments(output_dir=scratch_dir, per_device_eval_batch_size=params.eval_batch_size,
                                                   report_to="none", **device_arguments(params.precision)))
        predictor.remove_callback(ProgressCallback)  # a bar per batch; predict_split prints rows/s and time left
        main_process = predictor.is_world_process_zero()
        metrics = {}
        for split in task.evaluated_splits:
            started = time.perf_counter()
            indices, labels, logits = predict_split(predictor, task, tokenized[split], f"evaluate: {split}")
            if not main_process:
                continue
            predicted = time.perf_counter()
            threshold = params.multi_label_threshold
            write_predictions(predictions_file(split), task, indices, labels, logits, threshold)
            if not has_labels(task, labels):
                continue
            points, losses = point_scores(task, split, logits, labels, threshold)
            intervals = bootstrap_intervals(task, predictions_of(task, logits, threshold), labels, losses,
                                            params.bootstrap_resamples, params.bootstrap_seed)
            print(f"evaluate: {split}: {len(labels):,} rows predicted in {predicted - started:.0f}s "
                  f"({len(labels) / (predicted - started):,.0f} rows/s), {params.bootstrap_resamples:,} bootstrap "
                  f"resamples in {time.perf_counter() - predicted:.0f}s")
            for key, value in points.items():
                low, high = intervals[key.removeprefix(f"{split}_")]
                metrics.update({key: value, f"{key}_ci_low": low, f"{key}_ci_high": high})
    return metrics if main_process else None


def _labelled_predictions(task):
    """{split: prediction rows} of every split predicted with labels (read once, for the per-class
    scores and the curves); {} for a regression, which has neither."""
    if task.regression:
        return {}
    labelled = {}
    for split in task.evaluated_splits:
        path = predictions_file(split)
        rows = read_csv(path) if path.is_file() else []
        if rows and all(row["label"] for row in rows):
            labelled[split] = rows
    return labelled


def _publish_trial_scores(task):
    """A trial's validation scores and predictions, as its train stage made them."""
    if not TRIAL_SCORES_FILE.is_file():
        raise PipelineError(f"{TRIAL_SCORES_FILE} not found: run `dvc repro train` with this trial first")
    with atomic_output(PREDICTIONS_DIR) as staging:
        staging.mkdir()
        for split in task.validation_splits:
            shutil.copyfile(predictions_file(split, TRIAL_SCORES_DIR / "predictions"), predictions_file(split, staging))
    return json.loads(TRIAL_SCORES_FILE.read_text())


if __name__ == "__main__":
    run_stage(main)
