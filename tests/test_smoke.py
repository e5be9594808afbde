"""Smoke run of the real pipeline: real MRPC mirror, the default model, a few dozen steps.

Run by `make smoke` (and CI) with GLUE_DIR pointing at the mirror; skipped by `make test`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.repos import PROJECT_ROOT, copy_project, write_params

pytestmark = pytest.mark.smoke
MRPC_ROWS = {"train": 3668, "validation": 408, "test": 1725}


def test_real_pipeline_on_the_mirror_with_the_default_model(tmp_path):
    glue_dir = os.environ.get("GLUE_DIR")
    assert glue_dir, "the smoke run needs GLUE_DIR, e.g. GLUE_DIR=../shared/data/glue make smoke"
    root = copy_project(tmp_path / "project")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    write_params(root, params, max_steps=40, eval_steps=20)
    env = {**os.environ, "GLUE_DIR": str(Path(glue_dir).resolve()), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    result = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    provenance = json.loads((root / "data" / "raw" / "provenance.json").read_text())
    assert {split: info["rows"] for split, info in provenance["splits"].items()} == MRPC_ROWS
    train_metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert train_metrics["trained_steps"] == 40
    evaluation = json.loads((root / "metrics" / "evaluation.json").read_text())
    # 40 steps (of train_batch_size pairs) already beat chance; the full run's figures are in README.md.
    assert evaluation["validation_accuracy"] > 0.5 and evaluation["test_accuracy"] > 0.5
    assert len((root / "metrics" / "predictions" / "test.csv").read_text().splitlines()) == MRPC_ROWS["test"] + 1
    assert (root / "metrics" / "report" / "figures" / "loss.png").is_file()
    card = (root / "models" / "README.md").read_text()  # the published model's card
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and "| test | accuracy |" in card
    # Two evaluations and four logged losses: too few to call the run erratic or overfitting, so it
    # is underfitting exactly when validation accuracy never beat the majority share by the margin.
    diagnosis = json.loads((root / "metrics" / "diagnosis.json").read_text())
    assert diagnosis["train_loss_spread"] == 0.0 and diagnosis["evaluations_after_min_loss"] <= 1
    margin = params["diagnose_baseline_margin"]
    beat_majority = diagnosis["best_validation_accuracy"] >= diagnosis["majority_baseline"] + margin
    assert diagnosis["verdict"] == ("healthy" if beat_majority else "underfitting")
