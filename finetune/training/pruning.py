"""A search trial inside the train stage: report to its Optuna study, stop when it is pruned.

`finetune search` runs each trial of a study as a DVC experiment with the param `trial:
<study>/<number>`. Its train stage reports the validation metric the study optimises (the one
`best_model_metric` names) at every evaluation, at the number of training examples seen so far,
and stops training when the study's pruner says so; metrics/train.json then says `trial_state:
pruned`. Examples, not steps: the pruner compares trials where they have seen as much data, and
a step of batch 64 is four of batch 16 (reported by the step, a search over the batch size
pruned its small batches early: one with the params of the study's second best trial, at step 100). The storage's URL
comes from the environment (FINETUNE_STUDY_STORAGE, which `finetune search` sets), like GLUE_DIR:
it is machine-specific and may hold a database password, so it belongs to no param. The pruner
is the study's own, saved in the storage with the study (`PRUNER_ATTRIBUTE`), so that every
trial of a study, on any machine, prunes by the same rule.
"""

import os
import time

from transformers import TrainerCallback

from finetune.core.errors import PipelineError
from finetune.core.params import TRIAL
from finetune.training.resume import main_process_value

STORAGE_VARIABLE = "FINETUNE_STUDY_STORAGE"
PRUNER_ATTRIBUTE = "pruner"
# SQLite serialises writers: the search's heartbeats and a trial's reports wait for each other.
SQLITE_TIMEOUT_SECONDS = 60
SCHEMA_ATTEMPTS = 5


def open_storage(url, **heartbeat):
    """Optuna's storage at `url` (sqlite:///file or a database server's URL); `heartbeat`: the
    RDBStorage keywords that let a restarted search fail and retry trials whose process died."""
    import optuna
    import sqlalchemy.exc

    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}} if url.startswith("sqlite") else {}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            # Workers started together race to create a new storage's tables and its schema version
            # row: one wins, the others find them made on their next attempt (seen with two
            # workers on one SQLite file: "table ... already exists", "UNIQUE constraint failed").
            racing = isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)
            if racing and attempt + 1 < SCHEMA_ATTEMPTS:
                time.sleep(1)
                continue
            reason = " ".join(str(error).split())[:200]
            raise PipelineError(f"study storage {_without_password(url)} is unreachable ({reason})") from None


def make_pruner(settings):
    """The pruner of `settings`, as the study saved them: {"name": "median", "n_startup_trials":
    ..., "n_warmup_steps": ...} or {"name": "none"}; the warm-up counts training examples, as the
    reports do."""
    import optuna

    if settings["name"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings["n_startup_trials"],
                                       n_warmup_steps=settings["n_warmup_steps"])


class TrialReporter(TrainerCallback):
    """Reports each evaluation's `split`_`metric` to the trial and stops training once it is pruned.

    Under `accelerate launch` the main process reports and asks the pruner, and every process
    stops with it."""

    def __init__(self, trial_param, split, metric, examples_per_step, main_process):
        self.key = f"eval_{split}_{metric}"
        self.examples_per_step = examples_per_step
        self.pruned_at_step = None
        self.trial = _trial(trial_param) if main_process else None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # Trainer calls this once per evaluation set; the study's metric is one set's.
        if self.key not in (metrics or {}):
            return
        pruned = False
        if self.trial is not None:
            self.trial.report(metrics[self.key], state.global_step * self.examples_per_step)
            pruned = self.trial.should_prune()
        if main_process_value(pruned):
            self.pruned_at_step = state.global_step
            control.should_training_stop = True


def _trial(trial_param):
    """The Optuna trial `trial_param` names, in the storage the environment names."""
    import optuna

    url = os.environ.get(STORAGE_VARIABLE)
    if not url:
        raise PipelineError(f"params.yaml: trial {trial_param!r} reports to its study: set {STORAGE_VARIABLE} "
                            "to the study's storage URL (`finetune search` does)")
    study_name, number = TRIAL.fullmatch(trial_param).group("study", "number")
    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name(study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    except KeyError:
        raise PipelineError(f"params.yaml: trial {trial_param!r}: no such trial in the study storage "
                            f"{_without_password(url)}") from None
    pruner = make_pruner(storage.get_study_user_attrs(study_id)[PRUNER_ATTRIBUTE])
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    # The trial the search created, by its storage id: the one place the project builds a Trial
    # itself (tests/test_framework_internals.py).
    return optuna.trial.Trial(study, trial_id)


def _without_password(url):
    """The URL to show in a message: user, host and database, no password."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    return f"{scheme}{separator}{credentials.partition(':')[0]}{at}{location}" if at else url
