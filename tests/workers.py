"""Search workers as a user starts them, and what a test sees of their processes: the `dvc exp
run`s each started, whether a killed one's processes are gone, a study's budget over three."""

import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def start_search(root, env, *arguments):
    return subprocess.Popen([FINETUNE, "search", *arguments], cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def guarded_runs(parent_pid):
    """{process group: experiment name} of the `dvc exp run`s that process `parent_pid` started
    (each under finetune/tune/guard.py, the leader of its own process group)."""
    runs = {}
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().decode().split("\0")
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == parent_pid and "finetune.tune.guard" in arguments:
            runs[int(entry.name)] = arguments[arguments.index("-n") + 1]
    return runs


def group_alive(group):
    """Whether any process of process group `group` is still running (the guard, dvc, a stage)."""
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.3)
    return found


def three_workers_with_one_killed(roots, env, storage, kill, *more_arguments):
    """Three workers of one study with a budget of four, one in each of `roots` (folders of the
    project, or one folder thrice); the first is killed (`kill(process)`) mid-trial and started
    again. Returns the study, the killed trial and the workers' outputs."""
    arguments = ["--study", "budget", "--space", "space.yaml", "--trials", "4", "--heartbeat", "1",
                 "--pruner", "none", "--storage", storage, *more_arguments]
    workers = [start_search(root, env, *arguments) for root in roots]
    runs = wait_for(lambda: guarded_runs(workers[0].pid), 300, "trial of the first worker")
    ((group, killed_name),) = runs.items()
    time.sleep(2)  # into its pipeline
    kill(workers[0])
    first_output = workers[0].communicate(timeout=120)[0]
    # Its dvc exp run and the stage it ran end with it, before the retry runs the same params.
    wait_for(lambda: not group_alive(group), 30, f"end of {killed_name}'s processes")
    workers[0] = start_search(roots[0], env, *arguments)
    outputs = [first_output, *(worker.communicate(timeout=900)[0] for worker in workers)]
    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    study = optuna.load_study(study_name="budget", storage=storage)
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    (killed,) = [trial for trial in study.trials if trial.user_attrs["experiment"] == killed_name]
    (retry,) = [trial for trial in study.trials if RetryHeartbeatStaleTrialCallback.retry_history(trial)]
    assert len(complete) == 4 and len(study.trials) == 5, [trial.state.name for trial in study.trials]
    assert killed.state.name == "FAIL" and RetryHeartbeatStaleTrialCallback.retry_history(retry) == [killed.number]
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    # Each finished trial ran on one worker, once, with params of its own (workers seeded alike would repeat them).
    for trial in complete:
        assert sum(output.count(f"search: trial {trial.number} (budget-{trial.number}):") for output in outputs) == 1
    others = [trial for trial in complete if trial is not retry]
    assert len({tuple(sorted(trial.params.items())) for trial in others}) == len(others)
    return study, killed, outputs
