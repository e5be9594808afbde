"""The train stage's live history: every logging step and every evaluation reaches the history
CSVs and DVCLive's summary as it happens, so `dvc plots show`, `dvc exp show` (of a running or
queued experiment too), VS Code's DVC extension and DVC Studio follow a run while it trains,
and a killed run leaves its curves up to the last step it logged.

The CSVs are ours, not DVCLive's per-metric TSV files: `dvc plots diff` compares them with
every earlier commit, the diagnosis and the report read them, and a resumed run rewrites them
from its checkpoint's log (DVC deletes a stage's outputs before it runs it again), which
DVCLive's append-only files cannot do. DVCLive writes the summary (`metrics/live/metrics.json`,
the latest values and the true global step), tells VS Code a step completed and posts to
Studio where a token is configured (`dvc studio login`); without a token nothing leaves the
machine.
"""

import logging
import subprocess

from dvclive import Live
from transformers import TrainerCallback

from finetune.core.metrics import LOSS
from finetune.core.paths import EVALUATION_HISTORY_FILE, LIVE_DIR, TRAIN_HISTORY_FILE
from finetune.training.history import (
    TRAIN_HISTORY_COLUMNS,
    evaluation_history_columns,
    history_rows,
    write_history,
)
from finetune.training.system import MachineMonitor

# DVCLive announces the experiment it logs to at INFO; the stage prints its own progress.
logging.getLogger("dvclive").setLevel(logging.WARNING)


def completes_evaluation(logs, task):
    """Whether this log entry is an evaluation's last set: Trainer logs each set separately."""
    return f"eval_{task.evaluation_sets[-1]}_loss" in logs


def evaluation_scores(state, task):
    """{(set, metric): value} of the evaluation Trainer logged, set by set, at this step."""
    return {(name, metric): entry[f"eval_{name}_{metric}"]
            for entry in state.log_history if entry.get("step") == state.global_step
            for name in task.evaluation_sets for metric in (LOSS, *task.metrics)
            if f"eval_{name}_{metric}" in entry}


class UncommittedSafeLive(Live):
    """DVCLive's `Live`, also in a Git repository that has no commit yet (`git init`, then
    `dvc repro`). There, DVCLive 3.49's private `Live._init_dvc` reads HEAD before it checks for
    a commit and raises `SCMError: Empty git repo`, which ended the train stage (seen in the
    smoke run); no argument or environment variable of `Live` skips that method (DVCLIVE_TEST
    also moves its files to a temporary folder). With no commit there is no experiment to
    attach to, so it is skipped there; tests/test_framework_internals.py fails once DVCLive
    handles this itself."""

    def _init_dvc(self):
        head = subprocess.run(["git", "rev-parse", "--is-inside-work-tree", "--verify", "-q", "HEAD"],
                              capture_output=True, text=True)
        if not (head.stdout.startswith("true") and head.returncode != 0):
            super()._init_dvc()


class LiveHistory(TrainerCallback):
    """Keeps metrics/history/*.csv and DVCLive's summary up to date at every logged step.

    Each CSV is rewritten whole and atomically from Trainer's log (a few hundred rows at most),
    so a reader never sees half a row, and a resumed run, whose log Trainer restores from the
    checkpoint before training begins, continues the curves with no step lost or repeated.
    """

    def __init__(self, task, resuming):
        self.task, self.resuming = task, resuming
        self.evaluation_columns = evaluation_history_columns(task)
        self.live = self.machine = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._write_train_history(state)
        self._write_evaluation_history(state)
        # dvcyaml=None: dvc.yaml stays hand-written; no save_dvc_exp: the stage runs under
        # `dvc repro` or `dvc exp run`, which record the experiment themselves.
        self.live = UncommittedSafeLive(dir=str(LIVE_DIR), resume=self.resuming, dvcyaml=None, save_dvc_exp=False)
        self.machine = MachineMonitor(UncommittedSafeLive, self.resuming)  # CPU, memory, disk, GPU

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            self._write_train_history(state)
            values = {f"train/{column}": logs[key] for key, column in
                      (("loss", "loss"), ("learning_rate", "learning_rate"), ("grad_norm", "grad_norm")) if key in logs}
        elif completes_evaluation(logs, self.task):
            self._write_evaluation_history(state)
            values = {f"{name}/{metric}": value for (name, metric), value in evaluation_scores(state, self.task).items()}
        else:
            return
        self.live.step = state.global_step  # the true step, not a count of calls
        self.machine.step(state.global_step)
        for name, value in values.items():
            self.live.log_metric(name, value, plot=False)
        self.live.next_step()  # writes the summary, signals VS Code, posts to Studio if configured

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.step = state.global_step
            self.live.end()
            self.machine.end(args.world_size)

    def _write_train_history(self, state):
        write_history(TRAIN_HISTORY_FILE, history_rows(state.log_history, TRAIN_HISTORY_COLUMNS), TRAIN_HISTORY_COLUMNS)

    def _write_evaluation_history(self, state):
        rows = history_rows(state.log_history, self.evaluation_columns)
        if rows and None in rows[-1].values():
            rows = rows[:-1]  # an evaluation still scoring its other sets
        write_history(EVALUATION_HISTORY_FILE, rows, self.evaluation_columns)
