"""`finetune search`: an adaptive search over params.yaml with Optuna, every trial a DVC experiment.

Optuna's TPE sampler proposes each trial's params from the study so far; the trial runs as the
DVC experiment `<study>-<number>` (`dvc exp run --temp`, finetune/tune/experiments.py) with the
param `trial: <study>/<number>`, so its train stage reports the validation metric at every
evaluation and stops when the study's pruner says so (finetune/training/pruning.py). The study
lives in Optuna's storage, a SQLite file by default or a database server's URL that workers on
several machines share, each pushing its experiments (`--push origin`): the search scales on
Optuna's storage and DVC's remotes, not on a scheduler of its own.

Every trial runs the commit that was HEAD when the search started, and the search reads that
commit's params.yaml and space file too: an uncommitted change can neither crash the loop nor
make the study optimise a key its trials do not report.

A search can be killed at any moment and started again: finished trials stay finished; a trial
whose process died is run again with its params (Optuna's heartbeat fails it once it is silent for
the grace period), as is one that failed, up to `--retries` times; killing the search ends its
running `dvc exp run`. The budget, `--trials`, is the study's over all its workers
(finetune/tune/study_budget.py).
"""

import dataclasses
import os
import queue
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import optuna

from finetune.core.errors import PipelineError
from finetune.core.metrics import higher_is_better
from finetune.core.params import PARAMS_FILE, parse_params, read_yaml
from finetune.core.tasks import best_model_metric
from finetune.processes import trial_environment
from finetune.training.pruning import PRUNER_ATTRIBUTE, STORAGE_VARIABLE, open_storage
from finetune.tune.compare import task_of
from finetune.tune.experiments import (
    ExperimentError,
    experiment,
    head,
    push_experiment,
    run_experiment,
    stop_running_experiments,
    uncommitted_changes,
)
from finetune.tune.space import parse_space
from finetune.tune.study_budget import RETRIES_ATTRIBUTE, BudgetLock, claim_place, counted_trials

TUNING_DIR = Path("tuning")
DEFAULT_STORAGE = TUNING_DIR / "studies.db"
# What a study keeps about itself, so that every worker and restart runs it alike.
METRIC_ATTRIBUTE, SPACE_ATTRIBUTE = "metric", "space"
PUSH_ATTEMPTS, PUSH_PAUSE_SECONDS = 3, 2
WAIT_SECONDS, STOP_SECONDS = 0.2, 60  # polling the workers; the most a stop waits for them
ATTRIBUTES_SECONDS = 30  # the most a worker waits for the study's creator to write what they share

# The heartbeat arguments are experimental in Optuna; this project relies on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search prints a line per trial itself


@dataclasses.dataclass(frozen=True)
class Search:
    study: str
    space_file: Path
    trials: int | None  # trials the study should count (finished or failed for good), all workers together
    timeout: float | None  # seconds after which this worker starts no new trial
    storage: str
    jobs: int = 1
    pruner: dict = dataclasses.field(default_factory=lambda: {"name": "median", "n_startup_trials": 3,
                                                              "n_warmup_steps": 0})
    push: str | None = None
    seed: int | None = None  # the sampler's, offset by the study's trials so far; None: fresh entropy
    heartbeat: int = 10  # seconds between a running trial's heartbeats; silent for 3x this: retried
    retries: int = 2  # times a failed trial runs again with its params (a new study keeps this)


class _Interrupted(KeyboardInterrupt):
    """A trial stopped because the search was (^C or a kill): Optuna fails it and lets this pass,
    as it does ^C, and the next claim of the study re-queues it."""


def default_storage_url():
    DEFAULT_STORAGE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_STORAGE.resolve()}"


def run_search(search):
    """Run trials until the study counts `search.trials` or `search.timeout` passes."""
    commit = head()
    params = parse_params(read_yaml(_committed(commit, PARAMS_FILE)), source=f"{PARAMS_FILE} of {commit[:7]}")
    space = parse_space(_committed(commit, search.space_file), search.space_file, params)
    task = task_of(dataclasses.asdict(params))
    metric = best_model_metric(params, task)
    key = f"{task.validation_splits[0]}_{metric}"
    storage = open_storage(search.storage, heartbeat_interval=search.heartbeat, grace_period=3 * search.heartbeat)
    study = _study(search, storage, key, higher_is_better(metric), space)
    changed = uncommitted_changes()
    if changed:
        print(f"search: trials run commit {commit[:7]}, without your workspace's uncommitted changes "
              f"({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
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
    objective = _Objective(search, space, key, _devices(search.jobs), commit)
    deadline = None if search.timeout is None else time.monotonic() + search.timeout
    _run_workers(study, objective, search, deadline)
    return study


def _committed(commit, path):
    """The text of `path` in `commit`, which the trials run."""
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    result = subprocess.run(["git", "show", f"{commit}:./{relative}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"{path} is not in commit {commit[:7]}, which the trials run: commit it first")
    return result.stdout


def _settled_attributes(study, timeout=ATTRIBUTES_SECONDS):
    """The study's user attributes, once the worker that created it has written all it shares: it
    writes them one at a time, and a worker started with it once read the metric without the space
    (KeyError: 'space', seen in CI with three workers starting together)."""
    shared = {METRIC_ATTRIBUTE, SPACE_ATTRIBUTE, PRUNER_ATTRIBUTE}
    deadline = time.monotonic() + timeout
    attributes = study.user_attrs
    while attributes and not shared <= set(attributes) and time.monotonic() < deadline:
        time.sleep(WAIT_SECONDS)
        attributes = study.user_attrs
    return attributes


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
    attributes = _settled_attributes(study)
    if not attributes:  # a new study: what every worker and restart must share
        study.set_user_attr(METRIC_ATTRIBUTE, key)
        study.set_user_attr(SPACE_ATTRIBUTE, described)
        study.set_user_attr(PRUNER_ATTRIBUTE, search.pruner)
        study.set_user_attr(RETRIES_ATTRIBUTE, search.retries)
    elif attributes[METRIC_ATTRIBUTE] != key:
        raise PipelineError(f"study {search.study} optimises {attributes[METRIC_ATTRIBUTE]}, not {key}: "
                            "name another --study")
    elif attributes[SPACE_ATTRIBUTE] != described:
        raise PipelineError(f"study {search.study} searches another space than {search.space_file} "
                            f"({attributes[SPACE_ATTRIBUTE]}): name another --study")
    elif RETRIES_ATTRIBUTE not in attributes:  # a study made before retries were bounded
        study.set_user_attr(RETRIES_ATTRIBUTE, search.retries)
    return study


def _run_workers(study, objective, search, deadline):
    """`search.jobs` worker threads, each starting trials while the budget and the deadline allow.
    ^C, SIGTERM or SIGHUP end the running experiments and mark their trials interrupted."""
    errors = []
    workers = [threading.Thread(target=_work, args=(study, objective, search, deadline, errors), daemon=True)
               for _ in range(search.jobs)]
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for worker in workers:
            worker.start()
        # Polled with sleep, not join: a signal that interrupts Thread.join marks a running thread
        # as ended in Python 3.11 (the workaround of bpo-45274), and the search then left before
        # its interrupted trial was marked (seen: a SIGTERM left it RUNNING until its heartbeat
        # went silent).
        while any(worker.is_alive() for worker in workers):
            time.sleep(WAIT_SECONDS)
    except KeyboardInterrupt:
        objective.stopping.set()
        stop_running_experiments()
        ending = time.monotonic() + STOP_SECONDS
        while any(worker.is_alive() for worker in workers) and time.monotonic() < ending:
            time.sleep(WAIT_SECONDS)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if errors:
        raise errors[0]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _work(study, objective, search, deadline, errors):
    lock = BudgetLock(search.storage, search.study)
    try:
        while not objective.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            lock.acquire()
            try:
                if not claim_place(study, search.trials):
                    return
                study.optimize(lambda trial: objective(trial, lock), n_trials=1, catch=(ExperimentError,))
            finally:
                lock.release()
    except _Interrupted:
        return
    except Exception as error:  # shown by the main thread, which stops the others
        errors.append(error)
        objective.stopping.set()


def _devices(jobs):
    """A queue of the GPUs the trials run on, one each (None: on the CPU, each with its share of the
    cores: trial_environment)."""
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
    def __init__(self, search, space, key, devices, commit):
        self.search, self.space, self.key, self.devices, self.commit = search, space, key, devices, commit
        self.stopping = threading.Event()

    def __call__(self, trial, budget_lock):
        budget_lock.release()  # the trial is in the storage: the next worker counts it
        values = {dimension.name: dimension.suggest(trial) for dimension in self.space}
        name = f"{self.search.study}-{trial.number}"
        trial.set_user_attr("experiment", name)
        if trial.user_attrs.get("error"):  # a retry inherits its failed trial's attributes
            trial.set_user_attr("error", "")
        started = time.perf_counter()
        device = self.devices.get() if self.devices is not None else None
        try:
            if experiment(name, self.commit) is not None:
                raise ExperimentError(f"experiment {name} already exists for this commit (a study of that name in "
                                      "another storage?): name another --study")
            env = {STORAGE_VARIABLE: self.search.storage, **trial_environment(device, self.search.jobs)}
            run = run_experiment(name, {**values, "trial": f"{self.search.study}/{trial.number}"},
                                 TUNING_DIR / self.search.study / "logs" / f"{name}.log", env, self.commit)
        except ExperimentError as error:
            if self.stopping.is_set():
                raise _Interrupted from None
            trial.set_user_attr("error", str(error))
            print(f"search: trial {trial.number} ({name}) failed: {error}")
            raise
        finally:
            if device is not None:
                self.devices.put(device)
        if self.search.push:
            self._push(trial, name)
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

    def _push(self, trial, name):
        """Shares the experiment; a push that keeps failing is reported, and the trial keeps its value."""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                push_experiment(name, self.search.push)
                return
            except ExperimentError as error:
                if attempt == PUSH_ATTEMPTS:
                    trial.set_user_attr("push_error", str(error))
                    print(f"search: trial {trial.number} ({name}): dvc exp push {self.search.push} failed {attempt} "
                          f"times ({error}): the trial keeps its result; push it later with `dvc exp push "
                          f"{self.search.push} {name}`")
                    return
                time.sleep(PUSH_PAUSE_SECONDS * attempt)
