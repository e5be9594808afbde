"""The real `git` and `dvc` CLIs on copies of the project: what the end-to-end tests share."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVERY_STAGE = ["download", "tokenize", "train", "evaluate", "diagnose", "plot", "export", "publish"]
# What a run of the pipeline writes; the tracked small files of metrics/ and the cached outputs.
ALL_OUTPUTS = [
    "data/raw/train.parquet", "data/raw/provenance.json", "data/raw/task.json", "data/tokenized/dataset_dict.json",
    "trained_model/config.json", "models/config.json", "models/model.safetensors", "models/README.md",
    "metrics/train.json", "metrics/evaluation.json", "metrics/history/train.csv", "metrics/history/evaluations.csv",
    "metrics/live/metrics.json", "metrics/diagnosis.json", "metrics/predictions/validation.csv",
    "metrics/predictions/test.csv", "metrics/report/report.md", "metrics/report/figures/loss.png",
    "exported/model.onnx", "exported/model-int8.onnx", "metrics/export.json", "models/task.json",
]


def write_params(project_dir, params, **changes):
    (project_dir / "params.yaml").write_text(yaml.safe_dump({**params, **changes}, sort_keys=False))


def dvc_environment(glue_dir):
    """Environment for the real `dvc` and `git` CLIs on a test repository."""
    return {
        **os.environ,
        "GLUE_DIR": str(glue_dir),
        "HF_HUB_OFFLINE": "1",
        # DVCLive posts live metrics to DVC Studio where a token is configured: never from tests.
        "DVC_STUDIO_OFFLINE": "true",
        # dvc must run the stages with this interpreter, whatever PATH the tests got.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    }


def runner(cwd, env):
    """`run(*command)`: run a command in `cwd`, fail the test with its output unless it succeeds
    (`check=False`: return it anyway); returns stdout and stderr together."""
    def run(*command, check=True, timeout=600):
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        failed = f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
        assert not check or result.returncode == 0, failed
        return result.stdout + result.stderr
    return run


def ran_stages(output):
    """The stages a `dvc repro` or `dvc exp run` ran, in order, from its output."""
    return re.findall(r"Running stage '(\w+)'", output)


def copy_project(destination):
    """The files a user clones, without any local artifact."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", "selection.json", "search.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, destination / name)
    for package in ("stages", "finetune", "nyu-mll"):
        shutil.copytree(PROJECT_ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    (destination / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(PROJECT_ROOT / ".dvc" / name, destination / ".dvc" / name)
    shutil.copytree(PROJECT_ROOT / ".dvc" / "plots", destination / ".dvc" / "plots")  # the offline page template
    return destination


def make_git_project(root, params, glue_dir):
    """A copy of the project at `root` with `params`, committed to a fresh Git repository;
    returns the environment to run `dvc` and `git` in it."""
    copy_project(root)
    write_params(root, params)
    env = dvc_environment(glue_dir)
    run = runner(root, env)
    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "project")
    return env


def copy_repository(source, destination):
    """A copy of a whole test repository (work tree, Git and DVC's cache), to change without
    touching the original."""
    shutil.copytree(source, destination, symlinks=True)
    return destination


def all_runs(rows):
    """Baseline commits and their experiments, from `dvc exp show --json`."""
    runs = []
    for row in rows:
        if row.get("rev") == "workspace":
            continue
        runs.append(row)
        for experiment in row.get("experiments") or []:
            runs.extend(experiment.get("revs", []))
    return runs


def run_params(entry):
    return entry["data"]["params"]["params.yaml"]["data"]


def run_metrics(entry, path):
    return entry["data"]["metrics"][path]["data"]


def experiments_by_name(run):
    """{name: entry} of the experiments `dvc exp show --json` lists, in the repository of `run`."""
    return {entry["name"]: entry for entry in all_runs(json.loads(run("dvc", "exp", "show", "--json")))
            if entry.get("name")}


def study_storage(root):
    """The URL of `finetune search`'s default study storage in the repository at `root`."""
    return f"sqlite:///{root / 'tuning' / 'studies.db'}"
