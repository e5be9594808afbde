"""`finetune search`: an adaptive search over params.yaml with Optuna, every trial a DVC experiment.

Optuna's TPE sampler proposes each trial's params from the study so far; the trial runs as the
DVC experiment `<study>-<number>` (`dvc exp run --temp`, finetune/tune/experiments.py) with the
param `trial: <study>/<number>`, so its train stage reports the validation metric at every
evaluation and stops when the study's pruner says so (finetune/training/pruning.py). The study
lives in Optuna's storage, a SQLite file by default or a database server's URL that workers on
several machines share, each pushing its experiments (`--push origin`): the search scales on
Optuna's storage and DVC's remotes, not on a scheduler of its own.

A search can be killed at any moment and started again: finished trials stay finished; a trial
whose process died is retried (Optuna's heartbeat marks it failed once it is silent for the
grace period, then runs its params again as a new trial); the budget counts finished trials only.
"""

import dataclasses
import queue
import time
import warnings
from pathlib import Path

import optuna

from finetune.core.errors import PipelineError
from finetune.core.metrics import higher_is_better
from finetune.core.params import load_params
from finetune.core.tasks import best_model_metric
from finetune.training.pruning import PRUNER_ATTRIBUTE, STORAGE_VARIABLE, open_storage
from finetune.tune.compare import task_of
from finetune.tune.experiments import (
    ExperimentError,
    experiment,
    head,
    push_experiment,
    run_experiment,
    uncommitted_changes,
)
from finetune.tune.space import load_space

TUNING_DIR = Path("tuning")
DEFAULT_STORAGE = TUNING_DIR / "studies.db"
# What a study keeps about itself, so that every worker and restart runs it alike.
METRIC_ATTRIBUTE, SPACE_ATTRIBUTE = "metric", "space"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

# The heartbeat arguments are experimental in Optuna; this project relies on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search prints a line per trial itself


@dataclasses.dataclass(frozen=True)
class Search:
    study: str
    space_file: Path
    trials: int | None  # finished trials the study should have, all workers together
    timeout: float | None  # seconds after which this worker starts no new trial
    storage: str
    jobs: int = 1
    pruner: dict = dataclasses.field(default_factory=lambda: {"name": "median", "n_startup_trials": 3,
                                                              "n_warmup_steps": 0})
    push: str | None = None
    seed: int | None = None  # the sampler's, offset by the study's trials so far; None: fresh entropy
    heartbeat: int = 10  # seconds between a running trial's heartbeats; silent for 3x this: retried


def default_storage_url():
    DEFAULT_STORAGE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_STORAGE.resolve()}"


def run_search(search):
    """Run trials until the study has `search.trials` finished ones or `search.timeout` passes."""
    space = load_space(search.space_file)
    params = load_params()
    task = task_of(dataclasses.asdict(params))
    metric = best_model_metric(params, task)
    key = f"{task.validation_splits[0]}_{metric}"
    storage = open_storage(search.storage, heartbeat_interval=search.heartbeat, grace_period=3 * search.heartbeat,
                           heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())
    study = _study(search, storage, key, higher_is_better(metric), space)
    changed = uncommitted_changes()
    if changed:
        print(f"search: trials start from commit {head()[:7]}, without your workspace's uncommitted changes "
              f"({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
    _retry_interrupted(study)
    done = len(counted_trials(study))
    remaining = None if search.trials is None else search.trials - done
    if remaining is not None and remaining <= 0:
        print(f"search: study {search.study} has its {done} finished trials (budget {search.trials}): nothing to run")
        return study
    pruner = study.user_attrs[PRUNER_ATTRIBUTE]
    pruning = (f"pruner median ({pruner['n_startup_trials']} startup trials, {pruner['n_warmup_steps']} warm-up "
               "examples)"
               if pruner["name"] == "median" else "no pruner")
    print(f"search: study {search.study}, {key} ({study.direction.name.lower()}, {pruning}), {done} trials finished, "
          f"{'up to ' + str(remaining) if remaining is not None else 'no limit on'} trials more"
          f"{f', for {search.timeout:.0f} s at most' if search.timeout else ''}, {search.jobs} at once")
    objective = _Objective(search, space, key, _devices(search.jobs))
    callbacks = [_stop_at_budget(search.trials)] if search.trials is not None else []
    study.optimize(objective, n_trials=remaining, timeout=search.timeout, n_jobs=search.jobs,
                   catch=(ExperimentError,), callbacks=callbacks)
    return study


def counted_trials(study):
    """The trials a budget counts: finished (complete or pruned) or failed with an error of their
    own; not those whose process died, which are run again."""
    return [trial for trial in study.get_trials(deepcopy=False)
            if trial.state in FINISHED or (trial.state == optuna.trial.TrialState.FAIL and "error" in trial.user_attrs)]


def _study(search, storage, key, maximise, space):
    described = {dimension.name: dimension.describe() for dimension in space}
    direction = "maximize" if maximise else "minimize"
    trials = len(optuna.create_study(study_name=search.study, storage=storage, load_if_exists=True,
                                     direction=direction).get_trials(deepcopy=False))
    # A seeded sampler draws the same params again when a restart or a second worker starts it
    # afresh (seen: a restarted study's first trial repeated trial 0), while TPE's first trials
    # are random draws. So a seed counts on from the trials the study already has.
    sampler = optuna.samplers.TPESampler(seed=None if search.seed is None else search.seed + trials)
    study = optuna.load_study(study_name=search.study, storage=storage, sampler=sampler)
    attributes = study.user_attrs
    if not attributes:  # a new study: what every worker and restart must share
        study.set_user_attr(METRIC_ATTRIBUTE, key)
        study.set_user_attr(SPACE_ATTRIBUTE, described)
        study.set_user_attr(PRUNER_ATTRIBUTE, search.pruner)
    elif attributes[METRIC_ATTRIBUTE] != key:
        raise PipelineError(f"study {search.study} optimises {attributes[METRIC_ATTRIBUTE]}, not {key}: "
                            "name another --study")
    elif attributes[SPACE_ATTRIBUTE] != described:
        raise PipelineError(f"study {search.study} searches another space than {search.space_file} "
                            f"({attributes[SPACE_ATTRIBUTE]}): name another --study")
    return study


def _retry_interrupted(study):
    """Queue again the params of trials that died with their process: silent past the grace
    period (Optuna's heartbeat retries those itself) or stopped by ^C (failed without an error)."""
    running = {trial.number for trial in study.get_trials(deepcopy=False) if trial.state == optuna.trial.TrialState.RUNNING}
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.number in running and trial.state == optuna.trial.TrialState.FAIL:
            print(f"search: trial {trial.number} went silent (its process died): its params run again")
    retried = {number for trial in trials for number in
               [*trial.system_attrs.get("retry_history", []), trial.user_attrs.get("retry_of")] if number is not None}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.FAIL and "error" not in trial.user_attrs and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            print(f"search: trial {trial.number} was interrupted: its params run again")


def _stop_at_budget(budget):
    def stop(study, trial):
        if len(counted_trials(study)) >= budget:
            study.stop()
    return stop


def _devices(jobs):
    """A queue of the GPUs the trials run on, one each (None: on the CPU, shared)."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        return None
    if jobs > count:
        raise PipelineError(f"--jobs {jobs}: this machine has {count} GPU(s), one per trial at once")
    devices = queue.Queue()
    for index in range(count):
        devices.put(index)
    return devices


class _Objective:
    def __init__(self, search, space, key, devices):
        self.search, self.space, self.key, self.devices = search, space, key, devices

    def __call__(self, trial):
        values = {dimension.name: dimension.suggest(trial) for dimension in self.space}
        name = f"{self.search.study}-{trial.number}"
        trial.set_user_attr("experiment", name)
        started = time.perf_counter()
        device = self.devices.get() if self.devices is not None else None
        try:
            if experiment(name) is not None:
                raise ExperimentError(f"experiment {name} already exists for this commit (a study of that name in "
                                      "another storage?): name another --study")
            env = {STORAGE_VARIABLE: self.search.storage, **({"CUDA_VISIBLE_DEVICES": str(device)}
                                                            if device is not None else {})}
            run = run_experiment(name, {**values, "trial": f"{self.search.study}/{trial.number}"},
                                 TUNING_DIR / self.search.study / "logs" / f"{name}.log", env)
            if self.search.push:
                push_experiment(name, self.search.push)
        except ExperimentError as error:
            trial.set_user_attr("error", str(error))
            print(f"search: trial {trial.number} ({name}) failed: {error}")
            raise
        finally:
            if device is not None:
                self.devices.put(device)
        shown = ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in values.items())
        training = run.training
        seconds = time.perf_counter() - started
        if training.get("trial_state") == "pruned":
            print(f"search: trial {trial.number} ({name}): {shown}: pruned at step {training['trained_steps']} "
                  f"in {seconds:.0f} s")
            raise optuna.TrialPruned(f"pruned at step {training['trained_steps']}")
        value = run.evaluation[self.key]
        print(f"search: trial {trial.number} ({name}): {shown}: {self.key} {value:.4f} in {seconds:.0f} s")
        return value
