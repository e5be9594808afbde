"""The train and evaluate stages on two processes (`accelerate launch`, CPU, gloo) against one."""

import json
import socket
import sys

import pytest

from finetune.core.outputs import read_csv
from tests.conftest import SPLIT_ROWS, run_stage_process, write_params

# Two processes and one differ only in the order of floating-point sums (README, "Several
# processes"): every logged and reported number agrees to this, predictions exactly.
TOLERANCE = 1e-4

pytestmark = pytest.mark.slow


def accelerate_launch(processes):
    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # --multi_gpu picks the launcher that starts several processes; on a machine without a
    # GPU the stages then train on the CPU with the gloo backend.
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port)]


def run_stage_with(launcher, stage, project_dir, glue_dir):
    # One thread per process: two processes share this machine's cores.
    return run_stage_process(stage, project_dir, {"GLUE_DIR": str(glue_dir), "OMP_NUM_THREADS": "1"}, launcher)


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


def test_two_processes_train_and_evaluate_as_one(tmp_path, tiny_params, glue_parquet_dir):
    # eval_batch_size 3 splits 16 examples into 6 batches, the last of 1: with two processes
    # Accelerate pads that round with repeated examples, which must not be counted twice.
    # No dropout: each process draws its own masks.
    params = {**tiny_params, "dropout": 0.0, "eval_batch_size": 3, "group_by_length": False}
    one = tmp_path / "one"
    two = tmp_path / "two"
    run_pipeline(one, params, glue_parquet_dir, [sys.executable])
    logs = run_pipeline(two, params, glue_parquet_dir, accelerate_launch(2))

    # Only the main process reports and writes: the same files as one process, each once.
    assert logs["train"].count("train: 12 steps") == 1
    assert logs["evaluate"].count("-> metrics/evaluation.json") == 1
    assert logs["evaluate"].count("evaluate: validation: 16 rows predicted") == 1
    written = {run: sorted(str(path.relative_to(run)) for folder in ("metrics", "trained_model")
                           for path in (run / folder).rglob("*")) for run in (one, two)}
    assert written[two] == written[one]

    train_metrics = {run: json.loads((run / "metrics" / "train.json").read_text()) for run in (one, two)}
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
    project_dir = tokenized_project(tmp_path / "odd", {**tiny_params, "train_batch_size": 7}, glue_parquet_dir)
    result = run_stage_with(accelerate_launch(2), "train", project_dir, glue_parquet_dir)
    assert result.returncode != 0
    assert ("error: train_batch_size: 7 pairs per step do not split evenly over 2 processes; "
            "use a multiple of 2") in result.stderr
    assert not (project_dir / "trained_model").exists() and not (project_dir / "metrics").exists()
