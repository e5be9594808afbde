"""The train, evaluate, plot and publish stages on the tiny model and synthetic data."""

import json
import subprocess

import numpy as np
import pytest
import torch
import yaml
from sklearn.utils.class_weight import compute_class_weight
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from finetune.core.errors import run_stage
from finetune.core.outputs import read_csv, write_json
from finetune.core.params import load_params, parse_params
from finetune.core.paths import TRAIN_METRICS_FILE
from finetune.core.tasks import GLUE_TASKS, load_task
from finetune.data.loading import load_tokenized
from finetune.models import freeze_embeddings, load_classifier, load_tokenizer
from finetune.reporting.diagnosis import explanation
from finetune.reporting.remedies import remedies_text
from finetune.training.evaluations import evaluation_sets
from finetune.training.trainer import build_trainer
from stages import diagnose, download, evaluate, export, plot, publish, tokenize, train
from tests.conftest import SPLIT_ROWS, TOPICS, padded_tiny_batch, run_stages_in, write_multi_label_data
from tests.repos import write_params


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, tiny_params, glue_parquet_dir):
    """One full run of the stages, shared by the tests that only read its outputs."""
    return run_stages_in(tmp_path_factory.mktemp("trained"), tiny_params,
                         (download, tokenize, train, evaluate, diagnose, plot, export, publish), glue_parquet_dir)


def test_train_saves_model_history_and_metrics(trained_project, tiny_params):
    model = AutoModelForSequenceClassification.from_pretrained(trained_project / "trained_model")
    assert model.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    assert (trained_project / "trained_model" / "tokenizer.json").is_file()

    steps_per_epoch = SPLIT_ROWS["train"] // tiny_params["train_batch_size"]
    train_history = read_csv(trained_project / "metrics" / "history" / "train.csv")
    assert [int(row["step"]) for row in train_history] == list(range(2, 2 * steps_per_epoch + 1, 2))
    assert all(float(row["grad_norm"]) > 0 and float(row["learning_rate"]) > 0 for row in train_history)
    evaluations = read_csv(trained_project / "metrics" / "history" / "evaluations.csv")
    assert [int(row["step"]) for row in evaluations] == [4, 8, 12]
    metrics = ["accuracy", "f1", "balanced_accuracy", "macro_f1"]  # MRPC's own two, then every classification's
    assert list(evaluations[0]) == ["step", "epoch", *(f"{name}_{metric}" for name in ("train_subset", "validation")
                                                       for metric in ("loss", *metrics))]
    assert all(value != "" for row in evaluations for value in row.values())

    train_metrics = json.loads((trained_project / "metrics" / "train.json").read_text())
    assert train_metrics["trained_steps"] == 12 and train_metrics["stopped_early"] is False
    assert train_metrics["saved_model_step"] == 12
    assert train_metrics["class_weights_used"] is None  # class_weights: none


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dropout_param_replaces_the_checkpoints_dropout(tiny_model_dir, dropout):
    model = load_classifier(str(tiny_model_dir), dropout=dropout).train()
    assert model.config.hidden_dropout_prob == model.config.attention_probs_dropout_prob == dropout
    first, second = (model(**padded_tiny_batch()).logits for _ in range(2))
    assert torch.equal(first, second) == (dropout == 0)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings_param_keeps_the_checkpoints_embedding_layer(project, tiny_params, tiny_model_dir, freeze):
    write_params(project, tiny_params, freeze_embeddings=freeze, epochs=1)
    for stage in (download, tokenize, train):
        stage.main()
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(project / "trained_model").state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    embedding_layer = {name for name in before if name.startswith("bert.embeddings.")}
    assert embedding_layer  # token, position, segment embeddings and their layer norm
    assert changed & embedding_layer == (set() if freeze else embedding_layer)
    assert {name for name in before if name.startswith("bert.encoder.")} <= changed


def test_freeze_embeddings_of_a_model_without_an_embedding_layer_freezes_its_token_embeddings():
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32, num_labels=2)
    model = GPT2ForSequenceClassification(config)
    freeze_embeddings(model)
    frozen = {name for name, weight in model.named_parameters() if not weight.requires_grad}
    assert frozen == {"transformer.wte.weight"}


def test_evaluate_scores_validation_and_test_per_example(trained_project):
    metrics = json.loads((trained_project / "metrics" / "evaluation.json").read_text())
    assert set(metrics) == {f"{split}_{name}{suffix}" for split in ("validation", "test")
                            for name in ("accuracy", "f1", "balanced_accuracy", "macro_f1", "loss")
                            for suffix in ("", "_ci_low", "_ci_high")}
    for key in ("validation_accuracy", "validation_f1", "validation_loss", "test_accuracy", "test_f1", "test_loss"):
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"]
    # 16 examples: a wide interval (F1 may be degenerate if the tiny model predicts one class).
    assert metrics["validation_accuracy_ci_high"] - metrics["validation_accuracy_ci_low"] > 0.1
    predictions = read_csv(trained_project / "metrics" / "predictions" / "validation.csv")
    assert len(predictions) == SPLIT_ROWS["validation"]
    assert {row["label"] for row in predictions} == {"not_equivalent", "equivalent"}  # class names, as a user reads them
    correct = sum(row["label"] == row["prediction"] for row in predictions)
    assert metrics["validation_accuracy"] == pytest.approx(correct / len(predictions))
    # Per class: counts and scores that agree with the predictions, in metrics/per_class.json.
    per_class = json.loads((trained_project / "metrics" / "per_class.json").read_text())
    assert sorted(per_class) == ["test", "validation"]
    for name, scores in per_class["validation"].items():
        actual = [row for row in predictions if row["label"] == name]
        predicted = [row for row in predictions if row["prediction"] == name]
        hits = sum(row["prediction"] == name for row in actual)
        assert scores["support"] == len(actual)
        assert scores["recall"] == pytest.approx(hits / len(actual), abs=1e-6)
        assert scores["precision"] == pytest.approx(hits / len(predicted) if predicted else 0.0, abs=1e-6)
    recalls = [scores["recall"] for scores in per_class["validation"].values()]
    assert metrics["validation_balanced_accuracy"] == pytest.approx(sum(recalls) / 2, abs=1e-6)
    # The model saved by train is the one evaluated: same validation loss as its last evaluation.
    last_evaluation = read_csv(trained_project / "metrics" / "history" / "evaluations.csv")[-1]
    assert metrics["validation_loss"] == pytest.approx(float(last_evaluation["validation_loss"]), abs=1e-4)


def test_plot_writes_a_report_with_curves_verdict_and_every_param(trained_project, tiny_params):
    report_dir = trained_project / "metrics" / "report"
    images = sorted(path.name for path in (report_dir / "figures").glob("*.png"))
    assert images == ["accuracy.png", "balanced_accuracy.png", "calibration.png", "confusion_test.png",
                      "confusion_validation.png", "f1.png", "learning_rate.png", "loss.png", "macro_f1.png",
                      "precision_recall.png", "roc.png"]
    assert all((report_dir / "figures" / name).read_bytes()[:4] == b"\x89PNG" for name in images)
    report = (report_dir / "report.md").read_text()
    diagnosis = json.loads((trained_project / "metrics" / "diagnosis.json").read_text())
    params = load_params(trained_project / "params.yaml")
    assert f"**Verdict: {explanation(GLUE_TASKS['mrpc'], diagnosis, params)}.**" in report
    # Twelve steps learn nothing: the remedies of underfitting, with the commands that try them.
    assert "\n".join(["## What to try", "", *remedies_text(GLUE_TASKS["mrpc"], diagnosis, params, 12)]) in report
    assert f"`dvc exp run -S lr={tiny_params['lr'] * 3:g}`" in report
    assert "| validation_accuracy |" in report and "| validation_balanced_accuracy |" in report
    # Each class of each labelled split, as metrics/per_class.json has it.
    per_class = json.loads((trained_project / "metrics" / "per_class.json").read_text())
    for split in ("validation", "test"):
        assert f"## Per class ({split})" in report
        for name, scores in per_class[split].items():
            assert (f"| {name} | {scores['precision']:.4f} | {scores['recall']:.4f} | {scores['f1']:.4f} | "
                    f"{scores['support']} |") in report
    assert all(f"![{name}](figures/{name})" in report for name in images)
    # Every param of the run, whatever Git's HEAD holds (the test project is not even a repository).
    rows = [f"| `{name}` | `{json.dumps(value)}` |" for name, value in {**tiny_params, "epochs": 2.0}.items()]
    assert [row for row in rows if row not in report] == []


def test_publish_gives_the_trained_model_its_card(trained_project, tiny_params):
    published, trained = trained_project / "models", trained_project / "trained_model"
    assert sorted(path.name for path in published.iterdir()) == sorted(
        [*(path.name for path in trained.iterdir()), "README.md", "task.json"])
    # Hard links: the same file, no second copy on disk.
    assert (published / "model.safetensors").stat().st_ino == (trained / "model.safetensors").stat().st_ino
    _, front_matter, prose = (published / "README.md").read_text().split("---\n", 2)
    metadata = yaml.safe_load(front_matter)
    # A local checkpoint folder is no Hub id: named in the prose, not as base_model.
    assert "base_model" not in metadata and f"Base checkpoint `{tiny_params['checkpoint']}`" in prose
    assert metadata["pipeline_tag"] == "text-classification" and "| validation | f1 |" in prose
    assert "precision `fp32`: 12 steps (2.0 epochs)" in prose
    assert f"| `lr` | `{tiny_params['lr']}` |" in prose and "| `seed` | `42` |" in prose


def test_publish_without_a_trained_model_says_which_stage_to_run(project, capsys):
    download.main()
    with pytest.raises(SystemExit) as stopped:
        run_stage(publish.main)
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == "error: trained_model/ holds no trained model: run `dvc repro train` first"


def test_early_stopping_stops_and_keeps_the_best_model(project, tiny_params):
    # A learning rate this small changes nothing: no evaluation improves on the first one.
    write_params(project, tiny_params, lr=1e-12, epochs=3, early_stopping_patience=1, best_model_metric="loss")
    for stage in (download, tokenize, train):
        stage.main()
    train_metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert train_metrics["stopped_early"] is True
    assert train_metrics["trained_steps"] == 8  # evaluations at 4 and 8, stop after 1 without improvement
    evaluations = read_csv(project / "metrics" / "history" / "evaluations.csv")
    best = min(evaluations, key=lambda row: float(row["validation_loss"]))
    assert train_metrics["saved_model_step"] == train_metrics["best_step"] == int(best["step"])


def test_bf16_trains_and_evaluates_on_a_cpu(project, tiny_params):
    # Trainer refuses bf16 without a GPU unless the stage says a CPU is meant.
    write_params(project, tiny_params, precision="bf16", epochs=1)
    for stage in (download, tokenize, train, evaluate):
        stage.main()
    # Mixed precision: bf16 arithmetic, fp32 weights; train.json says which precision ran.
    model = AutoModelForSequenceClassification.from_pretrained(project / "trained_model")
    assert model.dtype == torch.float32
    assert json.loads((project / "metrics" / "train.json").read_text())["precision_used"] == "bf16"
    metrics = json.loads((project / "metrics" / "evaluation.json").read_text())
    predictions = read_csv(project / "metrics" / "predictions" / "validation.csv")
    correct = sum(row["label"] == row["prediction"] for row in predictions)
    assert metrics["validation_accuracy"] == pytest.approx(correct / len(predictions))


def test_mid_run_evaluations_batch_pairs_of_similar_length(project, tiny_params, tmp_path):
    # With group_by_length, Trainer would regroup the evaluation sets like train batches,
    # padding each batch to far more tokens than its pairs have (seen: evaluations 1.4x slower).
    write_params(project, tiny_params, group_by_length=True, eval_batch_size=4)
    for stage in (download, tokenize):
        stage.main()
    params = load_params()
    tokenized = load_tokenized()
    task = load_task()
    sets, _ = evaluation_sets(task, tokenized, params.eval_sample_size)
    model = load_classifier(params.checkpoint, task, dropout=params.dropout)
    trainer, _ = build_trainer(params, task, model, load_tokenizer(params.checkpoint),
                               tokenized["train"].remove_columns("idx"), sets, str(tmp_path / "out"))
    for evaluation_set in sets.values():
        widths = [batch["input_ids"].shape[1] for batch in trainer.get_eval_dataloader(evaluation_set)]
        assert len(widths) == 4 and widths == sorted(widths) and widths[0] < widths[-1]


@pytest.mark.parametrize("cpu_speedups", [True, False])
def test_train_says_which_cpu_speedups_it_applied(project, tiny_params, capsys, cpu_speedups):
    write_params(project, tiny_params, cpu_speedups=cpu_speedups, epochs=1)
    for stage in (download, tokenize, train):
        stage.main()
    output = capsys.readouterr().out
    if cpu_speedups:
        assert ("train: CPU speed-ups applied: glibc keeps freed memory, fast dropout masks, plain attention in "
                "training, last layer for [CLS] only; skipped: none") in output
    else:
        assert "train: CPU speed-ups off (cpu_speedups: false)" in output
    assert json.loads((project / "metrics" / "train.json").read_text())["trained_steps"] == 6


def test_a_run_shorter_than_logging_steps_still_gives_every_output(project, tiny_params):
    # max_steps below logging_steps: no train loss is logged, yet the stages complete.
    write_params(project, tiny_params, max_steps=3, logging_steps=10, eval_steps=50)
    for stage in (download, tokenize, train, evaluate, diagnose, plot, publish):
        stage.main()
    assert read_csv(project / "metrics" / "history" / "train.csv") == []
    assert [int(row["step"]) for row in read_csv(project / "metrics" / "history" / "evaluations.csv")] == [3]
    train_metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert train_metrics["trained_steps"] == 3 and train_metrics["train_loss"] > 0
    assert json.loads((project / "metrics" / "diagnosis.json").read_text())["verdict"] == "underfitting"
    assert (project / "metrics" / "report" / "figures" / "loss.png").is_file()
    assert (project / "models" / "README.md").is_file()


def test_a_failure_after_training_keeps_the_checkpoints_and_the_rerun_resumes(project, tiny_params, monkeypatch,
                                                                             capsys):
    write_params(project, tiny_params, epochs=1)
    for stage in (download, tokenize):
        stage.main()

    def full_disk(path, data):  # metrics/train.json, written after training, finds the disk full
        if path == TRAIN_METRICS_FILE:
            raise OSError(28, "No space left on device")
        write_json(path, data)

    with monkeypatch.context() as patched:
        patched.setattr(train, "write_json", full_disk)  # metrics/train.json, written after training
        with pytest.raises(OSError):
            train.main()
    checkpoints = list((project / "checkpoints" / "train").glob("checkpoint-*"))
    assert [path.name for path in checkpoints] == ["checkpoint-6"]  # the run's 6 steps, kept
    capsys.readouterr()
    train.main()
    output = capsys.readouterr().out
    assert "train: resuming from checkpoints/train/checkpoint-6" in output
    assert json.loads((project / "metrics" / "train.json").read_text())["trained_steps"] == 6
    assert len(read_csv(project / "metrics" / "history" / "train.csv")) == 3  # steps 2, 4, 6: nothing lost
    assert not (project / "checkpoints" / "train").exists()


def test_train_runs_in_a_git_repository_without_a_commit(project, tiny_params):
    # `git init`, then `dvc repro` before the first commit: DVCLive 3.49 raised SCMError there
    # (finetune.training.live.UncommittedSafeLive overrides its private Live._init_dvc for it).
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    write_params(project, tiny_params, epochs=1)
    for stage in (download, tokenize, train):
        stage.main()
    assert json.loads((project / "metrics" / "live" / "metrics.json").read_text())["step"] == 6


def test_dropout_param_reaches_gpt2s_pdrop_settings(tmp_path):
    # GPT-2 names its dropout probabilities *_pdrop: the param once left them at the checkpoint's 0.1.
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32,
                                             bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    config = load_classifier(str(tmp_path), dropout=0.3).config
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.3


def test_class_weights_weight_the_loss_and_are_recorded(project, tiny_params):
    predicted_equivalent, recorded = {}, {}
    for name, class_weights in [("none", "none"), ("heavy", {"not_equivalent": 1, "equivalent": 30}),
                                ("balanced", "balanced")]:
        write_params(project, tiny_params, class_weights=class_weights)
        for stage in (download, tokenize, train, evaluate):
            stage.main()
        predictions = read_csv(project / "metrics" / "predictions" / "validation.csv")
        predicted_equivalent[name] = sum(row["prediction"] == "equivalent" for row in predictions)
        recorded[name] = json.loads((project / "metrics" / "train.json").read_text())["class_weights_used"]
        if name == "heavy":
            publish.main()
            assert "The loss weighted each class: not_equivalent 1, equivalent 30." in (
                project / "models" / "README.md").read_text()
    # A class weighted 30 times the other is predicted more often (on every example, here).
    assert predicted_equivalent["heavy"] > predicted_equivalent["none"]
    assert recorded["none"] is None and recorded["heavy"] == {"not_equivalent": 1.0, "equivalent": 30.0}
    # Balanced: scikit-learn's rule on train's labels, in the task's label order.
    expected = compute_class_weight("balanced", classes=np.arange(2), y=load_tokenized()["train"]["labels"])
    assert recorded["balanced"] == {name: pytest.approx(weight, abs=1e-6)
                                    for name, weight in zip(("not_equivalent", "equivalent"), expected, strict=True)}


def test_trainer_minimises_the_class_weighted_cross_entropy(tiny_params, tmp_path):
    task = GLUE_TASKS["mrpc"]
    weights = {"not_equivalent": 1.0, "equivalent": 30.0}
    params = parse_params({**tiny_params, "class_weights": weights, "dropout": 0.0})
    model = load_classifier(params.checkpoint, task, dropout=params.dropout)
    trainer, _ = build_trainer(params, task, model, load_tokenizer(params.checkpoint), None, None,
                               str(tmp_path / "out"), class_weights=weights)
    batch = padded_tiny_batch()
    loss = trainer.compute_loss(model, dict(batch)).item()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double().numpy()
    # By hand: each pair's negative log-probability of its class, averaged with its class's weight.
    labels = batch["labels"].numpy()
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    pair_weights = np.array(list(weights.values()))[labels]
    expected = -(pair_weights * log_probabilities[np.arange(len(labels)), labels]).sum() / pair_weights.sum()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss != pytest.approx(-log_probabilities[np.arange(len(labels)), labels].mean(), rel=1e-3)


def test_a_multi_label_test_file_without_labels_gets_predictions_but_no_metrics(project, tiny_params, tmp_path):
    folder = write_multi_label_data(tmp_path / "tagged", "list", "json")
    test_file = folder / "test.json"
    test_file.write_text(json.dumps([{"text": record["text"]} for record in json.loads(test_file.read_text())]))
    write_params(project, tiny_params, dataset=str(folder), text_columns=["text"], label_column="topics", max_steps=4)
    for stage in (download, tokenize, train, evaluate, diagnose, plot):
        stage.main()
    provenance = json.loads((project / "data" / "raw" / "provenance.json").read_text())
    assert provenance["splits"]["test"]["label_counts"] is None
    assert provenance["splits"]["validation"]["most_common_label_set"]["rows"] == 3
    metrics = json.loads((project / "metrics" / "evaluation.json").read_text())
    assert {key.partition("_")[0] for key in metrics} == {"validation"}
    predictions = read_csv(project / "metrics" / "predictions" / "test.csv")
    assert len(predictions) == SPLIT_ROWS["test"] and {row["label"] for row in predictions} == {""}
    assert all(isinstance(json.loads(row["prediction"]), list) for row in predictions)
    assert list(json.loads((project / "metrics" / "per_class.json").read_text())) == ["validation"]
    figures = {path.name for path in (project / "metrics" / "report" / "figures").iterdir()}
    assert "confusion_validation.png" in figures and "confusion_test.png" not in figures


def test_balanced_class_weights_of_a_multi_label_task_weight_each_labels_positives(project, tiny_params, tmp_path):
    from finetune.training.class_weights import weighted_loss

    folder = write_multi_label_data(tmp_path / "tagged", "flags")
    write_params(project, tiny_params, dataset=str(folder), text_columns=["text"], label_column=list(TOPICS),
                 class_weights="balanced", max_steps=4)
    for stage in (download, tokenize, train, evaluate, publish):
        stage.main()
    flags = np.array(load_tokenized()["train"]["labels"])
    recorded = json.loads((project / "metrics" / "train.json").read_text())["class_weights_used"]
    # Each label's negatives / positives in train: scikit-learn's balanced weight of the label's 1s
    # over that of its 0s, one label at a time.
    balanced = [compute_class_weight("balanced", classes=np.arange(2), y=flags[:, label]) for label in range(len(TOPICS))]
    assert recorded == {name: pytest.approx(weight[1] / weight[0], abs=1e-6)
                        for name, weight in zip(TOPICS, balanced, strict=True)}
    assert "The loss weighted each label's positives: animals " in (project / "models" / "README.md").read_text()
    logits = np.random.default_rng(0).normal(size=flags.shape)
    # By hand: each label's binary cross-entropy, its positives' term times the label's weight.
    log_sigmoid = -np.logaddexp(0, -logits)
    positive_weights = np.array(list(recorded.values()))
    expected = -(positive_weights * flags * log_sigmoid + (1 - flags) * (log_sigmoid - logits)).mean()
    loss = weighted_loss(recorded, multi_label=True)({"logits": torch.tensor(logits)}, torch.tensor(flags))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
