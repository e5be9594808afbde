"""Other tasks end to end through the real `dvc repro`: a single-sentence GLUE task, a
regression, a user's own files, an imbalanced set of them with class weights and a multi-label
set (each of its file forms), with what each
must change downstream (head, metrics, figures) and what DVC re-runs when the data changes."""

import json

import pandas as pd
import pytest

from finetune.core.metrics import LOSS
from finetune.core.tasks import GLUE_TASKS, TRAIN_SUBSET
from tests.browser import drawn_plots, open_page
from tests.conftest import (
    TOPICS,
    multi_label_frame,
    run_stage_process,
    write_glue_task,
    write_multi_label_data,
    write_own_data,
)
from tests.repos import EVERY_STAGE, all_runs, make_git_project, ran_stages, run_params, runner, write_params

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
    assert curves == ["calibration/validation.csv", "confusion/validation.csv", "precision_recall/validation_rare.csv",
                      "roc/validation_rare.csv"]
    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    assert {"validation_balanced_accuracy", "validation_balanced_accuracy_ci_low", "validation_macro_f1"} <= set(metrics)
    assert "The loss weighted each class: common " in (root / "models" / "README.md").read_text()
    shown = json.loads(dvc(root, env, "exp", "show", "--json"))
    weighted = next(entry for entry in all_runs(shown) if entry.get("name") == "weighted")
    assert run_params(weighted)["class_weights"] == "balanced"


def test_a_multi_label_data_set_runs_end_to_end(tmp_path, tiny_params, glue_parquet_dir):
    from transformers import pipeline

    root = tmp_path / "project"
    env = make_git_project(root, tiny_params, glue_parquet_dir)
    write_multi_label_data(root / "data" / "tagged", "list")
    output = dvc(root, env, "exp", "run", "-n", "tags", "-S", "dataset=data/tagged", "-S", "text_columns=[text]",
                 "-S", "label_column=topics", "-S", "epochs=6", "-S", "multi_label_threshold=0.4")
    assert ran_stages(output) == EVERY_STAGE
    task = json.loads((root / "data" / "raw" / "task.json").read_text())
    assert task["multi_label"] and task["label_names"] == list(TOPICS)
    assert task["metrics"] == ["micro_f1", "macro_f1", "subset_accuracy"]
    config = json.loads((root / "models" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and list(config["id2label"].values()) == list(TOPICS)

    metrics = json.loads((root / "metrics" / "evaluation.json").read_text())
    for split in ("validation", "test"):
        for metric in ("micro_f1", "macro_f1", "subset_accuracy", "loss"):
            key = f"{split}_{metric}"
            assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    # The predictions: JSON lists of names and a probability per label; the metrics are theirs at the threshold.
    predictions = pd.read_csv(root / "metrics" / "predictions" / "validation.csv")
    assert list(predictions.columns) == ["idx", "label", "prediction", *(f"probability_{name}" for name in TOPICS)]
    given = predictions[[f"probability_{name}" for name in TOPICS]].to_numpy() >= 0.4
    assert [json.loads(cell) for cell in predictions["prediction"]] == [
        [name for name, flag in zip(TOPICS, row, strict=True) if flag] for row in given]
    truth = [set(json.loads(cell)) for cell in predictions["label"]]
    assert truth == [set(record["topics"]) for record in multi_label_frame("validation", 1)]
    exact = sum(set(json.loads(cell)) == labels for cell, labels in zip(predictions["prediction"], truth, strict=True))
    assert metrics["validation_subset_accuracy"] == pytest.approx(exact / len(truth))
    per_label = json.loads((root / "metrics" / "per_class.json").read_text())["validation"]
    assert {name: scores["support"] for name, scores in per_label.items()} == {
        name: sum(name in labels for labels in truth) for name in TOPICS}
    folder = root / "metrics" / "curves"
    assert sorted(str(path.relative_to(folder)) for path in folder.rglob("*.csv")) == [
        "calibration/validation.csv", "confusion/validation.csv",
        *(f"{kind}/validation_{name}.csv" for kind in ("precision_recall", "roc") for name in TOPICS)]
    # The confusion matrix's pairs: a label rightly given on the diagonal, "(none)" for the rest.
    pairs = pd.read_csv(folder / "confusion" / "validation.csv")
    labels_given = sum(len(json.loads(cell)) for cell in predictions["prediction"])
    assert (pairs["prediction"] != "(none)").sum() == labels_given
    assert (pairs["label"] != "(none)").sum() == sum(len(labels) for labels in truth)
    # The diagnosis reads micro-F1 against always predicting the most common label set: 7 sets cycle
    # over 16 rows, so the first, {animals}, is the most common; animals is in 9 of them, places in 9,
    # times in 8: 9 right, 7 wrongly given, 17 missed.
    diagnosis = json.loads((root / "metrics" / "diagnosis.json").read_text())
    assert {"best_validation_micro_f1", "micro_f1_gap", "majority_baseline"} <= set(diagnosis)
    assert diagnosis["majority_baseline"] == pytest.approx(2 * 9 / (2 * 9 + 7 + 17))
    figures = {path.name for path in (root / "metrics" / "report" / "figures").iterdir()}
    assert {"micro_f1.png", "subset_accuracy.png", "confusion_validation.png", "roc.png", "calibration.png"} <= figures
    report = (root / "metrics" / "report" / "report.md").read_text()
    assert "## Per label (validation)" in report and "validation micro-F1" in report
    card = (root / "models" / "README.md").read_text()
    assert "top_k=None" in card and "probability 0.4 or more" in card

    # The offline plots page draws each label's ROC and precision-recall curve, and the calibration.
    dvc(root, env, "plots", "show")
    dom, requested = open_page(root / "dvc_plots" / "index.html", tmp_path)
    curve_ids = [f"metrics_curves_{kind}_validation_{name}_csv" for kind in ("roc", "precision_recall")
                 for name in TOPICS] + ["metrics_curves_calibration_validation_csv"]
    assert drawn_plots(dom, curve_ids) == set(curve_ids)
    assert {url for url in requested if not url.startswith("file:")} == set()
    # Each titled with its file, which names its label.
    page = (root / "dvc_plots" / "index.html").read_text()
    assert all(f'"text": "metrics/curves/roc/validation_{name}.csv"' in page for name in TOPICS)

    # The published model, as a user loads it: every label with its sigmoid probability.
    classifier = pipeline("text-classification", model=str(root / "models"), top_k=None)
    (scores,) = classifier([multi_label_frame("validation", 1)[0]["text"]])
    first = predictions.set_index("idx").loc[0]
    assert {score["label"]: score["score"] for score in scores} == pytest.approx(
        {name: first[f"probability_{name}"] for name in TOPICS}, abs=1e-4)


@pytest.mark.parametrize("form, fmt", [("delimited", "tsv"), ("flags", "csv"), ("list", "parquet")])
def test_each_form_of_multi_label_data_downloads_as_the_same_label_sets(tmp_path, tiny_params, form, fmt):
    root = tmp_path / "project"
    write_multi_label_data(root / "tagged", form, fmt)
    label_column = list(TOPICS) if form == "flags" else "topics"
    write_params(root, {**tiny_params, "dataset": "tagged", "text_columns": ["text"], "label_column": label_column,
                        "label_delimiter": "|" if form == "delimited" else ""})
    result = run_stage_process("download", root)
    assert result.returncode == 0, result.stderr
    task = json.loads((root / "data" / "raw" / "task.json").read_text())
    assert task["multi_label"] and task["label_names"] == list(TOPICS)
    train = pd.read_parquet(root / "data" / "raw" / "train.parquet")
    assert [[TOPICS[index] for index in labels] for labels in train["label"]] == [
        record["topics"] for record in multi_label_frame("train", 0)]
