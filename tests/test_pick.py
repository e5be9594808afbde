"""`finetune pick` in-process, on runs made up here (params, metrics, predictions): which metric
ranks them, which runs count, which seeds and params confirm a winner, and when --promote stops
before it changes anything. tests/test_pick_e2e.py drives the real thing."""

import dataclasses

import numpy as np
import pytest

from finetune.commands.cli import main as cli
from finetune.core.errors import PipelineError
from finetune.core.params import load_params
from finetune.tune import pick as pick_module
from finetune.tune.compare import group_runs
from finetune.tune.pick import Pick, candidate_runs, pick, plan, promote
from tests.repos import PROJECT_ROOT

PARAMS = {**dataclasses.asdict(load_params(PROJECT_ROOT / "params.yaml")), "text_columns": []}
NAMES = ("not_equivalent", "equivalent")
LABELS = np.random.default_rng(7).integers(0, 2, 120).tolist()


@dataclasses.dataclass(eq=False)
class RecordedRun:
    """A run as pick reads it from Git: params.yaml, evaluation.json, train.json, predictions."""
    name: str | None  # None: the commit's own run
    params: dict
    evaluation: dict
    training: dict
    rows: dict  # {split: prediction rows}

    @property
    def label(self):
        return self.name or "commit 1234567"

    def predictions(self, split):
        return self.rows.get(split)


def prediction_rows(accuracy, seed, labelled=True):
    """MRPC prediction rows of LABELS, `accuracy` of them right (which ones: by `seed`)."""
    right = np.random.default_rng(seed).random(len(LABELS)) < accuracy
    return [{"idx": str(index), "label": NAMES[label] if labelled else "", "prediction": NAMES[label if ok else 1 - label]}
            for index, (label, ok) in enumerate(zip(LABELS, right, strict=True))]


def recorded(name, seed=42, accuracy=0.7, scores=None, trial="", pruned=False, test_labels=True, **changes):
    """A run of the project's params with `changes`: validation (and, but for a trial, test)
    predictions `accuracy` right; evaluation.json: `accuracy` as each split's accuracy and F1, but `scores`."""
    rows = {"validation": prediction_rows(accuracy, seed)}
    if not trial:  # a trial scores validation only
        rows["test"] = prediction_rows(accuracy, seed + 1000, test_labels)
    training = {"trial_state": "pruned" if pruned else "complete"} if trial else {}
    evaluation = {f"{split}_{metric}": accuracy for split in rows for metric in ("accuracy", "f1")}
    return RecordedRun(name, {**PARAMS, **changes, "seed": seed, "trial": trial}, {**evaluation, **(scores or {})},
                       training, rows)


def test_runs_are_ranked_by_the_metric_the_study_optimised():
    # `steady` is the more accurate, `bold` has the better F1, MRPC's main metric.
    def ranked_by(metric):
        steady = recorded("steady", accuracy=0.85, scores={"validation_f1": 0.80}, lr=2e-4, best_model_metric=metric)
        bold = recorded("bold", accuracy=0.80, scores={"validation_f1": 0.88}, lr=3e-4, best_model_metric=metric)
        base = recorded(None, accuracy=0.6, scores={"validation_f1": 0.6}, best_model_metric=metric)
        chosen = pick([steady, bold], [base])
        return chosen.key, chosen.comparison.key, [group.runs[0].name for group in chosen.groups]

    assert ranked_by("auto") == ("validation_f1", "validation_f1", ["bold", "steady"])
    assert ranked_by("accuracy") == ("validation_accuracy", "validation_accuracy", ["steady", "bold"])


def test_a_study_of_the_loss_is_ranked_by_it_and_compared_on_the_main_metric():
    low_loss = recorded("low-loss", accuracy=0.80, scores={"validation_f1": 0.80, "validation_loss": 0.40}, lr=2e-4,
                        best_model_metric="loss")
    high_loss = recorded("high-loss", accuracy=0.85, scores={"validation_f1": 0.88, "validation_loss": 0.60}, lr=3e-4,
                         best_model_metric="loss")
    base = recorded(None, accuracy=0.6, scores={"validation_f1": 0.6, "validation_loss": 0.7}, best_model_metric="loss")
    chosen = pick([high_loss, low_loss], [base])
    assert chosen.key == "validation_loss" and [group.runs for group in chosen.groups] == [[low_loss], [high_loss]]
    # Predictions cannot score a loss: the paired bootstrap is on F1, and says so.
    assert chosen.comparison.key == "validation_f1"
    assert chosen.comparison.sentence().endswith("; ranked by validation_loss, the metric the study optimised, which "
                                                 "predictions cannot score: compared on the task's main metric")
    assert "| validation_loss | validation_f1 |" in pick_module.table(chosen)[0]


def test_pruned_trials_never_enter_pick(monkeypatch, capsys):
    complete = recorded("s-0", trial="s/0", lr=2e-4)
    pruned = recorded("s-1", trial="s/1", pruned=True, lr=3e-4)
    monkeypatch.setattr(pick_module, "head", lambda: "0" * 40)
    monkeypatch.setattr(pick_module, "experiments", lambda baseline=None: {"s-0": complete, "s-1": pruned})
    assert candidate_runs(names=["s-1", "s-0"]) == [complete]
    assert capsys.readouterr().out == "pick: skipping pruned trial(s), stopped before the end: s-1\n"
    assert candidate_runs(study="s") == [complete]
    with pytest.raises(PipelineError, match=r"^pick: every experiment named is a pruned trial \(s-1\): name complete"):
        candidate_runs(names=["s-1"])


def test_a_seed_run_twice_counts_once():
    trial = recorded("s-3", trial="s/3", lr=2e-4)
    plain = recorded("plain", lr=2e-4)  # the trial's params and seed, run in full
    again = recorded("again", lr=2e-4)  # the same once more
    other = recorded("other", seed=1, lr=2e-4)
    (group,) = group_runs([trial, plain, other, again])
    assert group.runs == [plain, other] and group.seeds == [1, 42]


def test_confirmation_seeds_are_fresh_and_the_runs_start_from_heads_params():
    winner = group_runs([recorded("s-0", trial="s/0", lr=3e-4, dropout=0.1),
                         recorded("w", seed=3, lr=3e-4, dropout=0.1)])[0]
    # --baseline named: another lr than HEAD's params.yaml (1e-4), which every run starts from. A
    # confirmation run of an earlier --promote chose nothing: its seed is free, and it is reused.
    (baseline,) = group_runs([recorded("named", lr=2e-4), recorded("named-1", seed=1, lr=2e-4),
                              recorded("pick-lr0.0002-seed2", seed=2, lr=2e-4)])
    seeds, (winner_runs, baseline_runs) = plan(Pick("validation_f1", [winner], baseline, None), 3, {**PARAMS, "seed": 42})
    assert seeds == [2, 4, 5]
    assert winner_runs == {f"pick-dropout0.1-lr0.0003-seed{seed}": {"dropout": 0.1, "lr": 3e-4, "seed": seed, "trial": ""}
                           for seed in seeds}
    assert baseline_runs == {f"pick-lr0.0002-seed{seed}": {"lr": 2e-4, "seed": seed, "trial": ""} for seed in seeds}


def ran(name, changes, accuracy=0.6):
    """The run `dvc exp run -S` makes of `changes` to the project's params."""
    return recorded(name, changes["seed"], accuracy, trial=changes["trial"],
                    **{key: value for key, value in changes.items() if key not in ("seed", "trial")})


@pytest.fixture
def confirmation(monkeypatch):
    """promote() without Git or DVC: a clean work tree, HEAD's run of the project's params, and
    experiments that run instantly (lr 3e-4 90% right, anything else 60%); {"evidence": ...} once
    registered."""
    registered = {}
    monkeypatch.setattr(pick_module, "uncommitted_changes", lambda: [])
    monkeypatch.setattr(pick_module, "head", lambda: "0" * 40)
    monkeypatch.setattr(pick_module, "Run", lambda name, rev: recorded(None))
    monkeypatch.setattr(pick_module, "run_experiments", lambda planned, jobs, log_dir: {
        name: ran(name, changes, 0.9 if changes.get("lr") == 3e-4 else 0.6) for name, changes in planned.items()})
    monkeypatch.setattr(pick_module, "register", lambda name, evidence, *rest: registered.update(
        name=name, evidence=evidence) or "text-classifier@v1.0.0")
    return registered


def test_a_promotion_confirms_on_fresh_seeds_and_test_and_promotes_the_first_seeds_run(confirmation, capsys):
    chosen = pick([recorded("s-0", trial="s/0", accuracy=0.9, lr=3e-4)], [recorded(None)])
    final, confirmed, tag = promote(chosen, 2, 1)
    assert confirmed == ("confirmed on seeds 1, 2 (not 42, the seed the winner was chosen with) on test, examples "
                         "that did not choose it")
    assert final.comparison.key == "test_f1" and final.comparison.beyond_noise and tag == "text-classifier@v1.0.0"
    evidence = confirmation["evidence"]
    assert confirmation["name"] == evidence["experiment"] == "pick-lr0.0003-seed1"
    assert (evidence["seeds"], evidence["confirmed_on"], evidence["metric"]) == ([1, 2], "test", "test_f1")
    assert evidence["sentence"].endswith(f"better beyond noise; {confirmed}")
    assert f"pick: {confirmed}: test_f1 +" in capsys.readouterr().out


def test_promote_without_test_labels_stops_before_running_anything(confirmation, monkeypatch):
    monkeypatch.setattr(pick_module, "run_experiments", lambda *arguments: pytest.fail("ran experiments"))
    chosen = pick([recorded("w", accuracy=0.9, test_labels=False, lr=3e-4)], [recorded(None, test_labels=False)])
    with pytest.raises(PipelineError) as stopped:
        promote(chosen, 2, 1)
    assert str(stopped.value) == ("pick --promote: test has no labels to confirm on: pass --confirm-on validation to "
                                  "confirm over fresh seeds on the validation examples that chose the winner (biased "
                                  "upward)")


def test_promote_on_validation_says_it_is_biased(confirmation):
    chosen = pick([recorded("w", accuracy=0.9, test_labels=False, lr=3e-4)], [recorded(None, test_labels=False)])
    final, confirmed, _ = promote(chosen, 2, 1, confirm_on="validation")
    assert final.comparison.key == "validation_f1" and confirmation["evidence"]["confirmed_on"] == "validation"
    assert confirmed.endswith("on validation, the examples that chose it (biased upward)")


def test_a_side_that_ran_other_params_stops_the_promotion(confirmation, monkeypatch):
    # What `dvc exp run` did when the changes were relative to the named baseline's params, not
    # HEAD's: its runs ran HEAD's lr.
    monkeypatch.setattr(pick_module, "run_experiments", lambda planned, jobs, log_dir: {
        name: ran(name, {key: value for key, value in changes.items() if value != 2e-4})
        for name, changes in planned.items()})
    chosen = pick([recorded("w", accuracy=0.9, lr=3e-4)], [recorded("named", lr=2e-4)])
    with pytest.raises(PipelineError) as stopped:
        promote(chosen, 2, 1)
    assert str(stopped.value) == ("pick --promote: the baseline has no run of its own params on seeds 1, 2 "
                                  "(pick-lr0.0002-seed1 ran other params): nothing promoted")
    assert "evidence" not in confirmation


def test_promote_over_one_seed_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no repository: refused before anything is read
    with pytest.raises(SystemExit) as stopped:
        cli(["pick", "--exps", "good", "--promote", "--seeds", "1"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err == ("error: pick --promote: --seeds 1: give 2 or more: with one run a side a "
                                       "comparison measures example noise only, and a lucky seed passes it\n")
