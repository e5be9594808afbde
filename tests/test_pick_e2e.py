"""`finetune pick` end to end on a task the tiny model learns (your own data, words of one half of
the vocabulary per class, a test split with labels): a learning rate that learns wins over one
that learns nothing, on one seed against these examples only; `--promote` confirms it on fresh
seeds and the test split and makes it the committed, tagged model with the evidence in its card,
and a step that fails leaves the repository as it was; two rates that both learn nothing are no
winner, and nothing is promoted.

The tests run in order on one repository, each reusing the confirmation runs of the ones before
(six `dvc exp run`s in all): the failed promotion runs the winner's and the named baseline's, the
no-winner one HEAD's, and the promotion none."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_own_data
from tests.repos import experiments_by_name, make_git_project, run_params, runner

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))
LEARNS_NOTHING, LEARNS = 1e-7, 1e-2
# Fails the promotion's commit only (it stages selection.json), not DVC's commits of experiments.
REFUSING_HOOK = """#!/bin/sh
if git diff --cached --name-only | grep -qx selection.json; then echo "pre-commit: refused" >&2; exit 1; fi
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_params, glue_parquet_dir):
    """Your own data committed with the project, its run of a learning rate that learns nothing
    committed, and two experiments: `good` (a rate that learns) and `same` (another that does not).
    (root, run, finetune): `finetune(*arguments)` runs the command, whatever its exit status."""
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

    def finetune(*arguments):
        return subprocess.run([FINETUNE, *arguments], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    return root, run, finetune


def repository_state(root, run):
    """What a failed promotion must leave as it found: commit, branches, tags, tracked and
    untracked files, params, evidence, the model card DVC checked out, DVC's status."""
    return {"head": run("git", "rev-parse", "HEAD"), "branch": run("git", "branch", "--show-current"),
            "branches": run("git", "branch", "--list"), "tags": run("git", "tag"),
            "status": run("git", "status", "--porcelain", "--untracked-files=all"),
            "files": {name: (root / name).read_bytes() for name in ("params.yaml", "selection.json", "models/README.md")},
            "dvc status": run("dvc", "status")}


def test_a_rate_that_learns_is_better_on_one_seed_but_promote_needs_two(repo):
    root, run, finetune = repo
    ranked = run(FINETUNE, "pick", "--exps", "good", "same")
    assert ranked.index("| good |") < ranked.index("| same |") < ranked.index("| baseline |")  # best first
    assert "over 16 examples and 1 + 1 runs): better on these examples (one seed each: example noise only)" in ranked
    assert "| baseline |" in (root / "tuning" / "pick.md").read_text()

    refused = finetune("pick", "--exps", "good", "--promote", "--seeds", "1")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == ("error: pick --promote: --seeds 1: give 2 or more: with one run a side a comparison "
                              "measures example noise only, and a lucky seed passes it\n")


def test_a_failing_step_leaves_the_repository_as_it_was(repo):
    root, run, finetune = repo
    before = repository_state(root, run)
    hook = root / ".git" / "hooks" / "pre-commit"
    hook.write_text(REFUSING_HOOK)
    hook.chmod(0o755)
    try:
        # Against the named baseline `same`, whose lr is not HEAD's.
        failed = finetune("pick", "--exps", "good", "--baseline", "same", "--promote", "--seeds", "2",
                          "--branch", "promoted")
    finally:
        hook.unlink()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "2 + 2 runs): better beyond noise" in failed.stdout  # confirmed: it went on to register
    assert failed.stderr == (f"error: pick --promote: the git commit step failed (git commit: pre-commit: refused): "
                             f"the repository was restored (main at {before['head'][:7]}, as before)\n")
    assert repository_state(root, run) == before
    # The baseline's confirmation runs ran the named baseline's params, not HEAD's.
    runs = experiments_by_name(run)
    assert {name: run_params(runs[name])["lr"] for name in runs if name.startswith("pick-")} == {
        "pick-lr2e-07-seed1": LEARNS_NOTHING * 2, "pick-lr2e-07-seed2": LEARNS_NOTHING * 2,
        "pick-lr0.01-seed1": LEARNS, "pick-lr0.01-seed2": LEARNS}


def test_two_rates_that_learn_nothing_are_no_winner_and_nothing_is_promoted(repo):
    root, run, _ = repo
    head = run("git", "rev-parse", "HEAD")
    reused = run("git", "for-each-ref", "refs/exps/")
    output = run(FINETUNE, "pick", "--exps", "same", "--promote", "--seeds", "2")
    assert ("pick: confirmed on seeds 1, 2 (not 42, the seed the winner was chosen with) on test, examples that "
            "did not choose it: test_accuracy +0.0000 [+0.0000, +0.0000]") in output
    assert "2 + 2 runs): no winner beyond noise (the interval contains 0)" in output
    assert "pick: no winner beyond noise: nothing promoted" in output
    assert run("git", "rev-parse", "HEAD") == head and run("git", "tag") == ""
    # `same`'s confirmation runs were the failed promotion's baseline runs, not run again.
    assert all(line in run("git", "for-each-ref", "refs/exps/") for line in reused.splitlines())
    assert sorted(name for name in experiments_by_name(run) if name.startswith("pick-baseline")) == [
        "pick-baseline-seed1", "pick-baseline-seed2"]


def test_a_rate_that_learns_wins_beyond_noise_and_is_promoted_and_pushed(repo):
    root, run, _ = repo
    run("git", "init", "-q", "--bare", str(root.parent / "origin.git"))
    run("git", "remote", "add", "origin", str(root.parent / "origin.git"))
    output = run(FINETUNE, "pick", "--exps", "good", "--promote", "--seeds", "2", "--push", "origin")
    # Every confirmation run is one of the tests before; the winner's run of the first seed is
    # the workspace's, committed and tagged with the evidence.
    confirmed = "confirmed on seeds 1, 2 (not 42, the seed the winner was chosen with) on test"
    assert f"pick: {confirmed}, examples that did not choose it: test_accuracy +" in output
    assert "2 + 2 runs): better beyond noise" in output
    assert "pick: promoted pick-lr0.01-seed1: committed and tagged text-classifier@v1.0.0" in output
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert (params["lr"], params["seed"]) == (LEARNS, 1)
    evidence = json.loads((root / "selection.json").read_text())
    assert evidence["experiment"] == "pick-lr0.01-seed1" and evidence["changes"] == {"lr": LEARNS}
    assert (evidence["seeds"], evidence["confirmed_on"], evidence["metric"]) == ([1, 2], "test", "test_accuracy")
    assert evidence["ci_low"] > 0 and evidence["difference"] == pytest.approx(0.5, abs=0.1)  # right against half
    assert confirmed in evidence["sentence"]
    card = (root / "models" / "README.md").read_text()
    assert "## Selection" in card and evidence["sentence"] in card
    message = run("git", "log", "-1", "--format=%s")
    assert message.startswith("Promote pick-lr0.01-seed1 (finetune pick): test_accuracy +")
    assert "better beyond noise" in run("git", "tag", "-n1", "text-classifier@v1.0.0")
    assert f"## Confirmation (--promote): {confirmed}" in (root / "tuning" / "pick.md").read_text()
    assert "Data and pipelines are up to date" in run("dvc", "status")
    # Pushed: the model to the DVC remote beside the clone, the commit and its tag to Git's.
    assert "Cache and remote 'team' are in sync" in run("dvc", "status", "--cloud")
    head = run("git", "rev-parse", "HEAD").strip()
    assert run("git", "ls-remote", "origin", "refs/heads/main").split()[0] == head
    assert run("git", "ls-remote", "origin", "refs/tags/text-classifier@v1.0.0^{}").split()[0] == head
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                          text=True).stdout == ""
