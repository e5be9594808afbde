"""Each task's metrics (finetune/scoring/scores.py, through the project's `evaluate` module) against
scikit-learn and SciPy, and the bootstrap intervals against a one-by-one replay."""

import json

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from finetune.core.tasks import GLUE_TASKS, own_data_task
from finetune.scoring import scores
from finetune.scoring.scores import bootstrap_intervals, task_metrics

REFERENCE = {
    "accuracy": accuracy_score,
    "f1": lambda true, predicted: f1_score(true, predicted, zero_division=0.0),
    "macro_f1": lambda true, predicted: f1_score(true, predicted, average="macro", zero_division=0.0),
    "balanced_accuracy": balanced_accuracy_score,
    "matthews_correlation": matthews_corrcoef,
    "pearson": lambda true, predicted: scipy.stats.pearsonr(true, predicted)[0],
    "spearmanr": lambda true, predicted: scipy.stats.spearmanr(true, predicted)[0],
}
# A multi-label task's metrics on 0/1 matrices (examples x labels), as scikit-learn scores indicator matrices.
MULTI_LABEL_REFERENCE = {
    "micro_f1": lambda true, predicted: f1_score(true, predicted, average="micro", zero_division=0.0),
    "macro_f1": lambda true, predicted: f1_score(true, predicted, average="macro", zero_division=0.0),
    "subset_accuracy": accuracy_score,
}
TAGS = own_data_task("tags", ["text"], ["art", "food", "news", "sport", "travel"], True, multi_label=True)
TASKS = [*GLUE_TASKS.values(), own_data_task("reviews", ["review"], ["negative", "neutral", "positive"], True),
         own_data_task("spam", ["text"], ["ham", "spam"], False)]


def predictions_and_references(task, seed, size=200):
    generator = np.random.default_rng(seed)
    if task.regression:
        references = generator.uniform(0, 5, size)
        return references + generator.normal(0, 1, size), references
    references = generator.integers(0, task.num_labels, size=size)
    wrong = generator.integers(0, task.num_labels, size=size)
    return np.where(generator.random(size) < 0.7, references, wrong), references


@pytest.mark.parametrize("task", TASKS, ids=[task.name for task in TASKS])
@pytest.mark.parametrize("seed", range(3))
def test_every_task_metric_matches_scikit_learn_and_scipy(task, seed):
    predictions, references = predictions_and_references(task, seed)
    scores = task_metrics(task, predictions, references)
    assert list(scores) == list(task.metrics)
    for metric, value in scores.items():
        assert value == pytest.approx(REFERENCE[metric](references, predictions), abs=1e-6), metric


def test_f1_without_any_positive_is_zero_like_scikit_learn():
    # Macro F1 averages over every class of the task, an absent one scoring 0 (scikit-learn's
    # `labels=` of all classes), and balanced accuracy over the classes present.
    assert task_metrics(GLUE_TASKS["mrpc"], [0, 0, 0], [0, 0, 0]) == {
        "accuracy": 1.0, "f1": 0.0, "balanced_accuracy": 1.0, "macro_f1": 0.5}
    assert task_metrics(GLUE_TASKS["cola"], [1, 1, 1], [1, 0, 1]) == {
        "matthews_correlation": 0.0, "balanced_accuracy": 0.5, "macro_f1": pytest.approx(0.4)}


def test_balanced_accuracy_and_macro_f1_see_the_minority_class_that_accuracy_hides():
    # 95 of 100 examples in class 0, and a model that always predicts it.
    references, predictions = np.array([0] * 95 + [1] * 5), np.zeros(100, dtype=int)
    scores = task_metrics(own_data_task("skewed", ["text"], ["common", "rare"], False), predictions, references)
    assert scores == {"accuracy": 0.95, "f1": 0.0, "balanced_accuracy": 0.5, "macro_f1": pytest.approx(0.95 / 1.95)}


def label_sets(seed, size=200, labels=5):
    """(predictions, references): 0/1 matrices, references with a rare label, predictions 80% right."""
    generator = np.random.default_rng(seed)
    references = (generator.random((size, labels)) < [0.5, 0.3, 0.2, 0.1, 0.02][:labels]).astype(int)
    flipped = generator.random((size, labels)) < 0.2
    return np.where(flipped, 1 - references, references), references


@pytest.mark.parametrize("seed", range(3))
def test_multi_label_metrics_match_scikit_learn(seed):
    predictions, references = label_sets(seed)
    scores = task_metrics(TAGS, predictions, references.astype(np.float32))  # Trainer's labels are floats
    assert list(scores) == ["micro_f1", "macro_f1", "subset_accuracy"]
    for metric, value in scores.items():
        assert value == pytest.approx(MULTI_LABEL_REFERENCE[metric](references, predictions), abs=1e-6), metric


def test_per_label_scores_match_scikit_learn():
    import json

    from finetune.core.metrics import per_class_scores

    predictions, references = label_sets(4)
    names = TAGS.label_names
    rows = [{"label": json.dumps([name for name, flag in zip(names, truth, strict=True) if flag]),
             "prediction": json.dumps([name for name, flag in zip(names, said, strict=True) if flag])}
            for truth, said in zip(references, predictions, strict=True)]
    precision, recall, f1, support = precision_recall_fscore_support(references, predictions, zero_division=0.0)
    assert per_class_scores(rows, names, multi_label=True) == {
        name: {"precision": pytest.approx(precision[index], abs=1e-6), "recall": pytest.approx(recall[index], abs=1e-6),
               "f1": pytest.approx(f1[index], abs=1e-6), "support": support[index]}
        for index, name in enumerate(names)}


def test_multi_label_bootstrap_intervals_match_a_one_by_one_replay():
    predictions, references = label_sets(9, size=60)
    losses = np.random.default_rng(8).random(60)
    # 300 resamples in chunks of 100 (examples x labels bound the memory): one stream of draws all the same.
    intervals = bootstrap_intervals(TAGS, predictions, references.astype(np.float32), losses, resamples=300, seed=3)
    replay = np.random.default_rng(3).integers(0, 60, size=(300, 60))
    for metric, reference in MULTI_LABEL_REFERENCE.items():
        samples = [reference(references[rows], predictions[rows]) for rows in replay]
        assert intervals[metric] == pytest.approx(tuple(np.percentile(samples, [2.5, 97.5])), abs=1e-6), metric


@pytest.mark.parametrize("task", [GLUE_TASKS["mrpc"], GLUE_TASKS["mnli"], GLUE_TASKS["stsb"]], ids=lambda task: task.name)
def test_bootstrap_intervals_match_a_one_by_one_replay(task):
    predictions, references = predictions_and_references(task, 7, size=60)
    losses = np.random.default_rng(8).random(60)
    intervals = bootstrap_intervals(task, predictions, references, losses, resamples=300, seed=3)

    # The same resamples, drawn one by one and scored by scikit-learn / SciPy.
    replay = np.random.default_rng(3).integers(0, 60, size=(300, 60))
    reference_scores = {metric: [REFERENCE[metric](references[rows], predictions[rows]) for rows in replay]
                        for metric in task.metrics}
    reference_scores["loss"] = [losses[rows].mean() for rows in replay]
    assert set(intervals) == set(reference_scores)
    for name, samples in reference_scores.items():
        assert intervals[name] == pytest.approx(tuple(np.percentile(samples, [2.5, 97.5])), abs=1e-6), name


@pytest.mark.parametrize("task", [GLUE_TASKS["mrpc"], TAGS], ids=lambda task: task.name)
def test_bootstrap_in_bounded_chunks_gives_the_intervals_of_one_chunk(task, monkeypatch):
    """The memory bound (a few resamples at a time on a large split) changes no interval: the chunks
    take the same numbers from the generator as resamples drawn 500 at a time, as before the bound."""
    if task.multi_label:
        predictions, references = label_sets(4, size=60)
        references = references.astype(np.float32)
    else:
        predictions, references = predictions_and_references(task, 4, size=60)
    losses = np.random.default_rng(5).random(60)
    whole = bootstrap_intervals(task, predictions, references, losses, resamples=700, seed=9)
    monkeypatch.setattr(scores, "_DRAWS_PER_CHUNK", 7 * 60)  # 100 chunks of 7 resamples
    assert bootstrap_intervals(task, predictions, references, losses, resamples=700, seed=9) == whole


def test_bootstrap_memory_is_bounded_on_a_test_split_of_qqps_size():
    import tracemalloc

    predictions, references = predictions_and_references(GLUE_TASKS["qqp"], 6, size=390_965)  # QQP's test size
    losses = np.random.default_rng(6).random(390_965).astype(np.float32)
    tracemalloc.start()
    bootstrap_intervals(GLUE_TASKS["qqp"], predictions, references, losses, resamples=100, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # 100 resamples drawn at once: 100 x 390,965 indices, gathered twice, would be over 700 MB.
    assert peak < 250e6, f"peak {peak / 1e6:.0f} MB"


def test_bootstrap_intervals_are_stable_to_the_third_decimal_with_the_default_resamples():
    import yaml

    from tests.repos import PROJECT_ROOT

    resamples = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["bootstrap_resamples"]
    predictions, references = predictions_and_references(GLUE_TASKS["mrpc"], 11, size=408)  # MRPC validation size
    losses = np.random.default_rng(11).random(408)
    by_seed = [bootstrap_intervals(GLUE_TASKS["mrpc"], predictions, references, losses, resamples, seed)
               for seed in range(3)]
    for name in ("accuracy", "f1", "loss"):
        bounds = np.array([intervals[name] for intervals in by_seed])
        assert np.ptp(bounds, axis=0).max() < 0.001  # different resampling seeds agree to the third decimal


def test_roc_and_precision_recall_curves_match_scikit_learn():
    from sklearn.metrics import precision_recall_curve, roc_curve

    from finetune.scoring.curves import precision_recall_rows, roc_rows

    generator = np.random.default_rng(5)
    truth = generator.random(300) < 0.3
    scores = np.round(np.clip(truth * 0.3 + generator.random(300) * 0.7, 0, 1), 2)  # ties, as probabilities have
    false_positive_rate, true_positive_rate, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    rows = np.array(roc_rows(truth, scores))
    assert rows[:, 0] == pytest.approx(false_positive_rate, abs=1e-6)
    assert rows[:, 1] == pytest.approx(true_positive_rate, abs=1e-6)
    # The start, before any score: scikit-learn's threshold is +inf, the file's 1 (a probability's highest).
    assert rows[0, 2] == 1.0 and thresholds[0] == np.inf
    assert rows[1:, 2] == pytest.approx(thresholds[1:], abs=1e-6)
    precision, recall, thresholds = precision_recall_curve(truth, scores, drop_intermediate=False)
    rows = np.array(precision_recall_rows(truth, scores))
    # scikit-learn lists them from the lowest threshold up, and ends at recall 0, precision 1.
    assert rows[:, 0] == pytest.approx(recall[:-1][::-1], abs=1e-6)
    assert rows[:, 1] == pytest.approx(precision[:-1][::-1], abs=1e-6)
    assert rows[:, 2] == pytest.approx(thresholds[::-1], abs=1e-6)


def test_calibration_bins_hold_their_mean_confidence_and_accuracy():
    from finetune.scoring.curves import calibration_rows

    confidence = np.array([0.55, 0.58, 0.95, 0.97, 0.99, 1.0])
    correct = np.array([True, False, True, True, False, True])
    assert calibration_rows(confidence, correct) == [(0.565, 0.5, 0.565, 2), (0.9775, 0.75, 0.9775, 4)]


def test_a_classifier_of_three_classes_gets_a_curve_per_class_against_the_rest(tmp_path, monkeypatch):
    from finetune.core.outputs import read_csv, write_csv
    from finetune.scoring.curves import write_curves

    monkeypatch.chdir(tmp_path)
    task = own_data_task("reviews", ["review"], ["negative", "neutral", "positive"], False)
    generator = np.random.default_rng(3)
    probabilities = generator.dirichlet(np.ones(3), size=60)
    labels = generator.integers(0, 3, size=60)
    names = task.label_names
    (tmp_path / "metrics" / "predictions").mkdir(parents=True)
    write_csv(tmp_path / "metrics" / "predictions" / "validation.csv",
              ["idx", "label", "prediction", *(f"probability_{name}" for name in names)],
              [[index, names[label], names[row.argmax()], *(f"{value:.6f}" for value in row)]
               for index, (label, row) in enumerate(zip(labels, probabilities, strict=True))])
    write_curves(task, {"validation": read_csv(tmp_path / "metrics" / "predictions" / "validation.csv")})
    curves = tmp_path / "metrics" / "curves"
    assert sorted(str(path.relative_to(curves)) for path in curves.rglob("*.csv")) == [
        "calibration/validation.csv", "confusion/validation.csv",
        *(f"{kind}/validation_{name}.csv" for kind in ("precision_recall", "roc") for name in names)]
    written = np.round(probabilities, 6)  # as the predictions file holds them
    for column, name in enumerate(names):  # each class against the rest
        assert curve_file(curves / "roc" / f"validation_{name}.csv") == pytest.approx(
            roc_reference(labels == column, written[:, column]), abs=1e-6), name
    # Calibration: whether the predicted class was right, against its probability.
    assert curve_file(curves / "calibration" / "validation.csv") == pytest.approx(
        calibration_reference(labels == written.argmax(axis=1), written.max(axis=1)), abs=1e-6)
    # The confusion matrix's pairs: each example's label and prediction.
    assert [(row["label"], row["prediction"]) for row in read_csv(curves / "confusion" / "validation.csv")] == [
        (names[label], names[row.argmax()]) for label, row in zip(labels, probabilities, strict=True)]


def test_a_multi_label_tasks_curves_are_each_labels_and_its_calibration_every_yes_or_no(tmp_path, monkeypatch):
    from finetune.core.outputs import read_csv, write_csv
    from finetune.scoring.curves import write_curves

    monkeypatch.chdir(tmp_path)
    names = TAGS.label_names
    generator = np.random.default_rng(4)
    truth = generator.random((80, len(names))) < 0.3
    # Sure of some labels, unsure of others: decisions in every bin of confidence.
    probabilities = np.round(np.clip(truth * generator.random((80, 1)) + generator.random((80, len(names))) * 0.6, 0, 1), 6)
    (tmp_path / "metrics" / "predictions").mkdir(parents=True)
    write_csv(tmp_path / "metrics" / "predictions" / "validation.csv",
              ["idx", "label", "prediction", *(f"probability_{name}" for name in names)],
              [[index, json.dumps([name for name, flag in zip(names, flags, strict=True) if flag]),
                json.dumps([name for name, value in zip(names, row, strict=True) if value >= 0.5]),
                *(f"{value:.6f}" for value in row)]
               for index, (flags, row) in enumerate(zip(truth, probabilities, strict=True))])
    write_curves(TAGS, {"validation": read_csv(tmp_path / "metrics" / "predictions" / "validation.csv")})
    curves = tmp_path / "metrics" / "curves"
    for column, name in enumerate(names):  # each label's yes against its no
        assert curve_file(curves / "roc" / f"validation_{name}.csv") == pytest.approx(
            roc_reference(truth[:, column], probabilities[:, column]), abs=1e-6), name
    # Calibration over every (text, label) decision, 400 of them: yes at 0.5 or above, as sure as
    # its probability is far from 0.5, right when it is the text's.
    decisions = probabilities.ravel()
    calibration = curve_file(curves / "calibration" / "validation.csv")
    assert calibration == pytest.approx(calibration_reference((decisions >= 0.5) == truth.ravel(),
                                                              np.maximum(decisions, 1 - decisions)), abs=1e-6)
    assert calibration[:, -1].sum() == truth.size


def curve_file(path):
    """A curve's CSV file as the matrix of numbers it holds, a row per point."""
    from finetune.core.outputs import read_csv

    return np.array([[float(value) for value in row.values()] for row in read_csv(path)])


def roc_reference(truth, scores):
    """scikit-learn's ROC points (false positive rate, true positive rate, threshold), with the
    first threshold, its +inf, as 1: the file's."""
    from sklearn.metrics import roc_curve

    false_positive_rate, true_positive_rate, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    return np.stack([false_positive_rate, true_positive_rate, np.minimum(thresholds, 1.0)], axis=1)


def calibration_reference(correct, confidence, bins=10):
    """scikit-learn's calibration curve (equal-width bins), as rows of mean confidence, accuracy, the
    diagonal and the bin's examples (NumPy's histogram: the last bin holds 1)."""
    from sklearn.calibration import calibration_curve

    # scikit-learn puts a value on an edge in the bin below; the module in the bin above.
    assert not np.isin(np.round(confidence, 9), np.round(np.linspace(0, 1, bins + 1)[1:-1], 9)).any()
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    counts = np.histogram(confidence, bins=bins, range=(0, 1))[0]
    return np.stack([mean_confidence, accuracy, mean_confidence, counts[counts > 0]], axis=1)


def test_a_multi_label_confusion_pairs_each_label_with_none_where_it_was_missed_or_wrongly_given():
    from finetune.scoring.curves import confusion_rows

    task = own_data_task("tags", ["text"], ["art", "food", "news"], False, multi_label=True)
    rows = [{"label": '["art", "news"]', "prediction": '["art", "food"]'}, {"label": "[]", "prediction": "[]"},
            {"label": '["food"]', "prediction": "[]"}]
    assert confusion_rows(task, rows) == [("art", "art"), ("(none)", "food"), ("news", "(none)"), ("food", "(none)")]


def test_a_regression_has_no_curves(tmp_path, monkeypatch):
    from finetune.core.outputs import write_csv
    from finetune.scoring.curves import write_curves
    from stages.evaluate import _labelled_predictions

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics" / "predictions").mkdir(parents=True)
    write_csv(tmp_path / "metrics" / "predictions" / "validation.csv", ["idx", "label", "prediction"],
              [[0, "3.2", "2.9"], [1, "1.0", "1.4"]])
    labelled = _labelled_predictions(GLUE_TASKS["stsb"])  # scores, not classes: no per-class rows or curves
    assert labelled == {}
    write_curves(GLUE_TASKS["stsb"], labelled)
    assert [path.name for path in (tmp_path / "metrics" / "curves").iterdir()] == ["README.md"]
