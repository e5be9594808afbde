"""Resumable training: checkpoints of one configuration only, and a batch order that a run
resumed mid-epoch draws again exactly, so that it ends byte-identical to an uninterrupted run.

Relies on two private methods of transformers' `Trainer`, for want of a public hook for either
job (tests/test_framework_internals.py lists every internal the project relies on, each with
the test that fails when it changes):
  - `_get_train_sampler`: replaced, to draw each epoch's order (random, or length-grouped with
    transformers' public `LengthGroupedSampler`) and to remember and replay the RNG state it
    was drawn with;
  - `_save_checkpoint`: extended, to save that RNG state inside each checkpoint.
"""

import hashlib
import json
import shutil
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from finetune.core.outputs import write_json
from finetune.core.paths import CHECKPOINT_DIR, TOKENIZED_DIR

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
        self.order_rng_state = self.replay["rng_state"] if replaying else main_process_value(rng_state)
        torch.set_rng_state(self.order_rng_state)
        order = list(self.sampler)
        if replaying:
            torch.set_rng_state(rng_state)  # Trainer then restores the checkpoint's own state
            self.replay = None
        return iter(order)


def main_process_value(value):
    """The main process's `value`, on every process (itself where there is one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    values = [value]
    torch.distributed.broadcast_object_list(values, src=0)
    return values[0]


class ResumableOrderTrainer(Trainer):
    """Trainer whose train batches a resumed run draws again exactly; `group_by_length`: batches
    of similar lengths, as TrainingArguments' `train_sampling_strategy="group_by_length"` makes.

    The grouping is asked of this sampler rather than of TrainingArguments because Trainer would
    also regroup the evaluation sets, which come sorted by length, into shuffled groups: padding
    each batch to ~80 tokens instead of ~55, evaluations took 3.0 s per 408 pairs instead of 2.1
    (measured). With the arguments' default random sampling, Trainer keeps their order."""

    def __init__(self, *args, group_by_length=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
        self.replay_order = None  # what a resumed run replays: the checkpoint's EPOCH_ORDER_FILE
        self.order_sampler = None

    def resume_order_from(self, checkpoint):
        self.replay_order = torch.load(Path(checkpoint) / EPOCH_ORDER_FILE, weights_only=True)

    def _get_train_sampler(self, train_dataset=None):
        if self.group_by_length:
            # What Trainer's own _get_train_sampler builds for train_sampling_strategy="group_by_length",
            # grouped by the pairs of a whole step over all processes, not one process's share: then N
            # processes draw the one-process order, of which each takes its share of every step
            # (grouped by the share, 2 processes trained 4e-4 of loss away from 1: tests/test_many_processes.py).
            step_pairs = self.args.train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps
            sampler = LengthGroupedSampler(step_pairs,
                                           dataset=train_dataset if train_dataset is not None else self.train_dataset,
                                           model_input_name=self.processing_class.model_input_names[0])
        else:
            sampler = super()._get_train_sampler(train_dataset)
        self.order_sampler = ReplayableOrderSampler(sampler, self.replay_order)
        return self.order_sampler

    def _save_checkpoint(self, model, trial):
        # Written first: Trainer writes trainer_state.json last, which marks a whole checkpoint.
        if self.args.should_save and self.order_sampler is not None and self.order_sampler.order_rng_state is not None:
            checkpoint = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            checkpoint.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": self.order_sampler.epoch, "rng_state": self.order_sampler.order_rng_state},
                       checkpoint / EPOCH_ORDER_FILE)
        super()._save_checkpoint(model, trial)


def resumable_checkpoint(training_arguments, params):
    """The last checkpoint of an interrupted run of this very configuration and data, or None.

    Checkpoints of another configuration are deleted, never resumed from.
    """
    fingerprint = _run_fingerprint(training_arguments, params)
    fingerprint_file = CHECKPOINT_DIR / "fingerprint.json"
    if fingerprint_file.is_file() and json.loads(fingerprint_file.read_text()) == fingerprint:
        return last_complete_checkpoint()
    if any(CHECKPOINT_DIR.glob("checkpoint-*")):
        print(f"train: discarding {CHECKPOINT_DIR}/, checkpoints of other params or data")
    if CHECKPOINT_DIR.exists():  # Trainer makes the folder as it starts
        shutil.rmtree(CHECKPOINT_DIR)
    CHECKPOINT_DIR.mkdir(parents=True)
    write_json(fingerprint_file, fingerprint)
    return None


def last_complete_checkpoint():
    """The newest checkpoint written in full (Trainer writes trainer_state.json last)."""
    complete = [path for path in CHECKPOINT_DIR.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda path: int(path.name.rpartition("-")[2]))) if complete else None


def _run_fingerprint(training_arguments, params):
    """What a checkpoint resumes: Trainer's arguments (optimiser, schedule, batch size, evaluation
    and checkpoint steps, seed, precision), the train params outside them and the tokenized train data."""
    train_data = hashlib.sha256()
    for arrow_file in sorted((TOKENIZED_DIR / "train").glob("*.arrow")):
        train_data.update(arrow_file.read_bytes())
    other_params = {name: getattr(params, name) for name in
                    ("checkpoint", "dropout", "freeze_embeddings", "cpu_speedups", "group_by_length",
                     "eval_sample_size")}
    fingerprint = {"training_arguments": training_arguments.to_dict(), "params": other_params,
                   "train_data_sha256": train_data.hexdigest()}
    # Through JSON and back, as the saved one is read (tuples become lists).
    return json.loads(json.dumps(fingerprint))
