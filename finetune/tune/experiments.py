"""DVC experiments for the commands that run many (search, remedies, pick): run one, read what it
recorded, push it.

Each run is `dvc exp run --temp -n NAME -S key=value ...` from a private Git worktree of the
repository at HEAD (in .dvc/tmp/, sharing the DVC cache): DVC records the experiment under NAME
(params, metrics, plots; outputs in the cache), which `dvc exp show` in your workspace lists and
`dvc exp push` shares. Not from your workspace itself: to set `-S` params DVC detaches HEAD and
rewrites params.yaml in the work tree for a moment, and a command killed in that moment left a
repository with a detached HEAD and a trial's params (seen in the kill test). A private worktree
left so is reset before its next run; one per experiment starting at once.
"""

import contextlib
import csv
import dataclasses
import fcntl
import functools
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.params import read_yaml
from finetune.core.paths import (
    DIAGNOSIS_FILE,
    EVALUATION_METRICS_FILE,
    PARAMS_FILE,
    TRAIN_METRICS_FILE,
    predictions_file,
)


class ExperimentError(Exception):
    """A run that ended with an error; its message is the line that says why."""


WORKSPACE = "workspace"


@dataclasses.dataclass(frozen=True)
class Run:
    """A recorded run: an experiment (`name`), a commit's own run (`name` None) or the
    workspace's (`rev` WORKSPACE); `rev` is the Git revision that holds its files."""
    name: str | None
    rev: str

    @property
    def label(self):
        return self.name or ("the workspace" if self.rev == WORKSPACE else f"commit {self.rev[:7]}")

    def text(self, path):
        """A file of the run as Git (or the workspace) holds it, or None."""
        if self.rev == WORKSPACE:
            return Path(path).read_text() if Path(path).is_file() else None
        result = _git("show", f"{self.rev}:{path}", check=False)
        return result.stdout if result.returncode == 0 else None

    def json(self, path):
        text = self.text(path)
        return json.loads(text) if text is not None else None

    # Read once per run: a recorded run does not change (the workspace's is read for one command).
    @functools.cached_property
    def params(self):
        return read_yaml(self.text(PARAMS_FILE))

    @functools.cached_property
    def evaluation(self):
        return self.json(EVALUATION_METRICS_FILE) or {}

    @functools.cached_property
    def training(self):
        return self.json(TRAIN_METRICS_FILE) or {}

    @functools.cached_property
    def diagnosis(self):
        return self.json(DIAGNOSIS_FILE) or {}

    def predictions(self, split):
        """The rows of metrics/predictions/<split>.csv, or None."""
        text = self.text(predictions_file(split))
        return list(csv.DictReader(io.StringIO(text))) if text is not None else None


def head():
    return _git("rev-parse", "HEAD").stdout.strip()


def experiment(name, baseline=None):
    """The experiment `name` of `baseline` (default: HEAD), or None."""
    baseline = baseline or head()
    result = _git("rev-parse", "--verify", "-q", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", check=False)
    return Run(name, result.stdout.strip()) if result.returncode == 0 else None


def experiments(baseline=None):
    """Every experiment of `baseline` (default: HEAD), by name."""
    baseline = baseline or head()
    listed = _git("for-each-ref", "--format=%(refname) %(objectname)", f"refs/exps/{baseline[:2]}/{baseline[2:]}/")
    return {ref.rpartition("/")[2]: Run(ref.rpartition("/")[2], rev)
            for ref, rev in (line.split() for line in listed.stdout.splitlines())}


WORKTREES = Path(".dvc/tmp/finetune-worktrees")
STARTING = "starting.lock"


@contextlib.contextmanager
def private_worktree(baseline):
    """A Git worktree of this repository at commit `baseline`, clean, for one experiment at a time:
    the first free one under WORKTREES (a file lock marks it taken; a killed process frees it)."""
    root = Path(_git("rev-parse", "--show-toplevel").stdout.strip())
    folder = root / WORKTREES
    folder.mkdir(parents=True, exist_ok=True)
    for index in itertools.count():
        lock = open(folder / f"{index}.lock", "w")  # noqa: SIM115 - held until the experiment ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        break
    worktree = folder / str(index)
    try:
        if (worktree / ".git").is_file() and not _same_repository(worktree, root):
            shutil.rmtree(worktree)  # another repository's, copied along with this one's files
        if (worktree / ".git").is_file():
            _git("-C", str(worktree), "checkout", "-q", "--detach", "--force", baseline)
            _git("-C", str(worktree), "clean", "-qfd")
        else:
            _git("worktree", "prune")
            _git("worktree", "add", "-q", "--detach", "--force", str(worktree), baseline)
            # Your DVC settings (remote credentials included), and your cache: what it runs is in yours.
            local = root / ".dvc" / "config.local"
            (worktree / ".dvc" / "config.local").write_text(local.read_text() if local.is_file() else "")
            cache = subprocess.run(["dvc", "cache", "dir"], cwd=root, check=True, capture_output=True, text=True)
            subprocess.run(["dvc", "config", "--local", "cache.dir", cache.stdout.strip()], cwd=worktree, check=True,
                           capture_output=True)
        yield worktree
    finally:
        lock.close()


def _same_repository(worktree, root):
    common = [subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=folder,
                             capture_output=True, text=True).stdout.strip() for folder in (worktree, root)]
    return common[0] == common[1]


def run_experiment(name, changes, log_path, env_changes=None, baseline=None):
    """Run the pipeline as experiment `name` of commit `baseline` (default: HEAD) with `changes`
    ({param: value}) to its params; its output goes to `log_path`. Returns the Run, or raises
    ExperimentError.

    `dvc exp run --temp` in a private worktree: DVC stashes the experiment's params on shared Git
    refs, then runs it in a temporary repository of its own. It serialises the stashing with a
    lock of the worktree it runs in; experiments of several worktrees of one repository take
    STARTING too, until DVC says it reproduces the experiment (then it runs on its own). The run
    ends with this process (finetune/tune/guard.py), and with `stop_running_experiments`."""
    baseline = baseline or head()
    command = ["dvc", "exp", "run", "--temp", "-n", name]
    for key, value in changes.items():
        command += ["-S", f"{key}={_yaml_value(value)}"]
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, private_worktree(baseline) as worktree:  # line by line: tail -f it
        log.write(f"$ {' '.join(command)}  (in {worktree})\n")
        with open(worktree.parent / STARTING, "w") as starting:
            fcntl.flock(starting, fcntl.LOCK_EX)
            process = _start_guarded(command, worktree, env_changes)
            try:
                for line in process.stdout:
                    log.write(line)
                    if line.startswith("Reproducing experiment"):
                        break
                fcntl.flock(starting, fcntl.LOCK_UN)
                for line in process.stdout:
                    log.write(line)
                result = process.wait()
            finally:
                _end(process)
    if result != 0:
        raise ExperimentError(_error_line(log_path.read_text()) or f"dvc exp run exited with {result}")
    run = experiment(name, baseline)
    if run is None:
        raise ExperimentError(f"dvc exp run recorded no experiment {name!r} (see {log_path})")
    return run


_RUNNING = set()
_RUNNING_LOCK = threading.Lock()


def _start_guarded(command, cwd, env_changes):
    """`command` under finetune/tune/guard.py, in a session of its own, registered as running."""
    guarded = [sys.executable, "-m", "finetune.tune.guard", "--", *command]
    process = subprocess.Popen(guarded, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env_changes or {})}, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    return process


def _end(process):
    """Ends a run that is still going (its caller was interrupted): the guard ends dvc and its stage."""
    with _RUNNING_LOCK:
        _RUNNING.discard(process)
    if process.poll() is None:
        process.terminate()
        process.wait()  # the guard's own grace: SIGTERM to dvc and its stage, SIGKILL after 10 s


def stop_running_experiments():
    """Ends every run this process started that is still going (on ^C or a kill of the command)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        if process.poll() is None:
            process.terminate()


def uncommitted_changes():
    """Tracked files the workspace changed since HEAD: experiments start from HEAD without them."""
    return [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").stdout.splitlines()]


def run_experiments(planned, jobs, log_dir):
    """Run {name: changes} as experiments, `jobs` at once; an experiment of that name already
    recorded with those params is reused, not run again (a command run twice goes on where it
    stopped). Returns {name: Run}; raises PipelineError naming the first that failed."""
    import concurrent.futures

    runs, pending = {}, {}
    for name, changes in planned.items():
        recorded = experiment(name)
        if recorded is None:
            pending[name] = changes
            continue
        different = {key: value for key, value in changes.items() if recorded.params.get(key) != value}
        if different:
            raise PipelineError(f"experiment {name} exists with other params ({different}): "
                                f"`dvc exp remove {name}` to run it again")
        runs[name] = recorded
    if pending:
        print(f"running {len(pending)} experiment(s), {jobs} at once ({len(runs)} already recorded): "
              + ", ".join(pending))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {name: pool.submit(run_experiment, name, changes, Path(log_dir) / f"{name}.log")
                   for name, changes in pending.items()}
        try:
            for name, future in futures.items():
                try:
                    runs[name] = future.result()
                except ExperimentError as error:
                    raise PipelineError(f"experiment {name} failed: {error} (log: {Path(log_dir) / name}.log)") from None
                print(f"  {name}: done")
        except KeyboardInterrupt:  # ^C reaches this process alone: its runs are in sessions of their own
            for future in futures.values():
                future.cancel()
            stop_running_experiments()
            raise
    return {name: runs[name] for name in planned}


def push_experiment(name, remote):
    """Share experiment `name`: its Git ref to the Git remote, its outputs to the DVC remote."""
    result = subprocess.run(["dvc", "exp", "push", remote, name], capture_output=True, text=True)
    if result.returncode != 0:
        raise ExperimentError(_error_line(result.stdout + result.stderr) or f"dvc exp push {remote} {name} failed")


def _yaml_value(value):
    """A value as `dvc exp run -S` reads it (YAML): JSON writes every scalar and list YAML reads back."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _error_line(output):
    """The line of a run's output that says why it failed: a stage's `error: ...`, else DVC's."""
    lines = [line.strip() for line in output.splitlines()]
    ours = [line for line in lines if line.startswith("error: ")]
    dvc = [line for line in lines if line.startswith("ERROR: ")]
    return (ours or dvc or [None])[-1]


def _git(*arguments, check=True):
    result = subprocess.run(["git", *arguments], capture_output=True, text=True)
    if check and result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise PipelineError(f"git {' '.join(arguments)}: {message}")
    return result


EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
