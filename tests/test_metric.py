import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from stages.model import mrpc_metrics


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
