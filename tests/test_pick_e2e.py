"""`finetune pick` end to end on a task the tiny model learns (your own data, words of one half of
the vocabulary per class): a learning rate that learns is a winner beyond noise over one that
learns nothing, and `--promote` makes it the committed, tagged model with the evidence in its
card; two rates that both learn nothing are no winner, and nothing is promoted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_own_data
from tests.repos import make_git_project, runner

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))
LEARNS_NOTHING, LEARNS = 1e-7, 1e-2


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_params, glue_parquet_dir):
    """Your own data committed with the project, its run of a learning rate that learns nothing
    committed, and two experiments: `good` (a rate that learns) and `same` (another that does not)."""
    root = tmp_path_factory.mktemp("pick") / "project"
    params = {**tiny_params, "dataset": "data/reviews", "text_columns": ["review"], "label_column": "sentiment",
              "lr": LEARNS_NOTHING, "epochs": 6, "dropout": 0.0, "eval_steps": 12, "logging_steps": 4}
    env = make_git_project(root, params, glue_parquet_dir)
    write_own_data(root / "data" / "reviews", "csv", ["review"], "sentiment", ["negative", "positive"])
    run = runner(root, env)
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "own data")
    run("dvc", "repro")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "baseline run")
    run("dvc", "exp", "run", "--temp", "-n", "good", "-S", f"lr={LEARNS}")
    run("dvc", "exp", "run", "--temp", "-n", "same", "-S", f"lr={LEARNS_NOTHING * 2}")
    return root, run


def test_two_rates_that_learn_nothing_are_no_winner_and_nothing_is_promoted(repo):
    root, run = repo
    head = run("git", "rev-parse", "HEAD")
    output = run(FINETUNE, "pick", "--exps", "same", "--promote", "--seeds", "1")
    assert "pick: best against the baseline: validation_accuracy +0.0000 [+0.0000, +0.0000]" in output
    assert "no winner beyond noise (the interval contains 0)" in output
    assert "pick: no winner beyond noise: nothing promoted" in output
    assert run("git", "rev-parse", "HEAD") == head and run("git", "tag") == ""
    assert "| baseline |" in (root / "tuning" / "pick.md").read_text()


def test_a_rate_that_learns_wins_beyond_noise_and_is_promoted(repo):
    root, run = repo
    ranked = run(FINETUNE, "pick", "--exps", "good", "same")
    assert ranked.index("| good |") < ranked.index("| same |") < ranked.index("| baseline |")  # best first
    assert "over 16 examples and 1 + 1 runs): better beyond noise" in ranked

    output = run(FINETUNE, "pick", "--exps", "good", "--promote", "--seeds", "2")
    # The winner and the baseline over two seeds each, as plain runs; then the winner's run of the
    # baseline's seed is the workspace's, committed and tagged with the evidence.
    assert "pick-baseline-seed1" in output and f"pick-lr{LEARNS}-seed1" in output
    assert "pick: over 2 seeds: validation_accuracy +" in output and "2 + 2 runs): better beyond noise" in output
    assert "pick: promoted good: committed and tagged text-classifier@v1.0.0" in output
    assert yaml.safe_load((root / "params.yaml").read_text())["lr"] == LEARNS
    evidence = json.loads((root / "selection.json").read_text())
    assert evidence["experiment"] == "good" and evidence["changes"] == {"lr": LEARNS}
    assert evidence["seeds"] == [1, 42] and evidence["ci_low"] > 0
    assert evidence["difference"] == pytest.approx(0.5, abs=0.1)  # all right against the majority's half
    card = (root / "models" / "README.md").read_text()
    assert "## Selection" in card and evidence["sentence"] in card
    message = run("git", "log", "-1", "--format=%s")
    assert message.startswith("Promote good (finetune pick): validation_accuracy +")
    tag_message = run("git", "tag", "-n1", "text-classifier@v1.0.0")
    assert "better beyond noise" in tag_message
    assert "Data and pipelines are up to date" in run("dvc", "status")
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                          text=True).stdout == ""
