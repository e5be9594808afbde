"""Other tasks end to end through the real `dvc repro`: a single-sentence GLUE task, a
regression, a user's own files and an imbalanced set of them with class weights, with what each
must change downstream (head, metrics, figures) and what DVC re-runs when the data changes."""

import json

import pandas as pd
import pytest

from finetune.core.metrics import LOSS
from finetune.core.tasks import GLUE_TASKS, TRAIN_SUBSET
from tests.conftest import write_glue_task, write_own_data
from tests.repos import EVERY_STAGE, all_runs, make_git_project, ran_stages, run_params, runner

pytestmark = pytest.mark.slow


def dvc(root, env, *arguments):
    return runner(root, env)("dvc", *arguments)


@pytest.mark.parametrize("config", ["sst2", "stsb"])
def test_a_glue_task_runs_end_to_end(tmp_path, tiny_params, config):
    task = GLUE_TASKS[config]
    glue_dir = write_glue_task(tmp_path / "glue", config, "parquet")
    root = tmp_path / "project"
    env = make_git_project(root, {**tiny_params, "dataset_config": config}, glue_dir)
    assert ran_stages(dvc(root, env, "repro")) == EVERY_STAGE

    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    point_metrics = {key for key in metrics if not key.endswith(("_ci_low", "_ci_high"))}
    assert {key for key in point_metrics if key.startswith("validation_")} == {
        f"validation_{metric}" for metric in (*task.metrics, LOSS)}
    for key in point_metrics:
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    config_json = json.loads((root / "models" / "config.json").read_text())
    card = (root / "models" / "README.md").read_text()
    assert f"fine-tuned on GLUE {config.upper()}" in card and f"| validation | {task.metrics[0]} |" in card
    figures = {path.name for path in (root / "metrics" / "report" / "figures").iterdir()}
    if task.regression:
        assert config_json["problem_type"] == "regression" and len(config_json["id2label"]) == 1
        assert {"scatter_validation.png", "pearson.png", "spearmanr.png", "loss.png"} <= figures
    else:
        assert list(config_json["id2label"].values()) == list(task.label_names)
        assert {"confusion_validation.png", "accuracy.png", "loss.png"} <= figures
    history_header = (root / "metrics" / "history" / "evaluations.csv").read_text().splitlines()[0]
    assert history_header == ",".join(["step", "epoch", *(f"{name}_{metric}" for name in (TRAIN_SUBSET, "validation")
                                                          for metric in (LOSS, *task.metrics))])
    # Twelve steps of the tiny model learn nothing, judged against the task's own baseline.
    diagnosis = json.loads((root / "metrics" / "diagnosis.json").read_text())
    assert diagnosis["verdict"] == "underfitting"
    if task.regression:
        assert diagnosis["min_validation_loss"] > diagnosis["mean_baseline_loss"] * 0.98
    else:
        assert diagnosis["majority_baseline"] == 0.5 and diagnosis["best_validation_accuracy"] < 0.52


def test_own_data_runs_and_reruns_only_when_its_files_change(tmp_path, tiny_params, glue_parquet_dir):
    root = tmp_path / "project"
    env = make_git_project(root, tiny_params, glue_parquet_dir)
    data_dir = root / "data" / "reviews"
    write_own_data(data_dir, "csv", ["review"], "sentiment", ["negative", "positive"])
    output = dvc(root, env, "exp", "run", "-S", "dataset=data/reviews", "-S", "text_columns=[review]",
                 "-S", "label_column=sentiment")
    assert ran_stages(output) == EVERY_STAGE
    task = json.loads((root / "data" / "raw" / "task.json").read_text())
    assert task["text_columns"] == ["review"] and task["label_names"] == ["negative", "positive"]
    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    assert {"validation_accuracy", "validation_macro_f1", "validation_f1"} <= set(metrics)
    assert list(json.loads((root / "models" / "config.json").read_text())["id2label"].values()) == [
        "negative", "positive"]
    assert "fine-tuned on own data data/reviews" in (root / "models" / "README.md").read_text()

    assert ran_stages(dvc(root, env, "repro")) == []  # the same files: nothing to do
    with open(data_dir / "train.csv", "a") as train_file:
        train_file.write('"an extra review, the cat sat",positive\n')
    assert ran_stages(dvc(root, env, "repro")) == EVERY_STAGE


def test_an_imbalanced_data_set_trains_with_balanced_class_weights(tmp_path, tiny_params, glue_parquet_dir):
    root = tmp_path / "project"
    env = make_git_project(root, tiny_params, glue_parquet_dir)
    write_own_data(root / "data" / "skewed", "csv", ["text"], "kind", ["common"] * 9 + ["rare"])  # 10% rare
    output = dvc(root, env, "exp", "run", "-n", "weighted", "-S", "dataset=data/skewed", "-S", "text_columns=[text]",
                 "-S", "label_column=kind", "-S", "class_weights=balanced")
    assert ran_stages(output) == EVERY_STAGE
    train_labels = pd.read_csv(root / "data" / "skewed" / "train.csv")["kind"].tolist()
    training = json.loads((root / "metrics" / "train.json").read_text())
    assert training["class_weights_used"] == {
        name: pytest.approx(len(train_labels) / (2 * train_labels.count(name)), abs=1e-5) for name in ("common", "rare")}
    assert training["class_weights_used"]["rare"] > 4 * training["class_weights_used"]["common"]
    # Each class's scores, counted on validation as it is; the curves of the positive (second) class.
    validation_labels = pd.read_csv(root / "data" / "skewed" / "validation.csv")["kind"].tolist()
    per_class = json.loads((root / "metrics" / "per_class.json").read_text())
    assert {name: scores["support"] for name, scores in per_class["validation"].items()} == {
        name: validation_labels.count(name) for name in ("common", "rare")}
    folder = root / "metrics" / "curves"
    curves = sorted(str(path.relative_to(folder)) for path in folder.rglob("*.csv"))
    assert curves == ["calibration/validation.csv", "precision_recall/validation_rare.csv", "roc/validation_rare.csv"]
    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    assert {"validation_balanced_accuracy", "validation_balanced_accuracy_ci_low", "validation_macro_f1"} <= set(metrics)
    assert "The loss weighted each class: common " in (root / "models" / "README.md").read_text()
    shown = json.loads(dvc(root, env, "exp", "show", "--json"))
    weighted = next(entry for entry in all_runs(shown) if entry.get("name") == "weighted")
    assert run_params(weighted)["class_weights"] == "balanced"
