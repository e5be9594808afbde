"""A search killed at any moment goes on where it stopped, and takes its running experiment with
it; workers share one study, its budget and its remotes without running a trial twice; a failed
trial is re-queued once, whoever looks, and a bounded number of times."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback

from tests.repos import copy_repository, runner, study_storage
from tests.workers import start_search, three_workers_with_one_killed

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def test_three_workers_with_a_budget_of_four_finish_four_after_one_is_killed_and_share_their_remotes(
        tuning_repository, reproduced_repository, tmp_path):
    root, _ = tuning_repository
    env = reproduced_repository.env
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    clones = []
    for name in ("worker-a", "worker-b", "worker-c"):  # side by side: they share the default DVC remote beside them
        clone = copy_repository(root, tmp_path / name)
        runner(clone, env)("git", "remote", "add", "origin", str(origin))
        clones.append(clone)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    # Killed outright with its process group, as a lost machine would be: its trial's heartbeat
    # goes silent and a worker re-queues it; its dvc exp run ends all the same.
    study, killed, outputs = three_workers_with_one_killed(clones, env, storage,
                                                           lambda worker: os.killpg(worker.pid, signal.SIGKILL),
                                                           "--push", "origin")
    assert sum(output.count(f"search: trial {killed.number} went silent (its process died): its params run again")
               for output in outputs) == 1
    # Every finished trial reached the shared Git remote (its outputs, DVC's), the killed one not.
    pushed = subprocess.run(["git", "ls-remote", str(origin), "refs/exps/*"], capture_output=True, text=True).stdout
    assert sorted(line.rpartition("/")[2] for line in pushed.splitlines()) == sorted(
        f"budget-{trial.number}" for trial in study.trials if trial.state.name == "COMPLETE")


def test_a_failed_trial_is_requeued_once_when_two_workers_start_together(tuning_repository, reproduced_repository):
    root, run = tuning_repository
    storage = study_storage(root)
    (root / "tuning").mkdir(exist_ok=True)  # where the search puts its default storage
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
