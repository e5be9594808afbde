"""Each task's metrics (finetune/scores.py, through the project's `evaluate` module) against
scikit-learn and SciPy, and the bootstrap intervals against a one-by-one replay."""

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from finetune.core.tasks import GLUE_TASKS, own_data_task
from finetune.scoring.scores import bootstrap_intervals, task_metrics

REFERENCE = {
    "accuracy": accuracy_score,
    "f1": lambda true, predicted: f1_score(true, predicted, zero_division=0.0),
    "macro_f1": lambda true, predicted: f1_score(true, predicted, average="macro", zero_division=0.0),
    "matthews_correlation": matthews_corrcoef,
    "pearson": lambda true, predicted: scipy.stats.pearsonr(true, predicted)[0],
    "spearmanr": lambda true, predicted: scipy.stats.spearmanr(true, predicted)[0],
}
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
    assert task_metrics(GLUE_TASKS["mrpc"], [0, 0, 0], [0, 0, 0]) == {"accuracy": 1.0, "f1": 0.0}
    assert task_metrics(GLUE_TASKS["cola"], [1, 1, 1], [1, 0, 1]) == {"matthews_correlation": 0.0}


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
