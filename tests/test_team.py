"""Working as a team: two clones of one Git remote (a bare repository) and the DVC remote that
`.dvc/config` names by default, all inside a temporary folder, driven by the real CLIs.

One clone runs the pipeline and pushes; the other pulls and finds every output, nothing to
re-run, and a model that `pipeline()` loads and that predicts as the evaluate stage did. An
experiment, the registered model (`dvc artifacts get`) and credentials are shared the same way.
"""

import csv
import dataclasses
import json
import re
import subprocess

import pandas as pd
import pytest
import yaml

from finetune.core.params import load_params
from tests.repos import (
    ALL_OUTPUTS,
    EVERY_STAGE,
    PROJECT_ROOT,
    copy_project,
    copy_repository,
    dvc_environment,
    ran_stages,
    runner,
)

pytestmark = pytest.mark.slow

ARTIFACT = "text-classifier"
EXPERIMENT = "lower-lr"
# Built here, not written out: this file is itself scanned for secrets.
FAKE_KEY_ID = "AKIA" + "TESTONLYNOTAKEY0"
FAKE_SECRET = "fake" + "Secret/Key+0123456789abcdefghij"
KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
# A credential's name, then = or :, then a value that is not a placeholder (<...>, $VAR).
SECRET_ASSIGNMENT = re.compile(r"(?i)(secret_access_key|session_token|account_key|sas_token|connection_string|"
                               r"client_secret|\bpassword|\btoken)\b\s*[=:]\s*['\"]?(?![<$])[^\s'\"]{8,}")


@pytest.fixture(scope="module")
def team(tmp_path_factory, reproduced_repository):
    """Clone A ran the pipeline (a copy of the shared reproduced repository) and pushed to Git and
    DVC; clone B cloned and pulled, side by side."""
    base = tmp_path_factory.mktemp("team")
    env = reproduced_repository.env
    origin = base / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    a = copy_repository(reproduced_repository.root, base / "A")
    run_a = runner(a, env)
    run_a("git", "add", "-A")
    run_a("git", "commit", "-q", "-m", "first run")
    run_a("git", "remote", "add", "origin", str(origin))
    run_a("git", "push", "-q", "origin", "main")
    pushed = run_a("dvc", "push")
    subprocess.run(["git", "clone", "-q", str(origin), str(base / "B")], check=True, env=env)
    b = base / "B"
    run_b = runner(b, env)
    pulled = run_b("dvc", "pull")
    baseline_model = (a / "models" / "model.safetensors").read_bytes()
    return {"base": base, "env": env, "origin": origin, "a": a, "b": b, "run_a": run_a, "run_b": run_b,
            "pushed": pushed, "pulled": pulled, "baseline_model": baseline_model}


def test_the_default_remote_is_a_folder_beside_the_clones(team):
    # .dvc/config's relative url resolves from .dvc/, so both clones name the same folder.
    storage = team["base"] / "dvc-storage"
    for run in (team["run_a"], team["run_b"]):
        assert str(storage) in run("dvc", "remote", "list")
    assert "files pushed" in team["pushed"] and any((storage / "files" / "md5").iterdir())


def test_a_second_clone_pulls_every_output_and_reruns_nothing(team):
    a, b, run_b = team["a"], team["b"], team["run_b"]
    assert [output for output in ALL_OUTPUTS if not (b / output).is_file()] == []
    for output in ("models/model.safetensors", "models/README.md", "metrics/report/report.md", "data/raw/train.parquet"):
        assert (b / output).read_bytes() == (a / output).read_bytes(), output
    assert "Data and pipelines are up to date" in run_b("dvc", "status")
    repro = run_b("dvc", "repro")
    assert ran_stages(repro) == [] and "Data and pipelines are up to date" in repro


def test_the_pulled_model_predicts_with_pipeline_as_the_evaluate_stage_did(team):
    from transformers import pipeline

    b = team["b"]
    classifier = pipeline("text-classification", model=str(b / "models"), top_k=None)
    pairs = pd.read_parquet(b / "data" / "raw" / "validation.parquet").head(6).to_dict("records")
    with open(b / "metrics" / "predictions" / "validation.csv", newline="") as predictions_file:
        evaluated = {int(row["idx"]): row for row in csv.DictReader(predictions_file)}
    outputs = classifier([{"text": pair["sentence1"], "text_pair": pair["sentence2"]} for pair in pairs])
    for pair, scores in zip(pairs, outputs, strict=True):
        expected = evaluated[pair["idx"]]
        assert max(scores, key=lambda score: score["score"])["label"] == expected["prediction"]
        by_label = {score["label"]: score["score"] for score in scores}
        assert sorted(by_label) == ["equivalent", "not_equivalent"]  # the task's names, not LABEL_0
        assert by_label["equivalent"] == pytest.approx(float(expected["probability_equivalent"]), abs=1e-5)


def test_the_model_card_carries_metrics_params_and_data_checksums(team):
    b = team["b"]
    card = (b / "models" / "README.md").read_text()
    _, front_matter, prose = card.split("---\n", 2)
    metadata = yaml.safe_load(front_matter)
    evaluation = json.loads((b / "metrics" / "evaluation.json").read_text())
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-classification"
    assert metadata["datasets"] == ["nyu-mll/glue"]
    assert metadata["metrics"] == ["accuracy", "f1", "balanced_accuracy", "macro_f1"]
    results = {(result["dataset"]["split"], metric["type"]): metric["value"]
               for result in metadata["model-index"][0]["results"] for metric in result["metrics"]}
    assert results[("test", "f1")] == round(evaluation["test_f1"], 4)
    assert (f"| test | accuracy | {evaluation['test_accuracy']:.4f} | [{evaluation['test_accuracy_ci_low']:.4f}, "
            f"{evaluation['test_accuracy_ci_high']:.4f}] |") in prose
    assert 'pipeline("text-classification", model="models")' in prose
    provenance = json.loads((b / "data" / "raw" / "provenance.json").read_text())
    assert provenance["splits"]["train"]["sha256"] in prose
    params = dataclasses.asdict(load_params(b / "params.yaml"))
    assert [name for name, value in params.items() if f"| `{name}` | `{json.dumps(value)}` |" not in prose] == []
    assert "precision `fp32`" in prose


def test_the_registered_model_downloads_with_dvc_artifacts_get(team):
    """`dvc artifacts get` finds the latest version, a Git tag NAME@vX.Y.Z (GTO's format)."""
    run_a, base = team["run_a"], team["base"]
    run_a("git", "tag", "-a", f"{ARTIFACT}@v1.0.0", "-m", "first model")
    run_a("git", "push", "-q", "origin", f"{ARTIFACT}@v1.0.0")
    # From outside any clone the relative url of the default remote would resolve in DVC's
    # temporary clone: name the folder (a cloud remote's url needs nothing).
    outside = base / "outside"
    outside.mkdir()
    runner(outside, team["env"])("dvc", "artifacts", "get", str(team["origin"]), ARTIFACT,
                                 "--remote-config", f"url={base / 'dvc-storage'}", "-o", "model")
    assert (outside / "model" / "model.safetensors").read_bytes() == team["baseline_model"]
    assert (outside / "model" / "README.md").is_file()
    # Inside a clone, `.` is enough.
    team["run_b"]("git", "fetch", "-q", "--tags")
    team["run_b"]("dvc", "artifacts", "get", ".", ARTIFACT, "-o", str(outside / "from-clone"))
    assert (outside / "from-clone" / "model.safetensors").read_bytes() == team["baseline_model"]


def test_an_experiment_pushed_from_one_clone_is_pulled_and_applied_in_the_other(team):
    a, b, run_a, run_b = team["a"], team["b"], team["run_a"], team["run_b"]
    assert ran_stages(run_a("dvc", "exp", "run", "-n", EXPERIMENT, "-S", "lr=1e-4")) == EVERY_STAGE[2:]
    run_a("dvc", "exp", "push", "origin", EXPERIMENT)  # its Git refs, and its outputs to the DVC remote
    run_b("dvc", "exp", "pull", "origin", EXPERIMENT)

    shown = json.loads(run_b("dvc", "exp", "show", "--json"))
    experiment = next(rev for row in shown for group in row.get("experiments") or [] for rev in group["revs"]
                      if rev["name"] == EXPERIMENT)
    assert experiment["data"]["params"]["params.yaml"]["data"]["lr"] == 1e-4
    assert experiment["data"]["metrics"]["metrics/evaluation.json"]["data"] == json.loads(
        (a / "metrics" / "evaluation.json").read_text())

    run_b("dvc", "exp", "apply", EXPERIMENT)
    run_b("dvc", "pull")
    assert (b / "models" / "model.safetensors").read_bytes() == (a / "models" / "model.safetensors").read_bytes()
    assert (b / "models" / "model.safetensors").read_bytes() != team["baseline_model"]
    assert "| `lr` | `0.0001` |" in (b / "models" / "README.md").read_text()
    assert "Data and pipelines are up to date" in run_b("dvc", "status")


def test_credentials_set_up_as_documented_stay_out_of_git(tmp_path, glue_parquet_dir):
    readme = (PROJECT_ROOT / "README.md").read_text()
    documented = ["dvc remote modify team url s3://", "dvc remote modify --local team access_key_id",
                  "dvc remote modify --local team secret_access_key"]
    assert [command for command in documented if command not in readme] == []
    clone = copy_project(tmp_path / "clone")
    run = runner(clone, dvc_environment(glue_parquet_dir))
    run("git", "init", "-q", "-b", "main")
    run("dvc", "remote", "modify", "team", "url", "s3://team-bucket/finetune")
    run("dvc", "remote", "modify", "--local", "team", "access_key_id", FAKE_KEY_ID)
    run("dvc", "remote", "modify", "--local", "team", "secret_access_key", FAKE_SECRET)
    run("dvc", "remote", "add", "--local", "azure", "azure://container/finetune")
    run("dvc", "remote", "modify", "--local", "azure", "connection_string", f"AccountKey={FAKE_SECRET}")
    assert FAKE_KEY_ID in (clone / ".dvc" / "config.local").read_text()  # the secrets went somewhere
    run("git", "add", "-A")
    tracked = run("git", "ls-files").split()
    assert ".dvc/config.local" not in tracked and ".dvc/config" in tracked
    run("git", "check-ignore", "-q", ".dvc/config.local")
    assert "s3://team-bucket/finetune" in (clone / ".dvc" / "config").read_text()
    assert secrets_in(clone, tracked) == []


def test_the_repository_tracks_no_secret():
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("the project is not a Git checkout here")
    assert secrets_in(PROJECT_ROOT, listed.stdout.split()) == []


def test_the_secret_patterns_catch_what_they_should():
    assert KEY_ID.search(f"access_key_id = {FAKE_KEY_ID}")
    # Split names, so that this file's own lines hold no match for the repository scan.
    assert SECRET_ASSIGNMENT.search("    secret_access" + f"_key = {FAKE_SECRET}")
    assert SECRET_ASSIGNMENT.search("pass" + "word: hunter2hunter2")
    assert not SECRET_ASSIGNMENT.search("dvc remote modify --local team secret_access_key '<secret access key>'")
    assert not SECRET_ASSIGNMENT.search("every token: for MiniLM")


def secrets_in(root, files):
    """`file: line` of every line of `files` (under `root`) that holds a key-like secret."""
    found = []
    for name in files:
        path = root / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # images
        found += [f"{name}: {line.strip()}" for line in text.splitlines()
                  if KEY_ID.search(line) or SECRET_ASSIGNMENT.search(line)]
    return found
