"""The verdict on logged histories built to be clearly healthy, overfitting, underfitting or erratic."""

import math
import random

import pytest

from finetune.core.params import load_params
from finetune.core.tasks import GLUE_TASKS
from finetune.reporting.diagnosis import diagnose, explanation
from tests.conftest import PROJECT_ROOT

PARAMS = load_params(PROJECT_ROOT / "params.yaml")
MRPC = GLUE_TASKS["mrpc"]
BASELINE = 279 / 408  # MRPC validation: share of "equivalent"
STEPS = range(10, 1010, 10)
EVALUATION_STEPS = range(100, 1100, 100)


def train_rows(loss_at, noise=0.02, seed=0):
    generator = random.Random(seed)
    return [{"step": step, "train_loss": max(0.01, loss_at(step) + generator.gauss(0, noise))} for step in STEPS]


def evaluation_rows(validation_loss_at, validation_accuracy_at, train_accuracy_at):
    return [{"step": step, "validation_loss": validation_loss_at(step), "validation_accuracy": validation_accuracy_at(step),
             "train_subset_accuracy": train_accuracy_at(step)} for step in EVALUATION_STEPS]


def falling(start, end):
    return lambda step: end + (start - end) * math.exp(-step / 300)


HISTORIES = {
    "healthy": (
        train_rows(falling(0.65, 0.30)),
        evaluation_rows(falling(0.60, 0.40), lambda step: 0.70 + 0.12 * (1 - math.exp(-step / 300)),
                        lambda step: 0.72 + 0.16 * (1 - math.exp(-step / 300))),
    ),
    # Validation loss bottoms out at step 300 and climbs for the 7 evaluations after it,
    # while train loss keeps falling and train accuracy pulls away from validation.
    "overfitting": (
        train_rows(falling(0.65, 0.02), noise=0.005),
        evaluation_rows(lambda step: 0.45 + 0.0012 * abs(step - 300), lambda step: 0.80,
                        lambda step: min(1.0, 0.75 + step / 1000)),
    ),
    # Stuck at the majority class: accuracy equals the baseline throughout.
    "underfitting": (
        train_rows(lambda step: 0.63, noise=0.03),
        evaluation_rows(lambda step: 0.62, lambda step: BASELINE, lambda step: 0.675),
    ),
    # Train loss jumping between 0.2 and 1.2: lr far too high, yet above the baseline.
    "erratic": (
        [{"step": step, "train_loss": 0.2 if index % 2 else 1.2} for index, step in enumerate(STEPS)],
        evaluation_rows(lambda step: 0.60 + 0.1 * ((step // 100) % 2), lambda step: 0.74, lambda step: 0.76),
    ),
}


@pytest.mark.parametrize("expected", HISTORIES)
def test_each_clear_history_gets_its_verdict(expected):
    diagnosis = diagnose(MRPC, *HISTORIES[expected], BASELINE, PARAMS)
    assert diagnosis["verdict"] == expected, explanation(MRPC, diagnosis, PARAMS)
    assert explanation(MRPC, diagnosis, PARAMS).startswith(f"{expected}: ")


def test_diagnosis_metrics_are_numbers_and_the_verdict():
    # `dvc exp show` and `dvc metrics diff` print every key as a column: sentences belong to the report.
    diagnosis = diagnose(MRPC, *HISTORIES["healthy"], BASELINE, PARAMS)
    assert {key for key, value in diagnosis.items() if not isinstance(value, (int, float))} == {"verdict"}


def test_overfitting_evidence_names_the_minimum_and_the_rise():
    diagnosis = diagnose(MRPC, *HISTORIES["overfitting"], BASELINE, PARAMS)
    assert diagnosis["min_validation_loss_step"] == 300
    assert diagnosis["evaluations_after_min_loss"] == 7
    assert diagnosis["validation_loss_rise"] == pytest.approx((0.45 + 0.0012 * 700) / 0.45 - 1)
    assert diagnosis["accuracy_gap"] == pytest.approx(0.20)
    assert "rose 187% over the 7 evaluations after its minimum at step 300" in explanation(MRPC, diagnosis, PARAMS)


def test_thresholds_are_params():
    relaxed = PARAMS.__class__(**{**vars(PARAMS), "diagnose_loss_rise": 5.0})
    assert diagnose(MRPC, *HISTORIES["overfitting"], BASELINE, relaxed)["verdict"] == "healthy"


def test_a_regression_is_judged_against_predicting_the_mean():
    stsb = GLUE_TASKS["stsb"]
    mean_baseline_loss = 2.0  # the squared error of always predicting the train mean
    learnt = [{"step": step, "validation_loss": 1.0 - step / 2000, "validation_pearson": 0.8,
               "train_subset_pearson": 0.85} for step in EVALUATION_STEPS]
    stuck = [{**row, "validation_loss": 2.05, "validation_pearson": 0.01} for row in learnt]
    train = train_rows(falling(2.0, 0.8))
    diagnosis = diagnose(stsb, train, learnt, mean_baseline_loss, PARAMS)
    assert diagnosis["verdict"] == "healthy" and diagnosis["mean_baseline_loss"] == 2.0
    assert diagnosis["pearson_gap"] == pytest.approx(0.05)
    assert "below the squared error of predicting the train mean (2.000)" in explanation(stsb, diagnosis, PARAMS)
    diagnosis = diagnose(stsb, train, stuck, mean_baseline_loss, PARAMS)
    assert diagnosis["verdict"] == "underfitting", explanation(stsb, diagnosis, PARAMS)
