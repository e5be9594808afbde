"""A train stage killed mid-run resumes from its last checkpoint on the next `dvc repro`,
and ends with the metrics of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import time

from finetune.outputs import read_csv
from tests.conftest import make_git_project, write_params

# Long enough to be killed mid-run: 120 steps of 6 per epoch, a checkpoint every 25 steps,
# so that every checkpoint falls inside an epoch (the hard case: half an epoch's batches
# are still to come, in the same order as in an uninterrupted run).
LONG_RUN = {"epochs": 20, "eval_steps": 20, "save_steps": 25, "logging_steps": 10}
RESULT_FILES = ["metrics/train.json", "metrics/evaluation.json", "metrics/history/train.csv",
                "metrics/history/evaluations.csv", "metrics/live/metrics.json", "metrics/predictions/validation.csv"]


def make_repo(root, tiny_params, glue_parquet_dir):
    return make_git_project(root, {**tiny_params, **LONG_RUN}, glue_parquet_dir)


def repro(root, env):
    result = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def kill_repro_after_checkpoint(root, env, step, timeout=300):
    """Start `dvc repro`, SIGKILL it and its stage once checkpoint `step` is written in full."""
    # Its own process group, so the signal reaches dvc and the stage it runs, as a killed
    # job's would.
    process = subprocess.Popen(["dvc", "repro"], cwd=root, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = root / "checkpoints" / "train" / f"checkpoint-{step}" / "trainer_state.json"
    deadline = time.monotonic() + timeout
    while not checkpoint.is_file():
        assert process.poll() is None, "dvc repro ended before the checkpoint appeared"
        assert time.monotonic() < deadline, f"no {checkpoint} after {timeout}s"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_params, glue_parquet_dir):
    reference = tmp_path / "uninterrupted"
    repro(reference, make_repo(reference, tiny_params, glue_parquet_dir))

    root = tmp_path / "interrupted"
    env = make_repo(root, tiny_params, glue_parquet_dir)
    kill_repro_after_checkpoint(root, env, step=50)
    assert not (root / "trained_model").exists() and not (root / "metrics" / "train.json").exists()
    # The killed run left its curves up to its last logged step, and its live summary.
    logged = [int(row["step"]) for row in read_csv(root / "metrics" / "history" / "train.csv")]
    assert logged[-1] >= 50 and logged == list(range(10, logged[-1] + 1, 10))
    evaluated = [int(row["step"]) for row in read_csv(root / "metrics" / "history" / "evaluations.csv")]
    assert evaluated[:2] == [20, 40]
    assert json.loads((root / "metrics" / "live" / "metrics.json").read_text())["step"] >= 50

    output = repro(root, env)
    resumed = [line for line in output.splitlines() if line.startswith("train: resuming from ")]
    assert len(resumed) == 1 and int(resumed[0].rpartition("-")[2]) >= 50
    assert not (root / "checkpoints" / "train").exists()  # a finished run leaves no checkpoints
    for name in RESULT_FILES:
        assert (root / name).read_bytes() == (reference / name).read_bytes(), name


def test_checkpoints_of_other_params_are_discarded(tmp_path, tiny_params, glue_parquet_dir):
    root = tmp_path / "project"
    env = make_repo(root, tiny_params, glue_parquet_dir)
    kill_repro_after_checkpoint(root, env, step=25)

    write_params(root, tiny_params, **{**LONG_RUN, "epochs": 2})
    output = repro(root, env)
    assert "train: discarding checkpoints/train/, checkpoints of other params or data" in output
    assert "resuming" not in output
