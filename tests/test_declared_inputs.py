"""Every output is a function of its stage's declared deps and params, nothing else (not Git's
state, not the path of the clone): a second clone, one commit further on but with the same
params.yaml in its work tree, runs every stage and records the very hashes the first recorded."""

import subprocess

import pytest
import yaml

from tests.repos import EVERY_STAGE, ran_stages, runner, write_params

pytestmark = pytest.mark.slow

# Written by separate processes in each clone: the same bytes on a CPU (a GPU's kernels may differ).
RESULT_FILES = [
    "metrics/train.json", "metrics/evaluation.json", "metrics/history/train.csv",
    "metrics/history/evaluations.csv", "metrics/predictions/validation.csv",
    "metrics/predictions/test.csv", "trained_model/model.safetensors",
]


@pytest.fixture(scope="module")
def second_clone(tmp_path_factory, reproduced_repository, tiny_params):
    """A Git clone of the reproduced repository, at another path and one commit further on: that
    commit changes the committed params.yaml (lr) and a file no stage reads; the work tree then
    gets the first clone's params.yaml back, and `dvc repro` runs every stage."""
    root = tmp_path_factory.mktemp("another-commit") / "clone"
    env = reproduced_repository.env
    subprocess.run(["git", "clone", "-q", str(reproduced_repository.root), str(root)], check=True, env=env)
    run = runner(root, env)
    write_params(root, tiny_params, lr=tiny_params["lr"] / 2)
    (root / "NOTES.md").write_text("Another commit: other committed params, a file no stage reads.\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "other params")
    write_params(root, tiny_params)
    return root, run("dvc", "repro")


def recorded_outputs(root):
    """{stage: {output: the hash DVC recorded}} of dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {stage: {out["path"]: out["md5"] for out in entry["outs"]} for stage, entry in lock["stages"].items()}


def test_every_stage_records_the_same_outputs_at_another_commit(reproduced_repository, second_clone):
    first, (second, repro) = reproduced_repository.root, second_clone
    assert ran_stages(repro) == EVERY_STAGE
    heads = [runner(root, reproduced_repository.env)("git", "rev-parse", "HEAD") for root in (first, second)]
    assert heads[0] != heads[1]
    assert (first / "params.yaml").read_bytes() == (second / "params.yaml").read_bytes()
    first_outputs, second_outputs = recorded_outputs(first), recorded_outputs(second)
    assert sorted(first_outputs) == sorted(EVERY_STAGE)
    assert {stage: outputs for stage, outputs in second_outputs.items() if outputs != first_outputs[stage]} == {}


def test_two_runs_give_bit_identical_metrics_and_weights(reproduced_repository, second_clone):
    first, (second, _) = reproduced_repository.root, second_clone
    different = [name for name in RESULT_FILES if (first / name).read_bytes() != (second / name).read_bytes()]
    assert different == []
