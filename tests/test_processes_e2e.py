"""`dvc exp run -S processes=2` on a CPU: two gloo processes started by the stages themselves, no other
command; DVC records the run, and it is the one-process run within 1e-4 (no dropout). The machine's
figures the train stage records beside it (DVCLive's system monitor)."""

import json

import pytest

from tests.repos import all_runs, copy_repository, run_metrics, runner

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


def test_exp_run_with_two_processes_is_the_one_process_run(reproduced_repository, tmp_path):
    root = copy_repository(reproduced_repository.root, tmp_path / "project")
    run = runner(root, reproduced_repository.env)
    run("dvc", "exp", "run", "-n", "one-process", "-S", "dropout=0")
    output = run("dvc", "exp", "run", "-n", "two-processes", "-S", "dropout=0", "-S", "processes=2")
    assert "train: 2 processes on this machine" in output and "evaluate: 2 processes on this machine" in output
    assert "Data and pipelines are up to date" in run("dvc", "status")
    runs = {entry["name"]: entry for entry in all_runs(json.loads(run("dvc", "exp", "show", "--json")))
            if entry.get("name")}
    training = {name: run_metrics(runs[name], "metrics/train.json") for name in ("one-process", "two-processes")}
    assert training["two-processes"].pop("processes_used") == 2 and training["one-process"].pop("processes_used") == 1
    assert training["two-processes"] == pytest.approx(training["one-process"], abs=TOLERANCE)
    evaluation = {name: run_metrics(runs[name], "metrics/evaluation.json") for name in training}
    assert evaluation["two-processes"] == pytest.approx(evaluation["one-process"], abs=TOLERANCE)

    # The machine during each run: DVCLive's system monitor's samples, their peaks and means.
    machines = {name: run_metrics(runs[name], "metrics/machine.json") for name in training}
    assert [machines[name]["processes"] for name in training] == [1, 2]
    assert all(machine["peak_process_memory_gb"] > 0.1 and 0 < machine["mean_cpu_percent"] <= 100
               and machine["peak_ram_used_gb"] > 0 for machine in machines.values())
    samples = root / "metrics" / "machine" / "plots" / "metrics" / "system"
    assert (samples / "cpu" / "usage (%).tsv").read_text().startswith("timestamp\tstep\tusage (%)\n")
