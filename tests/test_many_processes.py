"""The train and evaluate stages on two processes (param `processes: 2`: the stage starts itself under
Accelerate's launcher, CPU, gloo), on two "machines" (two process groups on localhost), and by
hand under `accelerate launch`, against one process."""

import json
import os
import socket
import subprocess
import sys

import pytest

from finetune.core.outputs import read_csv
from tests.conftest import SPLIT_ROWS, run_stage_process, write_params
from tests.repos import PROJECT_ROOT

# Two processes and one differ only in the order of floating-point sums (README, "Several
# processes"): every logged and reported number agrees to this, predictions exactly.
TOLERANCE = 1e-4

pytestmark = pytest.mark.slow


def run_stage_with(launcher, stage, project_dir, glue_dir, env_changes=None):
    # The machine's two cores for the stage: with two processes, one thread each.
    return run_stage_process(stage, project_dir, {"GLUE_DIR": str(glue_dir), "OMP_NUM_THREADS": "2",
                                                  **(env_changes or {})}, launcher)


def tokenized_project(project_dir, params, glue_dir):
    project_dir.mkdir()
    write_params(project_dir, params)
    for stage in ("download", "tokenize"):
        result = run_stage_with([sys.executable], stage, project_dir, glue_dir)
        assert result.returncode == 0, result.stderr[-4000:]
    return project_dir


def run_pipeline(project_dir, params, glue_dir, launcher):
    """download and tokenize in one process, then train and evaluate with `launcher`."""
    tokenized_project(project_dir, params, glue_dir)
    logs = {}
    for stage in ("train", "evaluate"):
        result = run_stage_with(launcher, stage, project_dir, glue_dir)
        assert result.returncode == 0, f"{stage} failed:\n{result.stderr[-4000:]}"
        logs[stage] = result.stdout
    return logs


def numbers(rows):
    return [{key: float(value) for key, value in row.items()} for row in rows]


@pytest.mark.parametrize("group_by_length", [False, True])
def test_two_processes_train_and_evaluate_as_one(tmp_path, tiny_params, glue_parquet_dir, group_by_length):
    # eval_batch_size 3 splits 16 examples into 6 batches, the last of 1: with two processes
    # Accelerate pads that round with repeated examples, which must not be counted twice.
    # No dropout: each process draws its own masks.
    params = {**tiny_params, "dropout": 0.0, "eval_batch_size": 3, "group_by_length": group_by_length}
    one = tmp_path / "one"
    two = tmp_path / "two"
    run_pipeline(one, params, glue_parquet_dir, [sys.executable])
    logs = run_pipeline(two, {**params, "processes": 2}, glue_parquet_dir, [sys.executable])
    assert "train: 2 processes on this machine, 1 threads each" in logs["train"]

    # Only the main process reports and writes: the same files as one process, each once.
    assert logs["train"].count("train: 12 steps") == 1
    assert logs["evaluate"].count("-> metrics/evaluation.json") == 1
    assert logs["evaluate"].count("evaluate: validation: 16 rows predicted") == 1
    written = {run: sorted(str(path.relative_to(run)) for folder in ("metrics", "trained_model")
                           for path in (run / folder).rglob("*")) for run in (one, two)}
    assert written[two] == written[one]
    assert_same_run(one, two)


def assert_same_run(one, two):
    """The runs in folders `one` and `two` logged and reported the same numbers within TOLERANCE, and
    made the same predictions."""
    train_metrics = {run: json.loads((run / "metrics" / "train.json").read_text()) for run in (one, two)}
    assert train_metrics[two].pop("processes_used") == 2 and train_metrics[one].pop("processes_used") == 1
    assert train_metrics[two] == pytest.approx(train_metrics[one], abs=TOLERANCE)
    for history in ("train.csv", "evaluations.csv"):
        rows = {run: numbers(read_csv(run / "metrics" / "history" / history)) for run in (one, two)}
        assert len(rows[two]) == len(rows[one])
        for row_two, row_one in zip(rows[two], rows[one], strict=True):
            assert row_two == pytest.approx(row_one, abs=TOLERANCE), history

    evaluation = {run: json.loads((run / "metrics" / "evaluation.json").read_text()) for run in (one, two)}
    assert evaluation[two] == pytest.approx(evaluation[one], abs=TOLERANCE)
    for split in ("validation", "test"):
        predictions = {run: read_csv(run / "metrics" / "predictions" / f"{split}.csv") for run in (one, two)}
        # Every example exactly once, in idx order.
        assert [int(row["idx"]) for row in predictions[two]] == list(range(SPLIT_ROWS[split]))
        assert [row["prediction"] for row in predictions[two]] == [row["prediction"] for row in predictions[one]]
        probabilities = {run: [float(row["probability_equivalent"]) for row in rows] for run, rows in predictions.items()}
        assert probabilities[two] == pytest.approx(probabilities[one], abs=TOLERANCE)


def test_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, tiny_params, glue_parquet_dir):
    project_dir = tokenized_project(tmp_path / "odd", {**tiny_params, "train_batch_size": 7, "processes": 2},
                                    glue_parquet_dir)
    result = run_stage_with([sys.executable], "train", project_dir, glue_parquet_dir)
    assert result.returncode != 0
    assert ("error: train_batch_size: 7 pairs per step do not split evenly over 2 processes; "
            "use a multiple of 2") in result.stderr
    assert not (project_dir / "trained_model").exists() and not (project_dir / "metrics").exists()


def test_two_machines_of_one_process_train_as_one(tmp_path, tiny_params, glue_parquet_dir):
    # Two project folders stand for two machines, each with its copy of the data, rank 0 writing.
    params = {**tiny_params, "dropout": 0.0, "eval_batch_size": 3, "group_by_length": False, "processes": 1}
    one = tmp_path / "one"
    run_pipeline(one, params, glue_parquet_dir, [sys.executable])
    machines = [tokenized_project(tmp_path / f"machine{rank}", params, glue_parquet_dir) for rank in (0, 1)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = [subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=folder, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "GLUE_DIR": str(glue_parquet_dir),
                                     "OMP_NUM_THREADS": "1", "FINETUNE_MACHINES": "2", "FINETUNE_MACHINE_RANK": str(rank),
                                     "FINETUNE_MAIN_ADDRESS": f"127.0.0.1:{port}"})
               for rank, folder in enumerate(machines)]
    logs = [process.communicate(timeout=600)[0] for process in started]
    assert [process.returncode for process in started] == [0, 0], logs
    assert "train: 1 processes on this machine (machine 0 of 2)" in logs[0] and "train: 12 steps" in logs[0]
    assert "train: 12 steps" not in logs[1] and not (machines[1] / "trained_model").exists()
    train_metrics = {run: json.loads((run / "metrics" / "train.json").read_text()) for run in (one, machines[0])}
    assert train_metrics[machines[0]].pop("processes_used") == 2 and train_metrics[one].pop("processes_used") == 1
    assert train_metrics[machines[0]] == pytest.approx(train_metrics[one], abs=TOLERANCE)


def test_a_machine_count_without_its_rank_stops_with_one_line(tmp_path, tiny_params, glue_parquet_dir):
    project_dir = tokenized_project(tmp_path / "lost", tiny_params, glue_parquet_dir)
    result = run_stage_with([sys.executable], "train", project_dir, glue_parquet_dir, {"FINETUNE_MACHINES": "2"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("error: FINETUNE_MACHINE_RANK must be set to this machine's rank "
                                                      "in [0, 2) when FINETUNE_MACHINES=2")
