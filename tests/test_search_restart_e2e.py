"""A search killed at any moment goes on where it stopped, and takes its running experiment with
it; workers share one study, its budget and its remotes without running a trial twice; a failed
trial is re-queued once, whoever looks, and a bounded number of times."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback

from tests.repos import copy_repository, experiments_by_name, runner, study_storage
from tests.workers import group_alive, guarded_runs, start_search, three_workers_with_one_killed, wait_for

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def trials_of(storage, name):
    """The study's trials, none while the search has not made it yet."""
    if not Path(storage.removeprefix("sqlite:///")).is_file():
        return []
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except KeyError:
        return []


def test_a_killed_search_goes_on_where_it_stopped(tuning_repository, reproduced_repository):
    root, run = tuning_repository
    arguments = ["--study", "killed", "--space", "space.yaml", "--trials", "2", "--heartbeat", "1",
                 "--pruner", "none"]
    search = start_search(root, reproduced_repository.env, *arguments)
    deadline = time.monotonic() + 300
    while True:  # until the second trial runs
        assert search.poll() is None and time.monotonic() < deadline
        trials = trials_of(study_storage(root), "killed")
        if len(trials) == 2 and trials[1].state == optuna.trial.TrialState.RUNNING and trials[1].params:
            break
        time.sleep(0.5)
    ((group, _),) = guarded_runs(search.pid).items()
    os.killpg(search.pid, signal.SIGKILL)
    search.wait(timeout=60)
    # Its dvc exp run and the stage it was running end with it (they are in a session of their own).
    wait_for(lambda: not group_alive(group), 30, "end of the killed trial's processes")
    first = experiments_by_name(run)["killed-0"]["rev"]
    killed_params = trials[1].params
    time.sleep(4)  # past the grace period of three missed heartbeats

    output = run(FINETUNE, "search", *arguments)
    assert "1 trials finished, up to 1 trials more" in output
    assert "search: trial 1 went silent (its process died): its params run again" in output
    study = optuna.load_study(study_name="killed", storage=study_storage(root))
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    retry = next(trial for trial in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) == 1)
    assert retry.params == killed_params and retry.state.name == "COMPLETE"  # run again, counted once
    shown = experiments_by_name(run)
    assert shown["killed-0"]["rev"] == first  # a finished trial is not run again
    assert {name for name in shown if name.startswith("killed-")} == {
        f"killed-{trial.number}" for trial in study.trials if trial.state.name == "COMPLETE"}


def test_two_workers_share_one_study_and_its_remotes_without_a_duplicate(tuning_repository, reproduced_repository, tmp_path):
    root, _ = tuning_repository
    env = reproduced_repository.env
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    workers = []
    for name in ("worker-a", "worker-b"):  # side by side: they share the default DVC remote beside them
        clone = copy_repository(root, tmp_path / name)
        runner(clone, env)("git", "remote", "add", "origin", str(origin))
        workers.append(clone)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    arguments = ["--study", "shared", "--space", "space.yaml", "--trials", "2", "--storage", storage,
                 "--push", "origin", "--pruner", "none"]
    processes = [start_search(clone, env, *arguments) for clone in workers]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 2 and len(study.trials) == 2  # the budget is the study's, not each worker's
    # Nor did the two draw the same params (a sampler seeded alike in both would).
    assert len({tuple(sorted(trial.params.items())) for trial in finished}) == len(finished)
    # Each trial ran on one worker only, and reached the shared Git remote (its outputs, DVC's).
    ran_on = {trial.number: [clone.name for clone in workers if f"search: trial {trial.number} (shared-" in
                             outputs[workers.index(clone)]] for trial in finished}
    assert all(len(names) == 1 for names in ran_on.values()), ran_on
    pushed = subprocess.run(["git", "ls-remote", str(origin), "refs/exps/*"], capture_output=True, text=True).stdout
    assert sorted(line.rpartition("/")[2] for line in pushed.splitlines()) == sorted(
        f"shared-{trial.number}" for trial in finished)


def test_three_workers_with_a_budget_of_four_finish_four_and_a_killed_one_ends_its_run(tuning_repository,
                                                                                        reproduced_repository, tmp_path):
    root, run = tuning_repository
    storage = f"sqlite:///{tmp_path / 'budget.db'}"
    study, outputs = three_workers_with_one_killed(root, reproduced_repository.env, storage,
                                                   lambda worker: worker.send_signal(signal.SIGTERM))
    assert "search: interrupted: the running trials were stopped" in outputs[0]
    recorded = {name for name in experiments_by_name(run) if name.startswith("budget-")}
    assert recorded == {f"budget-{trial.number}" for trial in study.trials if trial.state.name == "COMPLETE"}


def test_a_failed_trial_is_requeued_once_when_two_workers_start_together(tuning_repository, reproduced_repository):
    root, run = tuning_repository
    storage = study_storage(root)
    study = optuna.create_study(study_name="requeue", storage=storage, direction="maximize")
    interrupted = study.ask()  # as ^C leaves a trial: failed, without an error of its own
    interrupted.suggest_float("lr", 1.0e-4, 1.0e-2, log=True)
    interrupted.suggest_categorical("train_batch_size", [8, 16])
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    # Uncommitted changes the trials do not run: the search reads the commit's params and space.
    committed = (root / "params.yaml").read_text()
    assert "best_model_metric: auto" in committed
    (root / "params.yaml").write_text(committed.replace("best_model_metric: auto", "best_model_metric: accuracy"))
    (root / "space.yaml").write_text("lr: {low: 1.0, high: 0.5}\n")
    arguments = ["--study", "requeue", "--space", "space.yaml", "--trials", "1", "--pruner", "none",
                 "--push", "nowhere"]
    workers = [start_search(root, reproduced_repository.env, *arguments) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    run("git", "checkout", "params.yaml", "space.yaml")
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert sum(output.count("search: trial 0 was interrupted: its params run again") for output in outputs) == 1
    assert all("search: trials run commit" in output and "validation_f1 (maximize" in output for output in outputs
               if "search: study requeue," in output)
    study = optuna.load_study(study_name="requeue", storage=storage)
    assert [trial.state.name for trial in study.trials] == ["FAIL", "COMPLETE"]
    retry = study.trials[1]
    assert RetryHeartbeatStaleTrialCallback.retry_history(retry) == [0] and retry.params == study.trials[0].params
    # A push that keeps failing is reported; the trial keeps its value.
    assert retry.value is not None and "nowhere" in retry.user_attrs["push_error"]
    assert any("search: trial 1 (requeue-1): dvc exp push nowhere failed 3 times" in output for output in outputs)
