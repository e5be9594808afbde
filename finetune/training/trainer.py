"""The train stage's `Trainer`: params to TrainingArguments, and its callbacks.

Uses the Hugging Face `Trainer` (which runs on Accelerate) rather than a hand-written
Accelerate loop: evaluation every `eval_steps` (when and on which rows:
finetune/training/evaluations.py), per-step logging of loss, learning rate and gradient norm,
mixed precision, length-grouped batches, early stopping and keeping the best model are all
options of it, so this module only wires params to them.
"""

import os

from transformers import DataCollatorWithPadding, EarlyStoppingCallback, ProgressCallback, TrainingArguments

from finetune.core.errors import PipelineError
from finetune.core.metrics import LOSS, higher_is_better
from finetune.core.tasks import best_model_metric
from finetune.models import device_arguments, freeze_embeddings
from finetune.scoring.scores import metrics_function
from finetune.training.class_weights import weighted_loss
from finetune.training.cpu_speedups import apply_cpu_speedups
from finetune.training.evaluations import cadence, run_steps
from finetune.training.live import completes_evaluation, evaluation_scores
from finetune.training.resume import ResumableOrderTrainer


class TrainingProgress(ProgressCallback):
    """Trainer's one bar for the whole run (steps, elapsed time, ETA) and one line per
    evaluation with every set's scores. Trainer's own callback would also print a dict per
    logging step and per evaluation set, and draw a bar for each set's batches: a wall of
    text, while those values are in metrics/history/ as they happen (finetune/training/live.py)."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not (state.is_world_process_zero and self.training_bar is not None and completes_evaluation(logs, self.task)):
            return
        scores = evaluation_scores(state, self.task)
        sets = [f"{name} " + " ".join(f"{metric} {scores[name, metric]:.4f}" for metric in (LOSS, *self.task.metrics))
                for name in self.task.evaluation_sets]
        self.training_bar.write(f"train: step {state.global_step}/{state.max_steps}: " + " | ".join(sets))


def training_arguments(params, task, output_dir, train_rows, evaluate=True):
    early_stopping = evaluate and params.early_stopping_patience > 0
    eval_steps, save_steps = cadence(params, run_steps(params, train_rows))
    watched = best_model_metric(params, task)
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
        # Random order; ResumableOrderTrainer groups train batches by length itself where asked.
        train_sampling_strategy="random",
        eval_strategy="steps" if evaluate else "no",
        eval_steps=eval_steps,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        # Resumable checkpoints (model, optimizer, scheduler, RNG states, step); early
        # stopping also keeps the best evaluation's one. A search trial keeps none (a killed one
        # is run again): each is a third of a GB on disk for MiniLM, model and optimizer.
        save_strategy="steps" if early_stopping or not params.trial else "no",
        save_steps=save_steps,
        save_total_limit=params.keep_checkpoints,
        load_best_model_at_end=early_stopping,
        metric_for_best_model=f"{task.validation_splits[0]}_{watched}",
        greater_is_better=higher_is_better(watched),
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


def build_trainer(params, task, model, tokenizer, train_split, evaluation_sets, output_dir, class_weights=None):
    """The stage's Trainer; without `evaluation_sets` it only trains (the speed benchmark).
    `class_weights`: {label: weight} of the loss (finetune/training/class_weights.py), or None.

    Returns (trainer, what the CPU speed-ups did: a line for the log, or None when off)."""
    # Without a train split, a Trainer for its loss alone (a test): a step of one batch.
    train_rows = len(train_split) if train_split is not None else params.train_batch_size
    args = training_arguments(params, task, output_dir, train_rows, evaluate=bool(evaluation_sets))
    if params.freeze_embeddings:
        freeze_embeddings(model)  # before Trainer makes its optimizer, which takes trainable weights only
    speedups = apply_cpu_speedups(model, on_cpu=args.use_cpu) if params.cpu_speedups else None
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
        compute_metrics=metrics_function(task, params.multi_label_threshold),
        callbacks=callbacks,
        group_by_length=params.group_by_length,
        compute_loss_func=weighted_loss(class_weights, task.multi_label) if class_weights else None,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainingProgress(task))
    return trainer, speedups

