"""While the train stage runs, DVC already shows it: `dvc exp show` a running experiment's step
and latest train loss, `dvc plots show` the loss points logged so far."""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.repos import make_git_project

pytestmark = pytest.mark.slow

# Hundreds of steps of the tiny model: long enough to look at it while it trains.
LONG_RUN = {"epochs": 100, "eval_steps": 20, "logging_steps": 5}


def start(root, env, *command):
    # Its own process group, so that the test can stop dvc and the stage it runs.
    return subprocess.Popen(command, cwd=root, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def poll(root, env, command, found, process, timeout=300):
    """Run `command` every second until `found(its JSON output)` returns something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} ended before {command} showed it running"
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        if result.returncode == 0 and (value := found(json.loads(result.stdout))):
            return value
        time.sleep(1)
    raise AssertionError(f"{command} never showed the running stage within {timeout}s")


def running_live_metrics(rows):
    """The live summary of a running experiment in `dvc exp show --json`, once it has a step."""
    for row in rows:
        for experiment in row.get("experiments") or []:
            if (experiment.get("executor") or {}).get("state") != "running":
                continue
            live = experiment["revs"][0]["data"]["metrics"].get("metrics/live/metrics.json", {}).get("data")
            if live and live.get("step", 0) > 0:
                return live
    return None


def test_exp_show_reports_a_running_experiment_with_its_step_and_train_loss(tmp_path, tiny_params, glue_parquet_dir):
    root = tmp_path / "project"
    env = make_git_project(root, {**tiny_params, **LONG_RUN}, glue_parquet_dir)
    process = start(root, env, "dvc", "exp", "run", "--temp", "-n", "watched")
    try:
        live = poll(root, env, ["dvc", "exp", "show", "--json"], running_live_metrics, process)
    finally:
        stop(process)
    assert live["step"] % LONG_RUN["logging_steps"] == 0  # the true global step, not a count of calls
    assert 0 < live["train"]["loss"] < 10 and live["train"]["learning_rate"] > 0
    # Framework arguments stay out of the table: the params are params.yaml's only.
    rows = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, env=env, capture_output=True,
                                     text=True, check=True).stdout)
    assert set(rows[1]["data"]["params"]) == {"params.yaml"}


def loss_points(plots):
    points = [point for plot in plots["data"].get("loss", []) for point in plot["content"]["data"]["values"]]
    return points or None


def test_plots_show_draws_the_loss_before_the_train_stage_ends(tmp_path, tiny_params, glue_parquet_dir):
    root = tmp_path / "project"
    env = make_git_project(root, {**tiny_params, **LONG_RUN}, glue_parquet_dir)
    process = start(root, env, "dvc", "repro")
    try:
        points = poll(root, env, ["dvc", "plots", "show", "--json"], loss_points, process)
        still_training = not (root / "metrics" / "train.json").exists()
    finally:
        stop(process)
    assert still_training
    train_loss = [point for point in points if point["filename::field"] == "train.csv::train_loss"]
    assert train_loss and int(train_loss[0]["step"]) == LONG_RUN["logging_steps"]
    assert all(0 < float(point["train_loss"]) < 10 for point in train_loss)
