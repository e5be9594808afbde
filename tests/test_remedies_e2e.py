"""`finetune remedies` end to end: the fixes the tiny run's curves call for, run over seeds."""

import json
import sys
from pathlib import Path

import pytest

from tests.repos import experiments_by_name, run_metrics, run_params

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def test_remedies_name_the_fixes_and_run_them_over_seeds(tuning_repository):
    root, run = tuning_repository
    # Twelve steps of the tiny model learn nothing: underfitting.
    listed = run(FINETUNE, "remedies")
    assert "remedies: the workspace: underfitting: validation accuracy never got above 0.500" in listed
    assert "higher-lr: " in listed and "dvc exp run -S lr=0.003" in listed
    assert "dvc exp run -S epochs=4.0" in listed and "dvc exp run -S freeze_embeddings=false" in listed
    output = run(FINETUNE, "remedies", "--run", "--only", "higher-lr", "--seeds", "2")
    shown = experiments_by_name(run)
    assert {"remedy-baseline-seed1", "remedy-higher-lr-seed42", "remedy-higher-lr-seed1"} <= set(shown)
    assert run_params(shown["remedy-higher-lr-seed1"])["lr"] == 0.003
    report = (root / "tuning" / "remedies.md").read_text()
    assert report in output
    remedy_f1 = [run_metrics(shown[name], "metrics/evaluation.json")["validation_f1"]
                 for name in ("remedy-higher-lr-seed42", "remedy-higher-lr-seed1")]
    baseline_f1 = [json.loads((root / "metrics" / "evaluation.json").read_text())["validation_f1"],
                   run_metrics(shown["remedy-baseline-seed1"], "metrics/evaluation.json")["validation_f1"]]
    # Twelve steps at either lr predict one class on every seed (F1 0, as evaluate scored it): every
    # resample of the examples and seeds differs by 0, so the interval is [0, 0], no evidence.
    assert remedy_f1 == baseline_f1 == [0.0, 0.0]
    row = next(line for line in report.splitlines() if line.startswith("| higher-lr |"))
    assert row == "| higher-lr | `lr=0.003` | underfitting x2 | 0.0000 ± 0.0000 | +0.0000 [+0.0000, +0.0000] | no |"
    # Run again: the recorded experiments are reused, nothing is run twice.
    again = run(FINETUNE, "remedies", "--run", "--only", "higher-lr", "--seeds", "2")
    assert "running" not in again and report in again
