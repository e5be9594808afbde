"""A train stage killed mid-run resumes from its last checkpoint on the next `dvc repro`,
and ends with the metrics of a run that was never interrupted; checkpoints of another
configuration are never resumed from."""

import json
import os
import signal
import subprocess
import time

import pytest

from finetune.core.outputs import read_csv, write_json
from finetune.core.paths import TRAIN_METRICS_FILE
from stages import download, tokenize, train
from tests.repos import make_git_project, runner, write_params

# Long enough to be killed mid-run: 60 steps of 6 per epoch, a checkpoint every 25 steps, so
# that every checkpoint falls inside an epoch (the hard case: half an epoch's batches are still
# to come, in the same order as in an uninterrupted run).
LONG_RUN = {"epochs": 10, "eval_steps": 20, "save_steps": 25, "logging_steps": 5}
RESULT_FILES = ["metrics/train.json", "metrics/evaluation.json", "metrics/history/train.csv",
                "metrics/history/evaluations.csv", "metrics/live/metrics.json", "metrics/predictions/validation.csv"]


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


@pytest.mark.slow
def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_params, glue_parquet_dir):
    reference = tmp_path / "uninterrupted"
    runner(reference, make_git_project(reference, {**tiny_params, **LONG_RUN}, glue_parquet_dir))("dvc", "repro")

    root = tmp_path / "interrupted"
    env = make_git_project(root, {**tiny_params, **LONG_RUN}, glue_parquet_dir)
    kill_repro_after_checkpoint(root, env, step=25)
    assert not (root / "trained_model").exists() and not (root / "metrics" / "train.json").exists()
    # The killed run left its curves up to its last logged step, and its live summary.
    logged = [int(row["step"]) for row in read_csv(root / "metrics" / "history" / "train.csv")]
    assert logged[-1] >= 25 and logged == list(range(5, logged[-1] + 1, 5))
    evaluated = [int(row["step"]) for row in read_csv(root / "metrics" / "history" / "evaluations.csv")]
    assert evaluated[:1] == [20]
    assert json.loads((root / "metrics" / "live" / "metrics.json").read_text())["step"] >= 25

    output = runner(root, env)("dvc", "repro")
    resumed = [line for line in output.splitlines() if line.startswith("train: resuming from ")]
    assert len(resumed) == 1 and int(resumed[0].rpartition("-")[2]) >= 25
    assert not (root / "checkpoints" / "train").exists()  # a finished run leaves no checkpoints
    for name in RESULT_FILES:
        assert (root / name).read_bytes() == (reference / name).read_bytes(), name


def test_checkpoints_of_other_params_are_discarded(project, tiny_params, monkeypatch, capsys):
    write_params(project, tiny_params, epochs=1, save_steps=4)
    download.main()
    tokenize.main()
    def full_disk(path, data):  # metrics/train.json, written after training, finds the disk full
        if path == TRAIN_METRICS_FILE:
            raise OSError(28, "No space left on device")
        write_json(path, data)

    with monkeypatch.context() as patched:  # a failure after training keeps its checkpoints
        patched.setattr(train, "write_json", full_disk)
        with pytest.raises(OSError):
            train.main()
    assert sorted(path.name for path in (project / "checkpoints" / "train").glob("checkpoint-*")) == [
        "checkpoint-4", "checkpoint-6"]

    write_params(project, tiny_params, epochs=2, save_steps=4)
    capsys.readouterr()
    train.main()
    output = capsys.readouterr().out
    assert "train: discarding checkpoints/train/, checkpoints of other params or data" in output
    assert "resuming" not in output
    assert json.loads((project / "metrics" / "train.json").read_text())["trained_steps"] == 12
