"""Stage `train`: fine-tune the checkpoint on MRPC train, evaluating on validation as it goes.

Uses the Hugging Face `Trainer` (which runs on Accelerate) rather than a hand-written
Accelerate loop: evaluation every `eval_steps`, per-step logging of loss, learning rate
and gradient norm, mixed precision, length-grouped batches, early stopping and keeping
the best model are all options of it, so this file only wires params to them.
"""

import csv
import tempfile
import time

import datasets
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from stages.common import PipelineError, atomic_output, run_stage, write_json
from stages.model import device_arguments, load_classifier, load_tokenizer
from stages.scores import compute_metrics
from stages.params import load_params
from stages.paths import (
    EVALUATION_HISTORY_FILE,
    MODEL_DIR,
    TOKENIZED_DIR,
    TRAIN_HISTORY_FILE,
    TRAIN_METRICS_FILE,
)

TRAIN_HISTORY_COLUMNS = {"step": "step", "epoch": "epoch", "loss": "train_loss",
                         "learning_rate": "learning_rate", "grad_norm": "grad_norm"}
EVALUATION_HISTORY_COLUMNS = {"step": "step", "epoch": "epoch", "eval_loss": "validation_loss",
                              "eval_accuracy": "validation_accuracy", "eval_f1": "validation_f1"}


class EvaluationProgress(ProgressCallback):
    """Trainer's progress bar, printing evaluations only: a line per logging step would be
    a wall of text, and those values are in metrics/history/train.csv anyway."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "eval_loss" in logs:
            super().on_log(args, state, control, logs=logs, **kwargs)


def training_arguments(params, output_dir):
    early_stopping = params.early_stopping_patience > 0
    return TrainingArguments(
        output_dir=output_dir,
        seed=params.seed,
        learning_rate=params.lr,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.train_batch_size,
        per_device_eval_batch_size=params.eval_batch_size,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_ratio,  # a float in [0, 1) is a fraction of all steps
        lr_scheduler_type=params.lr_scheduler,
        optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        eval_strategy="steps",
        eval_steps=params.eval_steps,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        # Keeping the best model needs a checkpoint at each evaluation; without early
        # stopping the final model is the result and nothing needs saving mid-run.
        save_strategy="steps" if early_stopping else "no",
        save_steps=params.eval_steps,
        save_total_limit=1,
        load_best_model_at_end=early_stopping,
        metric_for_best_model=params.best_model_metric,
        greater_is_better=params.best_model_metric != "loss",
        report_to="none",
        **device_arguments(params.precision),
    )


def main():
    params = load_params()
    started = time.perf_counter()
    set_seed(params.seed)
    tokenizer = load_tokenizer(params.checkpoint)
    if not TOKENIZED_DIR.is_dir():
        raise PipelineError(f"{TOKENIZED_DIR} not found: run `dvc repro tokenize` first")
    tokenized = datasets.load_from_disk(str(TOKENIZED_DIR))
    model = load_classifier(params.checkpoint)

    callbacks = []
    if params.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))
    # Trainer's mid-run checkpoints (needed to keep the best model) are scratch, not results.
    with tempfile.TemporaryDirectory(prefix="trainer-") as trainer_dir:
        trainer = Trainer(
            model=model,
            args=training_arguments(params, trainer_dir),
            train_dataset=tokenized["train"].remove_columns("idx"),
            eval_dataset=tokenized["validation"].remove_columns("idx"),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
        )
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(EvaluationProgress)
        result = trainer.train()

    with atomic_output(MODEL_DIR) as staging:
        trainer.save_model(str(staging))  # saves the tokenizer beside the model
    state = trainer.state
    _write_history(TRAIN_HISTORY_FILE, state.log_history, TRAIN_HISTORY_COLUMNS, required="loss")
    _write_history(EVALUATION_HISTORY_FILE, state.log_history, EVALUATION_HISTORY_COLUMNS, required="eval_loss")
    evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
    best_step = state.best_global_step if params.early_stopping_patience > 0 else state.global_step
    best = next((entry for entry in evaluations if entry["step"] == best_step), evaluations[-1])
    write_json(TRAIN_METRICS_FILE, {
        "train_loss": result.training_loss,
        "trained_steps": state.global_step,
        "trained_epochs": round(state.epoch, 4),
        "stopped_early": state.global_step < state.max_steps,
        "saved_model_step": best["step"],
        "saved_model_validation_accuracy": best["eval_accuracy"],
        "saved_model_validation_f1": best["eval_f1"],
        "saved_model_validation_loss": best["eval_loss"],
    })
    print(
        f"train: {state.global_step} steps ({state.epoch:.2f} epochs) in {time.perf_counter() - started:.0f}s, "
        f"saved model of step {best['step']} (validation accuracy {best['eval_accuracy']:.4f}, "
        f"F1 {best['eval_f1']:.4f}) -> {MODEL_DIR}/"
    )


def _write_history(path, log_history, columns, required):
    """One CSV row per logged entry that has `required`, keyed by the true global step."""
    with atomic_output(path) as staging:
        with open(staging, "w", newline="") as history_file:
            writer = csv.DictWriter(history_file, fieldnames=list(columns.values()))
            writer.writeheader()
            for entry in log_history:
                if required in entry:
                    writer.writerow({column: entry.get(key) for key, column in columns.items()})


if __name__ == "__main__":
    run_stage(main)
