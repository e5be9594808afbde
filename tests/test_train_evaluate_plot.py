"""The train, evaluate and plot stages on the tiny model and synthetic data."""

import csv
import json

import pytest
from transformers import AutoModelForSequenceClassification

from stages import download, evaluate, plot, tokenize, train
from tests.conftest import SPLIT_ROWS, write_params


def read_csv(path):
    with open(path, newline="") as csv_file:
        return list(csv.DictReader(csv_file))


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, tiny_params, glue_parquet_dir):
    """One full run of the stages, shared by the tests that only read its outputs."""
    project_dir = tmp_path_factory.mktemp("trained")
    write_params(project_dir, tiny_params)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project_dir)
        monkeypatch.setenv("GLUE_DIR", str(glue_parquet_dir))
        for stage in (download, tokenize, train, evaluate, plot):
            stage.main()
    return project_dir


def test_train_saves_model_history_and_metrics(trained_project, tiny_params):
    model = AutoModelForSequenceClassification.from_pretrained(trained_project / "models")
    assert model.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    assert (trained_project / "models" / "tokenizer.json").is_file()

    steps_per_epoch = SPLIT_ROWS["train"] // tiny_params["train_batch_size"]
    train_history = read_csv(trained_project / "metrics" / "history" / "train.csv")
    assert [int(row["step"]) for row in train_history] == list(range(2, 2 * steps_per_epoch + 1, 2))
    assert all(float(row["grad_norm"]) > 0 and float(row["learning_rate"]) > 0 for row in train_history)
    validation_history = read_csv(trained_project / "metrics" / "history" / "validation.csv")
    assert [int(row["step"]) for row in validation_history] == [4, 8, 12]
    assert set(validation_history[0]) == {"step", "epoch", "validation_loss", "validation_accuracy", "validation_f1"}

    train_metrics = json.loads((trained_project / "metrics" / "train.json").read_text())
    assert train_metrics["trained_steps"] == 12 and train_metrics["stopped_early"] is False
    assert train_metrics["saved_model_step"] == 12


def test_evaluate_scores_validation_and_test_per_example(trained_project):
    metrics = json.loads((trained_project / "metrics" / "evaluation.json").read_text())
    assert set(metrics) == {f"{split}_{name}{suffix}" for split in ("validation", "test")
                            for name in ("accuracy", "f1", "loss") for suffix in ("", "_ci_low", "_ci_high")}
    for key in ("validation_accuracy", "validation_f1", "validation_loss", "test_accuracy", "test_f1", "test_loss"):
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    # 16 examples: a wide interval (F1 may be degenerate if the tiny model predicts one class).
    assert metrics["validation_accuracy_ci_high"] - metrics["validation_accuracy_ci_low"] > 0.1
    predictions = read_csv(trained_project / "metrics" / "predictions" / "validation.csv")
    assert len(predictions) == SPLIT_ROWS["validation"]
    correct = sum(row["label"] == row["prediction"] for row in predictions)
    assert metrics["validation_accuracy"] == pytest.approx(correct / len(predictions))
    # The model saved by train is the one evaluated: same validation loss as its last evaluation.
    last_evaluation = read_csv(trained_project / "metrics" / "history" / "validation.csv")[-1]
    assert metrics["validation_loss"] == pytest.approx(float(last_evaluation["validation_loss"]), abs=1e-4)


def test_plot_writes_learning_curves_and_confusion_matrices(trained_project):
    written = sorted(path.name for path in (trained_project / "metrics" / "plots").iterdir())
    assert written == ["confusion_test.png", "confusion_validation.png", "loss.png", "validation_scores.png"]
    assert all((trained_project / "metrics" / "plots" / name).read_bytes()[:4] == b"\x89PNG" for name in written)


def test_early_stopping_stops_and_keeps_the_best_model(project, tiny_params):
    # A learning rate this small changes nothing: no evaluation improves on the first one.
    write_params(project, tiny_params, lr=1e-12, epochs=3, early_stopping_patience=1, best_model_metric="loss")
    for stage in (download, tokenize, train):
        stage.main()
    train_metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert train_metrics["stopped_early"] is True
    assert train_metrics["trained_steps"] == 8  # evaluations at 4 and 8, stop after 1 without improvement
    validation_history = read_csv(project / "metrics" / "history" / "validation.csv")
    best = min(validation_history, key=lambda row: float(row["validation_loss"]))
    assert train_metrics["saved_model_step"] == int(best["step"])
