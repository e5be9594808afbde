"""Stage `train`: fine-tune the checkpoint on the task's train split, evaluating on validation as it goes.

The Trainer and its options are wired in finetune/training/trainer.py; a run killed mid-way
resumes from its last checkpoint (finetune/training/resume.py) and ends as an uninterrupted run
would. A search trial (param `trial`) reports to its study and may be pruned
(finetune/training/pruning.py); it keeps no weights but scores validation for evaluate.
"""

import os
import shutil
import sys
import time

import torch
from transformers import set_seed

from finetune.core.errors import run_stage
from finetune.core.metrics import LOSS
from finetune.core.outputs import atomic_output, write_json
from finetune.core.params import load_params
from finetune.core.paths import (
    CHECKPOINT_DIR,
    EVALUATED_ROWS_FILE,
    TRAIN_METRICS_FILE,
    TRAINED_MODEL_DIR,
    TRIAL_SCORES_DIR,
    TRIAL_SCORES_FILE,
    predictions_file,
)
from finetune.core.tasks import best_model_metric, load_task
from finetune.data.loading import load_tokenized
from finetune.models import load_classifier, load_tokenizer, resolved_precision
from finetune.processes import launch
from finetune.scoring.scores import point_scores, predict_split, write_predictions
from finetune.training.class_weights import resolved_class_weights
from finetune.training.evaluations import evaluation_sets
from finetune.training.history import (
    TRAIN_HISTORY_COLUMNS,
    best_evaluation,
    evaluation_history_columns,
    history_rows,
    mean_train_loss,
)
from finetune.training.label_priors import start_from_label_frequencies
from finetune.training.live import LiveHistory
from finetune.training.pruning import TrialReporter
from finetune.training.resume import last_complete_checkpoint, resumable_checkpoint
from finetune.training.trainer import build_trainer


def main():
    params = load_params()
    status = launch("stages.train", params.processes)
    if status is not None:  # ran on several processes, launched from here
        sys.exit(status)
    task = load_task()
    watched = best_model_metric(params, task)
    started = time.perf_counter()
    set_seed(params.seed)
    tokenizer = load_tokenizer(params.checkpoint)
    tokenized = load_tokenized()
    train_labels = tokenized["train"]["labels"]  # a column read is a copy: 43,410 x 28 floats on GoEmotions
    class_weights = resolved_class_weights(params.class_weights, task, train_labels)
    model = load_classifier(params.checkpoint, task, dropout=params.dropout)
    if task.multi_label:
        start_from_label_frequencies(model, task, train_labels, class_weights)
    sets, evaluated_rows = evaluation_sets(task, tokenized, params.eval_sample_size)
    trainer, speedups = build_trainer(params, task, model, tokenizer, tokenized["train"].remove_columns("idx"),
                                      sets, str(CHECKPOINT_DIR), class_weights)
    main_process = trainer.is_world_process_zero()
    if main_process:
        print(f"train: {_where(trainer.args)}")
        print(f"train: CPU speed-ups {speedups}" if speedups else "train: CPU speed-ups off (cpu_speedups: false)")
        write_json(EVALUATED_ROWS_FILE, evaluated_rows)
        print(f"train: evaluating every {trainer.args.eval_steps} steps on " + ", ".join(
            f"{name} {rows['rows']} of {rows['of']} rows" for name, rows in evaluated_rows.items()))
    # Under `accelerate launch`, the main process alone keeps or discards checkpoints; the
    # others then find what it kept.
    with trainer.args.main_process_first(local=False, desc="checking checkpoints"):
        resume_from = resumable_checkpoint(trainer.args, params) if main_process else last_complete_checkpoint()
    if resume_from:
        if main_process:
            print(f"train: resuming from {resume_from}")
        trainer.resume_order_from(resume_from)
    # Histories and DVCLive's summary as training goes (the main process writes them).
    trainer.add_callback(LiveHistory(task, resuming=bool(resume_from)))
    validation = task.validation_splits[0]
    reporter = (TrialReporter(params.trial, validation, watched, params.train_batch_size, main_process)
                if params.trial else None)
    if reporter:
        trainer.add_callback(reporter)
    output = trainer.train(resume_from_checkpoint=resume_from)
    trial_scores = _score_validation(trainer, task, tokenized) if params.trial else None
    if not main_process:
        return  # every process holds the same trained model; one writes it

    with atomic_output(TRAINED_MODEL_DIR) as staging:
        if params.trial:  # config, tokenizer and validation scores: a trial's weights serve nobody
            trainer.model.config.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            _write_trial_scores(staging, task, trial_scores, params.multi_label_threshold)
        else:
            trainer.save_model(str(staging))  # saves the tokenizer beside the model
    state = trainer.state
    # The same rows LiveHistory has written to metrics/history/ step by step.
    train_rows = history_rows(state.log_history, TRAIN_HISTORY_COLUMNS)
    evaluation_rows = history_rows(state.log_history, evaluation_history_columns(task))

    best = best_evaluation(evaluation_rows, validation, watched)
    saved = best if params.early_stopping_patience > 0 else evaluation_rows[-1]
    saved_scores = {f"{validation}_{metric}": saved[f"{validation}_{metric}"] for metric in (*task.metrics, LOSS)}
    write_json(TRAIN_METRICS_FILE, {
        # Without a logged step (max_steps below logging_steps), Trainer's own mean of the run.
        "train_loss": mean_train_loss(train_rows) if train_rows else output.training_loss,
        "trained_steps": state.global_step,
        "trained_epochs": round(state.epoch, 4),
        "stopped_early": state.global_step < state.max_steps,
        # `precision: auto` is bf16 or fp32 by host: the reason two hosts' results differ.
        "precision_used": resolved_precision(params.precision),
        # `processes: auto` is one per GPU: the world a run was trained by (same results within 1e-4).
        "processes_used": trainer.args.world_size,
        # The loss's weight of each class (`class_weights: balanced` counts train's labels), or null.
        "class_weights_used": class_weights,
        "best_step": best["step"],
        "saved_model_step": saved["step"],
        **{f"saved_model_{key}": value for key, value in saved_scores.items()},
        **({"trial_state": "pruned" if reporter.pruned_at_step else "complete"} if reporter else {}),
    })
    # Last: if anything above fails, the checkpoints stay and the next run resumes, not retrains.
    shutil.rmtree(CHECKPOINT_DIR)
    scores = ", ".join(f"{key} {value:.4f}" for key, value in saved_scores.items() if not key.endswith("_loss"))
    pruned = f", pruned by its study at step {reporter.pruned_at_step}" if reporter and reporter.pruned_at_step else ""
    print(f"train: {state.global_step} steps ({state.epoch:.2f} epochs{pruned}) in {time.perf_counter() - started:.0f}s, "
          f"saved model of step {saved['step']} ({scores}) -> {TRAINED_MODEL_DIR}/")


def _where(args):
    """What this run trains on, for its log: processes, device, threads (a search trial's share)."""
    device = str(args.device) + (f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
                                 if args.device.type == "cuda" and "CUDA_VISIBLE_DEVICES" in os.environ else "")
    processes = f"{args.world_size} processes" if args.world_size > 1 else "1 process"
    return f"{processes}, on {device}, {torch.get_num_threads()} CPU threads each"


def _score_validation(trainer, task, tokenized):
    """A trial's validation scores and predictions of its final model, made here while the model is
    in memory: evaluate then loads no model (a trial saves its run the imports and predictions of a
    second process). {split: (idx, labels, logits)}, on every process (Trainer gathers them)."""
    return {split: predict_split(trainer, task, tokenized[split]) for split in task.validation_splits}


def _write_trial_scores(model_dir, task, predicted, threshold):
    scores = {}
    for split, (indices, labels, logits) in predicted.items():
        write_predictions(predictions_file(split, model_dir / TRIAL_SCORES_DIR.name / "predictions"), task, indices,
                          labels, logits, threshold)
        scores.update(point_scores(task, split, logits, labels, threshold)[0])
    write_json(model_dir / TRIAL_SCORES_DIR.name / TRIAL_SCORES_FILE.name, scores)


if __name__ == "__main__":
    run_stage(main)
