import math

import pytest

from finetune.commands.aggregate_seeds import format_table, group_by_params
from finetune.core.params import load_params
from tests.repos import PROJECT_ROOT


def run_row(seed, lr, validation_f1, **extra):
    params = vars(load_params(PROJECT_ROOT / "params.yaml"))
    metrics = {"validation_accuracy": validation_f1 - 0.05, "validation_f1": validation_f1,
               "test_accuracy": validation_f1 - 0.06, "test_f1": validation_f1 - 0.01}
    return {"rev": f"exp-{seed}-{lr}", "State": "Success", **params, "seed": float(seed), "lr": lr, **metrics, **extra}


def test_runs_are_grouped_by_params_except_seed():
    rows = [
        {**run_row(42, 5e-5, 0.87), "rev": "workspace"},  # the workspace repeats HEAD: not a run
        run_row(42, 5e-5, 0.87), run_row(1, 5e-5, 0.85), run_row(2, 5e-5, 0.86),
        run_row(1, 3e-5, 0.88), run_row(2, 3e-5, 0.90),
        {**run_row(3, 3e-5, 0.0), "State": "Failed"},
        {**run_row(4, 3e-5, 0.0), "validation_f1": None},
    ]
    groups = {group.params["lr"]: group for group in group_by_params(rows)}
    assert {lr: len(group.runs) for lr, group in groups.items()} == {5e-5: 3, 3e-5: 2}
    mean, spread = groups[5e-5].summary("validation_f1")
    assert mean == pytest.approx(0.86) and spread == pytest.approx(0.01)

    table = format_table(list(groups.values())).splitlines()
    assert table[0].split() == ["lr", "runs", "seeds", "validation_accuracy", "validation_f1", "test_accuracy", "test_f1"]
    # Sorted by mean validation F1, best first; only the varying param (lr) is a column.
    assert table[2].split()[:3] == ["3e-05", "2", "1,2"] and "0.8900 ± 0.0141" in table[2]
    assert table[3].split()[:3] == ["5e-05", "3", "1,2,42"] and "0.8600 ± 0.0100" in table[3]


def test_a_single_run_has_no_spread():
    (group,) = group_by_params([run_row(42, 5e-5, 0.87)])
    assert math.isnan(group.summary("validation_f1")[1])
    assert "0.8700 ±" not in format_table([group]) and "0.8700" in format_table([group])


def test_pruned_trials_are_left_out_and_a_seed_counts_once():
    rows = [
        run_row(42, 5e-5, 0.87),  # the commit's run...
        run_row(42, 5e-5, 0.87),  # ...and an experiment equal to it
        {**run_row(1, 5e-5, 0.85), "trial": "s/0", "trial_state": "complete"},
        run_row(1, 5e-5, 0.85),  # the trial's params and seed, run in full
        {**run_row(2, 5e-5, 0.20), "trial": "s/1", "trial_state": "pruned"},  # stopped early on a low score
    ]
    (group,) = group_by_params(rows)
    assert [(int(run["seed"]), run["trial"]) for run in group.runs] == [(42, ""), (1, "")]
    mean, spread = group.summary("validation_f1")
    assert mean == pytest.approx(0.86) and spread == pytest.approx(0.0141421, abs=1e-6)
