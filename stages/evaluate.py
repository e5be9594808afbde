"""Stage `evaluate`: the trained model on every validation and test split, to metrics/ and predictions/.

Reports the task's metrics (GLUE's, from the project's `evaluate` module) and the mean loss
per split, each with a 95% bootstrap confidence interval, plus one CSV row per example for
confusion matrices and scatter plots. A split without labels (GLUE's test sets) gets
predictions but no metrics.
"""

import tempfile
import time

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from finetune.core.errors import run_stage
from finetune.core.metrics import LOSS
from finetune.core.outputs import write_csv, write_json
from finetune.core.params import load_params
from finetune.core.paths import EVALUATION_METRICS_FILE, predictions_file, trained_model_dir
from finetune.core.tasks import load_task
from finetune.data.loading import has_labels, load_tokenized, sorted_by_length
from finetune.models import device_arguments, load_classifier, load_tokenizer
from finetune.scoring.scores import bootstrap_intervals, example_losses, predictions_of, task_metrics


def main():
    params = load_params()
    task = load_task()
    started = time.perf_counter()
    model_dir = str(trained_model_dir())
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir)
    tokenized = load_tokenized()

    with tempfile.TemporaryDirectory() as scratch_dir:
        predictor = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=scratch_dir,
                per_device_eval_batch_size=params.eval_batch_size,
                report_to="none",
                **device_arguments(params.precision),
            ),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        main_process = predictor.is_world_process_zero()
        metrics = {}
        for split in task.evaluated_splits:
            # Predicted in length order (little padding), then put back in idx order. Under
            # `accelerate launch`, each process predicts a share and Trainer gathers all the
            # predictions, each example once, to every process: the main process writes.
            split_data = sorted_by_length(tokenized[split])
            output = predictor.predict(split_data.remove_columns(["idx", "labels"]))
            if not main_process:
                continue
            split_order = np.argsort(split_data["idx"])
            split_data = split_data.select(split_order)
            logits = np.asarray(output.predictions, dtype=np.float32)[split_order]
            predictions, labels = predictions_of(task, logits), np.asarray(split_data["labels"])
            _write_predictions(task, split, split_data["idx"], labels, predictions, logits)
            if has_labels(task, labels):
                metrics.update(_scores(task, split, logits, predictions, labels, params))
    if not main_process:
        return
    write_json(EVALUATION_METRICS_FILE, metrics)

    summary = ", ".join(
        f"{key} {value:.4f} [{metrics[key + '_ci_low']:.4f}, {metrics[key + '_ci_high']:.4f}]"
        for key, value in metrics.items() if not key.endswith(("_ci_low", "_ci_high"))
    )
    print(f"evaluate: {summary} -> {EVALUATION_METRICS_FILE} in {time.perf_counter() - started:.0f}s")


def _scores(task, split, logits, predictions, labels, params):
    """Point metrics and their bootstrap intervals, as flat `<split>_<metric>[_ci_low|_ci_high]` keys."""
    losses = example_losses(task, logits, labels)
    points = {**task_metrics(task, predictions, labels), LOSS: float(losses.mean())}
    intervals = bootstrap_intervals(task, predictions, labels, losses, params.bootstrap_resamples,
                                    params.bootstrap_seed)
    scores = {}
    for name, value in points.items():
        low, high = intervals[name]
        scores.update({f"{split}_{name}": value, f"{split}_{name}_ci_low": low, f"{split}_{name}_ci_high": high})
    return scores


def _write_predictions(task, split, indices, labels, predictions, logits):
    """One row per example: label and prediction (class names, or scores for a regression), and
    the probability of class 1 (two classes) or of each class."""
    if task.regression:
        header = ["idx", "label", "prediction"]
        rows = [[index, "" if np.isnan(label) else f"{label:.6f}", f"{prediction:.6f}"]
                for index, label, prediction in zip(indices, labels.tolist(), predictions.tolist(), strict=True)]
    else:
        probabilities = torch.from_numpy(logits).softmax(dim=-1).numpy()
        shown = [1] if task.num_labels == 2 else list(range(task.num_labels))
        header = ["idx", "label", "prediction", *(f"probability_{task.label_names[label]}" for label in shown)]
        names = [*task.label_names, ""]  # index NO_LABEL (-1): no name
        rows = [[index, names[label], names[prediction], *(f"{row[label]:.6f}" for label in shown)]
                for index, label, prediction, row in zip(indices, labels.tolist(), predictions.tolist(),
                                                         probabilities, strict=True)]
    write_csv(predictions_file(split), header, rows)

if __name__ == "__main__":
    run_stage(main)
