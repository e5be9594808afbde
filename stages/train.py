"""Stage `train`: fine-tune the checkpoint on MRPC train, evaluating on validation as it goes.

Uses the Hugging Face `Trainer` (which runs on Accelerate) rather than a hand-written
Accelerate loop: evaluation every `eval_steps`, per-step logging of loss, learning rate
and gradient norm, mixed precision, length-grouped batches, early stopping and keeping
the best model are all options of it, so this file only wires params to them. What it
adds: resumable checkpoints of one configuration only, and a batch order that a run
resumed mid-epoch draws again exactly.
"""

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from stages.common import PipelineError, atomic_output, run_stage, write_json
from stages.data import load_tokenized, sorted_by_length
from stages.fast_dropout import use_fast_cpu_dropout
from stages.first_token_head import compute_last_layer_for_first_token_only
from stages.model import device_arguments, freeze_embeddings, load_classifier, load_tokenizer
from stages.scores import compute_metrics
from stages.params import load_params
from stages.paths import (
    CHECKPOINT_DIR,
    EVALUATION_HISTORY_FILE,
    MODEL_DIR,
    TRAIN_HISTORY_FILE,
    TOKENIZED_DIR,
    TRAIN_METRICS_FILE,
)

# Trainer's log keys -> our CSV columns. Evaluations run on validation and on a fixed
# random subset of train of the same size, so the train/validation gap shows in one file.
TRAIN_HISTORY_COLUMNS = {"step": "step", "epoch": "epoch", "loss": "train_loss",
                         "learning_rate": "learning_rate", "grad_norm": "grad_norm"}
EVALUATED_SETS = ("train_subset", "validation")
EVALUATION_HISTORY_COLUMNS = {"step": "step", "epoch": "epoch", **{
    f"eval_{name}_{metric}": f"{name}_{metric}" for name in EVALUATED_SETS for metric in ("loss", "accuracy", "f1")
}}
# Fixed, unlike `seed`: every run is measured on the same train pairs.
TRAIN_SUBSET_SEED = 0


# Saved beside each checkpoint: the RNG state its epoch's batch order was drawn with.
EPOCH_ORDER_FILE = "epoch_order_rng.pt"


class ReplayableOrderSampler(torch.utils.data.Sampler):
    """Trainer's own sampler (random or length-grouped), whose epoch order a resumed run
    draws again exactly.

    Trainer's samplers draw each epoch's order from the global RNG as the epoch starts. A run
    resumed mid-epoch restores its checkpoint's RNG state, not the epoch's, so its remaining
    batches would differ from an uninterrupted run's. This sampler remembers the state each
    order was drawn with (saved in every checkpoint) and replays it for the resumed epoch.

    With several processes, each draws the order with the main process's RNG state: every
    process must shard the very same order, and their own states part ways as soon as their
    batches differ (dropout draws as many numbers as a batch has tokens).
    """

    def __init__(self, sampler, replay=None):
        self.sampler, self.epoch = sampler, 0
        self.replay = replay  # {"epoch": ..., "rng_state": ...} from a checkpoint, or None
        self.order_rng_state = None

    def set_epoch(self, epoch):  # Trainer calls it (through Accelerate) before each epoch
        self.epoch = epoch

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        replaying = self.replay is not None and self.replay["epoch"] == self.epoch
        rng_state = torch.get_rng_state()
        self.order_rng_state = self.replay["rng_state"] if replaying else _main_process_value(rng_state)
        torch.set_rng_state(self.order_rng_state)
        order = list(self.sampler)
        if replaying:
            torch.set_rng_state(rng_state)  # Trainer then restores the checkpoint's own state
            self.replay = None
        return iter(order)


def _main_process_value(value):
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    values = [value]
    torch.distributed.broadcast_object_list(values, src=0)
    return values[0]


class ResumableOrderTrainer(Trainer):
    # Hooks into three of Trainer's private methods: where it makes the train and evaluation
    # samplers, and where it writes a checkpoint.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replay_order = None  # what a resumed run replays: the checkpoint's EPOCH_ORDER_FILE
        self.order_sampler = None

    def _get_train_sampler(self, train_dataset=None):
        self.order_sampler = ReplayableOrderSampler(super()._get_train_sampler(train_dataset), self.replay_order)
        return self.order_sampler

    def _get_eval_sampler(self, eval_dataset):
        # The evaluation sets come sorted by length. With group_by_length Trainer would
        # regroup them as it does train batches, padding each batch to ~80 tokens instead
        # of ~55: evaluations took 3.0 s per 408 pairs instead of 2.1 (measured).
        if eval_dataset is None or self.args.world_size > 1:
            return None  # as Trainer does without grouping: Accelerate shards the set in order
        return torch.utils.data.SequentialSampler(eval_dataset)

    def _save_checkpoint(self, model, trial):
        # Written first: Trainer writes trainer_state.json last, which marks a whole checkpoint.
        if self.args.should_save and self.order_sampler is not None and self.order_sampler.order_rng_state is not None:
            checkpoint = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            checkpoint.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": self.order_sampler.epoch, "rng_state": self.order_sampler.order_rng_state},
                       checkpoint / EPOCH_ORDER_FILE)
        super()._save_checkpoint(model, trial)


class EvaluationProgress(ProgressCallback):
    """Trainer's progress bar, printing evaluations only: a line per logging step would be
    a wall of text, and those values are in metrics/history/train.csv anyway."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and any(key.startswith("eval_") for key in logs):
            super().on_log(args, state, control, logs=logs, **kwargs)


def training_arguments(params, output_dir, evaluate=True):
    early_stopping = evaluate and params.early_stopping_patience > 0
    return TrainingArguments(
        output_dir=output_dir,
        seed=params.seed,
        learning_rate=params.lr,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        per_device_train_batch_size=_per_process_batch_size(params.train_batch_size),
        per_device_eval_batch_size=params.eval_batch_size,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_ratio,  # a float in [0, 1) is a fraction of all steps
        lr_scheduler_type=params.lr_scheduler,
        optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=params.eval_steps,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        # Resumable checkpoints (model, optimizer, scheduler, RNG states, step); early
        # stopping also keeps the best evaluation's one.
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.keep_checkpoints,
        load_best_model_at_end=early_stopping,
        metric_for_best_model=f"validation_{params.best_model_metric}",
        greater_is_better=params.best_model_metric != "loss",
        report_to="none",
        # On several processes Trainer multiplies the loss by their number for models whose
        # loss sums over tokens; the classifiers' loss is already a mean over pairs, so that
        # would double the loss and the gradients on two processes (seen in the test).
        average_tokens_across_devices=False,
        **device_arguments(params.precision),
    )


def _per_process_batch_size(train_batch_size):
    """`train_batch_size` is pairs per optimizer step whatever the number of processes, so a
    run on several processes (accelerate launch) makes the same steps as a run on one."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if train_batch_size % processes:
        raise PipelineError(f"train_batch_size: {train_batch_size} pairs per step do not split evenly over "
                            f"{processes} processes; use a multiple of {processes}")
    return train_batch_size // processes


def build_trainer(params, model, tokenizer, train_split, evaluation_sets, output_dir):
    """The stage's Trainer; without `evaluation_sets` it only trains (the speed benchmark)."""
    args = training_arguments(params, output_dir, evaluate=bool(evaluation_sets))
    if params.freeze_embeddings:
        freeze_embeddings(model)  # before Trainer makes its optimizer, which takes trainable weights only
    use_fast_cpu_dropout(model)
    compute_last_layer_for_first_token_only(model)
    # Early stopping is on exactly when the arguments keep the best model.
    callbacks = []
    if args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))
    trainer = ResumableOrderTrainer(
        model=model,
        args=args,
        train_dataset=train_split,
        eval_dataset=evaluation_sets,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(EvaluationProgress)
    return trainer


def evaluation_sets(tokenized):
    """Validation, and a fixed random subset of train of the same size, in length order."""
    train_split = tokenized["train"].remove_columns("idx")
    validation_split = tokenized["validation"].remove_columns("idx")
    train_subset = train_split.shuffle(seed=TRAIN_SUBSET_SEED).select(range(len(validation_split)))
    return {"train_subset": sorted_by_length(train_subset), "validation": sorted_by_length(validation_split)}


def resumable_checkpoint(params):
    """The last checkpoint of an interrupted run of these very params and data, or None.

    Checkpoints of another configuration are deleted, never resumed from.
    """
    fingerprint = _run_fingerprint(params)
    fingerprint_file = CHECKPOINT_DIR / "fingerprint.json"
    if fingerprint_file.is_file() and json.loads(fingerprint_file.read_text()) == fingerprint:
        return _last_complete_checkpoint()
    if any(CHECKPOINT_DIR.glob("checkpoint-*")):
        print(f"train: discarding {CHECKPOINT_DIR}/, checkpoints of other params or data")
    if CHECKPOINT_DIR.exists():  # Trainer makes the folder as it starts
        shutil.rmtree(CHECKPOINT_DIR)
    CHECKPOINT_DIR.mkdir(parents=True)
    write_json(fingerprint_file, fingerprint)
    return None


def _last_complete_checkpoint():
    """The newest checkpoint written in full (Trainer writes trainer_state.json last)."""
    complete = [path for path in CHECKPOINT_DIR.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda path: int(path.name.rpartition("-")[2]))) if complete else None


def _run_fingerprint(params):
    train_data = hashlib.sha256()
    for arrow_file in sorted((TOKENIZED_DIR / "train").glob("*.arrow")):
        train_data.update(arrow_file.read_bytes())
    return {"params": dataclasses.asdict(params), "train_data_sha256": train_data.hexdigest()}


def main():
    params = load_params()
    started = time.perf_counter()
    set_seed(params.seed)
    tokenizer = load_tokenizer(params.checkpoint)
    tokenized = load_tokenized()
    model = load_classifier(params.checkpoint, dropout=params.dropout)
    trainer = build_trainer(params, model, tokenizer, tokenized["train"].remove_columns("idx"),
                            evaluation_sets(tokenized), str(CHECKPOINT_DIR))
    main_process = trainer.is_world_process_zero()
    # Under `accelerate launch`, the main process alone keeps or discards checkpoints; the
    # others then find what it kept.
    with trainer.args.main_process_first(local=False, desc="checking checkpoints"):
        resume_from = resumable_checkpoint(params) if main_process else _last_complete_checkpoint()
    if resume_from:
        if main_process:
            print(f"train: resuming from {resume_from}")
        trainer.replay_order = torch.load(Path(resume_from) / EPOCH_ORDER_FILE, weights_only=True)
    trainer.train(resume_from_checkpoint=resume_from)
    if not main_process:
        return  # every process holds the same trained model; one writes it

    with atomic_output(MODEL_DIR) as staging:
        trainer.save_model(str(staging))  # saves the tokenizer beside the model
    shutil.rmtree(CHECKPOINT_DIR)  # finished: a forced re-run starts afresh
    state = trainer.state
    train_rows = _history_rows(state.log_history, TRAIN_HISTORY_COLUMNS)
    evaluation_rows = _history_rows(state.log_history, EVALUATION_HISTORY_COLUMNS)
    _write_history(TRAIN_HISTORY_FILE, train_rows)
    _write_history(EVALUATION_HISTORY_FILE, evaluation_rows)

    best = _best_evaluation(evaluation_rows, params.best_model_metric)
    saved = best if params.early_stopping_patience > 0 else evaluation_rows[-1]
    write_json(TRAIN_METRICS_FILE, {
        "train_loss": _mean_train_loss(train_rows),
        "trained_steps": state.global_step,
        "trained_epochs": round(state.epoch, 4),
        "stopped_early": state.global_step < state.max_steps,
        "best_step": best["step"],
        "saved_model_step": saved["step"],
        "saved_model_validation_accuracy": saved["validation_accuracy"],
        "saved_model_validation_f1": saved["validation_f1"],
        "saved_model_validation_loss": saved["validation_loss"],
    })
    print(
        f"train: {state.global_step} steps ({state.epoch:.2f} epochs) in {time.perf_counter() - started:.0f}s, "
        f"saved model of step {saved['step']} (validation accuracy {saved['validation_accuracy']:.4f}, "
        f"F1 {saved['validation_f1']:.4f}) -> {MODEL_DIR}/"
    )


def _history_rows(log_history, columns):
    """Rows of `columns`, one per global step that logged any of them.

    Trainer logs each evaluation set as its own entry; rows merge those of one step.
    """
    rows = {}
    for entry in log_history:
        values = {column: entry[key] for key, column in columns.items() if key in entry}
        if set(values) - {"step", "epoch"}:
            rows.setdefault(entry["step"], {}).update(values)
    return [{column: row.get(column) for column in columns.values()} for _, row in sorted(rows.items())]


def _mean_train_loss(train_rows):
    """Mean loss per step up to the last logged step, from the logged window means
    (Trainer's own figure covers only the steps since a resume)."""
    steps = [row["step"] for row in train_rows]
    window_lengths = [step - previous for previous, step in zip([0, *steps], steps)]
    return sum(row["train_loss"] * length for row, length in zip(train_rows, window_lengths)) / steps[-1]


def _best_evaluation(evaluation_rows, metric):
    """The evaluation Trainer's load_best_model_at_end would pick: first best wins ties."""
    sign = 1 if metric == "loss" else -1
    return min(evaluation_rows, key=lambda row: (sign * row[f"validation_{metric}"], row["step"]))


def _write_history(path, rows):
    with atomic_output(path) as staging:
        with open(staging, "w", newline="") as history_file:
            writer = csv.DictWriter(history_file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    run_stage(main)
