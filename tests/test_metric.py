import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from finetune.scores import mrpc_metrics


@pytest.mark.parametrize("seed", range(5))
def test_mrpc_metric_matches_scikit_learn(seed):
    generator = np.random.default_rng(seed)
    references = generator.integers(0, 2, size=200)
    predictions = np.where(generator.random(200) < 0.8, references, 1 - references)
    scores = mrpc_metrics(predictions, references)
    assert scores["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert scores["f1"] == pytest.approx(f1_score(references, predictions))


def test_f1_without_any_positive_is_zero_like_scikit_learn():
    predictions, references = [0, 0, 0], [0, 0, 0]
    assert mrpc_metrics(predictions, references) == {"accuracy": 1.0, "f1": 0.0}
    assert f1_score(references, predictions, zero_division=0.0) == 0.0


def test_bootstrap_intervals_match_a_scikit_learn_reference():
    from finetune.scores import bootstrap_intervals

    generator = np.random.default_rng(7)
    references = generator.integers(0, 2, size=60)
    predictions = np.where(generator.random(60) < 0.75, references, 1 - references)
    losses = generator.random(60)
    intervals = bootstrap_intervals(predictions, references, losses, resamples=300, seed=3)

    # The same resamples, drawn one by one and scored by scikit-learn.
    replay = np.random.default_rng(3).integers(0, 60, size=(300, 60))
    reference_scores = {
        "accuracy": [accuracy_score(references[rows], predictions[rows]) for rows in replay],
        "f1": [f1_score(references[rows], predictions[rows], zero_division=0.0) for rows in replay],
        "loss": [losses[rows].mean() for rows in replay],
    }
    for name, samples in reference_scores.items():
        assert intervals[name] == pytest.approx(tuple(np.percentile(samples, [2.5, 97.5])))


def test_bootstrap_intervals_are_stable_to_the_third_decimal_with_the_default_resamples():
    import yaml

    from finetune.scores import bootstrap_intervals
    from tests.conftest import PROJECT_ROOT

    resamples = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["bootstrap_resamples"]
    generator = np.random.default_rng(11)
    references = generator.integers(0, 2, size=408)  # MRPC validation size
    predictions = np.where(generator.random(408) < 0.8, references, 1 - references)
    losses = generator.random(408)
    by_seed = [bootstrap_intervals(predictions, references, losses, resamples, seed) for seed in range(3)]
    for name in ("accuracy", "f1", "loss"):
        bounds = np.array([intervals[name] for intervals in by_seed])
        assert np.ptp(bounds, axis=0).max() < 0.001  # different resampling seeds agree to the third decimal
