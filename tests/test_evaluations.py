"""How often train evaluates and on which rows (finetune/training/evaluations.py): counts on a
generated 50,000-row set, in seconds; the speed is docs/measurements.md's."""

import collections
import json

import datasets
import numpy as np
import pytest

from finetune.core.errors import PipelineError
from finetune.core.outputs import read_csv
from finetune.core.params import load_params, parse_params
from finetune.core.tasks import GLUE_TASKS, TRAIN_SUBSET, own_data_task
from finetune.data.loading import token_counts
from finetune.reporting.diagnosis import explanation
from finetune.training.evaluations import cadence, evaluation_sets, run_steps
from finetune.training.trainer import training_arguments
from tests.repos import write_params

PAIRS = own_data_task("pairs", ["question1", "question2"], ["different", "duplicate"], True)
SCORES = own_data_task("scores", ["text"], None, True)
TAGS = own_data_task("tags", ["text"], ["art", "food", "news"], True, multi_label=True)


def generated_split(rows, seed, task=PAIRS, duplicate_share=0.37):
    """A tokenized split as the tokenize stage writes it: token ids of random lengths, and labels
    (QQP's share of duplicates, a regression's scores or a multi-label task's multi-hot rows)."""
    generator = np.random.default_rng(seed)
    lengths = generator.integers(8, 64, size=rows)
    if task.regression:
        labels = generator.uniform(0, 5, size=rows).astype(np.float32).tolist()
    elif task.multi_label:
        labels = (generator.random((rows, task.num_labels)) < 0.3).astype(np.float32).tolist()
    else:
        labels = (generator.random(rows) < duplicate_share).astype(np.int64).tolist()
    return datasets.Dataset.from_dict({"input_ids": [[101] * length for length in lengths.tolist()],
                                       "labels": labels, "idx": list(range(rows))})


@pytest.fixture(scope="module")
def large_set():
    return datasets.DatasetDict({"train": generated_split(45_000, 0), "validation": generated_split(5_000, 1)})


def class_shares(split_data):
    counts = collections.Counter(split_data["labels"])
    return {label: count / len(split_data) for label, count in counts.items()}


def test_a_large_split_is_scored_on_a_fixed_stratified_sample_of_the_size_asked(large_set):
    sets, rows = evaluation_sets(PAIRS, large_set, sample_size=2000)
    assert rows == {TRAIN_SUBSET: {"rows": 2000, "of": 45_000}, "validation": {"rows": 2000, "of": 5_000}}
    assert {name: len(data) for name, data in sets.items()} == {TRAIN_SUBSET: 2000, "validation": 2000}
    for name, split in ((TRAIN_SUBSET, "train"), ("validation", "validation")):
        # Stratified: each class's share as in the split, to one row.
        expected, got = class_shares(large_set[split]), class_shares(sets[name])
        assert all(abs(got[label] - share) <= 1 / 2000 for label, share in expected.items()), (name, got, expected)
        lengths = token_counts(sets[name])
        assert (np.diff(lengths) >= 0).all()  # in length order: little padding
    # Fixed: the same rows in every run, whatever the run's seed.
    again, _ = evaluation_sets(PAIRS, large_set, sample_size=2000)
    assert again["validation"]["input_ids"] == sets["validation"]["input_ids"]
    assert evaluation_sets(PAIRS, large_set, sample_size=500)[1]["validation"] == {"rows": 500, "of": 5_000}


def test_a_split_no_larger_than_the_sample_is_scored_whole_as_mrpcs_validation(large_set):
    small = datasets.DatasetDict({"train": large_set["train"], "validation": generated_split(408, 2)})
    sets, rows = evaluation_sets(PAIRS, small, sample_size=2000)
    assert rows == {TRAIN_SUBSET: {"rows": 408, "of": 45_000}, "validation": {"rows": 408, "of": 408}}
    assert sorted(token_counts(sets["validation"])) == sorted(token_counts(small["validation"]))


@pytest.mark.parametrize("task", [SCORES, TAGS], ids=["regression", "multi-label"])
def test_a_regression_or_a_multi_label_task_is_sampled_too(task):
    data = datasets.DatasetDict({"train": generated_split(20_000, 3, task), "validation": generated_split(3_000, 4, task)})
    sets, rows = evaluation_sets(task, data, sample_size=1000)
    assert rows["validation"] == {"rows": 1000, "of": 3_000} and len(sets[TRAIN_SUBSET]) == 1000
    if task.regression:  # a regression's sample spans its labels' range as the split does
        assert np.mean(sets["validation"]["labels"]) == pytest.approx(np.mean(data["validation"]["labels"]), abs=0.1)


def params_with(tiny_params, **changes):
    return parse_params({**tiny_params, **changes})


@pytest.mark.parametrize(("train_rows", "changes", "expected"), [
    (3_668, {"epochs": 3}, (50, 50)),  # MRPC: every 50 steps, as before auto
    (363_846, {"epochs": 3}, (1706, 1706)),  # QQP: 34,113 steps, 20 evaluations
    (363_846, {"max_steps": 300}, (50, 50)),
    (363_846, {"epochs": 3, "eval_steps": 100, "save_steps": 500}, (100, 500)),  # as written
    (363_846, {"epochs": 3, "save_steps": 250}, (1706, 250)),
], ids=["mrpc", "qqp", "qqp-300-steps", "fixed", "fixed-checkpoints"])
def test_auto_evaluates_at_most_twenty_times_at_least_fifty_steps_apart(tiny_params, train_rows, changes, expected):
    params = params_with(tiny_params, **{"train_batch_size": 32, "eval_steps": "auto", "save_steps": "auto",
                                         "max_steps": -1, **changes})
    steps = run_steps(params, train_rows)
    assert cadence(params, steps) == expected
    every = expected[0]
    evaluations = steps // every + (steps % every > 0)  # and one at the end
    assert evaluations <= 20 or "eval_steps" in changes


def test_trainer_gets_the_resolved_cadence(tiny_params, tmp_path):
    params = params_with(tiny_params, train_batch_size=32, epochs=3, max_steps=-1, eval_steps="auto", save_steps="auto")
    arguments = training_arguments(params, GLUE_TASKS["qqp"], str(tmp_path), train_rows=363_846)
    assert (arguments.eval_steps, arguments.save_steps) == (1706, 1706)


def test_checkpoints_between_auto_evaluations_stop_early_stopping_with_one_line(tiny_params):
    params = params_with(tiny_params, train_batch_size=32, epochs=3, max_steps=-1, eval_steps="auto", save_steps=250,
                         early_stopping_patience=2)
    with pytest.raises(PipelineError, match=r"save_steps must be a multiple of eval_steps \(1706 for this run's 34113 "
                                            r"steps\) with early stopping.*got 250"):
        cadence(params, run_steps(params, 363_846))


@pytest.mark.slow
def test_a_run_on_50000_pairs_evaluates_on_capped_samples_and_says_so(project, tiny_params, capsys):
    """The stages on generated QQP-shaped pairs (finetune bench --scale's): 120 steps evaluate every 50
    (and at the end) on 300-row samples; evaluate then scores all of validation."""
    from finetune.commands.scale_bench import generate_pairs
    from stages import diagnose, download, evaluate, tokenize, train

    generate_pairs(project / "pairs", 50_000, ["alpha", "beta", "gamma", "delta", "river", "stone", "light"],
                   validation_rows=5_000, test_rows=200)
    write_params(project, tiny_params, dataset="pairs", text_columns=["question1", "question2"],
                 label_column="is_duplicate", max_steps=120, eval_steps="auto", save_steps="auto",
                 eval_sample_size=300, bootstrap_resamples=200)
    for stage in (download, tokenize, train, evaluate, diagnose):
        stage.main()
    assert "train: evaluating every 50 steps on train_subset 300 of 50000 rows, validation 300 of 5000 rows" in (
        capsys.readouterr().out)
    assert [row["step"] for row in read_csv(project / "metrics" / "history" / "evaluations.csv")] == ["50", "100", "120"]
    assert json.loads((project / "metrics" / "history" / "evaluated_rows.json").read_text()) == {
        TRAIN_SUBSET: {"rows": 300, "of": 50_000}, "validation": {"rows": 300, "of": 5_000}}
    assert len(read_csv(project / "metrics" / "predictions" / "validation.csv")) == 5_000
    diagnosis = json.loads((project / "metrics" / "diagnosis.json").read_text())
    assert (diagnosis["curves_validation_rows"], diagnosis["validation_rows"]) == (300, 5_000)
    assert explanation(PAIRS, diagnosis, load_params()).endswith(
        "(curves of a stratified sample of 300 of validation's 5,000 rows)")
