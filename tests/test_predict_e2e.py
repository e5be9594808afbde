"""`finetune predict` with the model of another revision, experiment or registry version: fetched
from DVC's cache by the real CLIs, in a copy of the shared tiny run."""

import csv
import shutil

import pytest

from tests.repos import copy_repository, runner

pytestmark = pytest.mark.slow


def predictions(path):
    with open(path, newline="") as output:
        return [row["prediction"] for row in csv.DictReader(output)]


def test_the_model_of_a_revision_an_experiment_or_a_version(reproduced_repository, glue_parquet_dir, tmp_path):
    root = copy_repository(reproduced_repository.root, tmp_path / "project")
    run = runner(root, reproduced_repository.env)
    validation = str(glue_parquet_dir / "mrpc" / "validation-00000-of-00001.parquet")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "the tiny run")
    run("git", "tag", "-a", "text-classifier@v1.0.0", "-m", "first")
    run("finetune", "predict", validation, "-o", str(tmp_path / "workspace.csv"))
    run("dvc", "exp", "run", "-n", "other-seed", "-S", "seed=7")
    other = predictions(root / "metrics" / "predictions" / "validation.csv")
    assert other != predictions(tmp_path / "workspace.csv")  # another model: the test can tell them apart
    shutil.rmtree(root / "models")  # the workspace holds the experiment's outputs; now none: each comes from the cache
    shutil.rmtree(root / "exported")
    for source, expected in ((["--rev", "HEAD"], "workspace.csv"), (["--artifact", "v1.0.0"], "workspace.csv"),
                             (["--rev", "other-seed"], None)):
        output = tmp_path / f"{source[1]}.csv"
        run("finetune", "predict", validation, "-o", str(output), *source)
        assert predictions(output) == (predictions(tmp_path / expected) if expected else other)
    run("finetune", "predict", validation, "-o", str(tmp_path / "int8.csv"), "--engine", "int8", "--rev", "HEAD")
    assert len(predictions(tmp_path / "int8.csv")) == len(predictions(tmp_path / "workspace.csv"))
    missing = run("finetune", "predict", validation, "--rev", "no-such-run", check=False)
    assert "error: --rev 'no-such-run': neither a Git revision nor an experiment of this repository" in missing
