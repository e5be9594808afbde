"""The tuning loop in-process: the search space file, the remedy table, the paired comparison, the
commands' bad input, and a search trial's stages (reporting to its study, pruned, scored)."""

import dataclasses
import json
import subprocess

import numpy as np
import optuna
import pytest

from finetune.commands.cli import main as cli
from finetune.core.params import load_params, parse_params
from finetune.core.tasks import GLUE_TASKS
from finetune.reporting.diagnosis import diagnose
from finetune.reporting.remedies import remedies
from finetune.training.pruning import PRUNER_ATTRIBUTE, STORAGE_VARIABLE
from finetune.tune.compare import Group, compare
from finetune.tune.space import load_space
from stages import diagnose as diagnose_stage
from stages import download, evaluate, plot, publish, tokenize, train
from tests.repos import PROJECT_ROOT, write_params
from tests.test_diagnose import BASELINE, HISTORIES, MRPC, PARAMS

GOOD_SPACE = """
lr: {low: 1.0e-5, high: 3.0e-4, log: true}
epochs: {low: 2, high: 5}
warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}
train_batch_size: {choices: [16, 32, 64]}
"""


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A Git repository with the project's params.yaml as the working directory."""
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    commit_all(tmp_path)
    return tmp_path


def commit_all(folder):
    """Commits every file of `folder`: a search reads its space and params from the commit its trials run."""
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=test", "-c", "user.email=test@example.com",
                                                     "commit", "-q", "--allow-empty", "-m", "files"]):
        subprocess.run(["git", *command], cwd=folder, check=True, capture_output=True)


def write_space(folder, text):
    (folder / "search.yaml").write_text(text)
    commit_all(folder)


def test_the_search_space_file_gives_typed_dimensions(in_project):
    (in_project / "search.yaml").write_text(GOOD_SPACE)
    space = {dimension.name: dimension for dimension in load_space("search.yaml")}
    assert space["lr"].log and (space["lr"].low, space["lr"].high) == (1e-5, 3e-4)
    assert space["train_batch_size"].choices == (16, 32, 64)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        values = {name: dimension.suggest(trial) for name, dimension in space.items()}
        assert 1e-5 <= values["lr"] <= 3e-4 and values["train_batch_size"] in (16, 32, 64)
        assert values["epochs"] in (2.0, 3.0, 4.0, 5.0) and isinstance(values["epochs"], float)
        assert round(values["warmup_ratio"] / 0.05, 6).is_integer()
        # Each value is one params.yaml takes.
        parse_params({**yaml_params(), **values})


def yaml_params():
    params = dataclasses.asdict(load_params(PROJECT_ROOT / "params.yaml"))
    return {**params, "text_columns": list(params["text_columns"])}


BAD_SPACES = [
    ("unknown-key", "learning_rate: {low: 1.0e-5, high: 1.0e-3}",
     "search.yaml: unknown key 'learning_rate': not a params.yaml key (known keys: dataset, "),
    ("empty", "", "search.yaml: the search space is empty: name at least one params.yaml key"),
    ("low-above-high", "lr: {low: 1.0e-3, high: 1.0e-5}",
     "search.yaml: lr: low must be below high, got low 0.001 and high 1e-05"),
    ("log-from-zero", "warmup_ratio: {low: 0.0, high: 0.2, log: true}",
     "search.yaml: warmup_ratio: log must be true or false, and a log scale needs low > 0, got "),
    ("fraction-for-an-integer", "train_batch_size: {low: 8.5, high: 64}",
     "search.yaml: train_batch_size takes integers: low, high and step must be whole, got "),
    ("choice-of-a-wrong-type", "lr: {choices: [1.0e-4, fast]}",
     "search.yaml: lr: 'fast' is not a value params.yaml takes (search space: lr must be a number, got 'fast')"),
    ("out-of-range", "dropout: {low: 0.0, high: 1.0}",
     "search.yaml: dropout: 1.0 is not a value params.yaml takes (search space: dropout must be in [0, 1), got 1.0)"),
    ("range-of-a-flag", "freeze_embeddings: {low: 0, high: 1}",
     "search.yaml: freeze_embeddings is not a number (bool): give it choices, not a range"),
    ("the-trial-itself", "trial: {choices: [a/1]}", "search.yaml: trial cannot be searched: it is set by the search"),
    ("missing-bound", "lr: {low: 1.0e-5}", "search.yaml: lr: a range needs low and high, got {'low': 1e-05}"),
]


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in BAD_SPACES], ids=[case[0] for case in BAD_SPACES])
def test_a_bad_search_space_stops_the_search_before_any_trial(in_project, capsys, text, message):
    write_space(in_project, text + "\n")
    with pytest.raises(SystemExit) as stopped:
        cli(["search", "--study", "s", "--trials", "3"])
    error = capsys.readouterr().err
    assert stopped.value.code == 1 and error.count("\n") == 1
    assert error.startswith(f"error: {message}"), error
    assert not (in_project / "tuning" / "s").exists()  # no trial ran, no report


@pytest.mark.parametrize(("arguments", "message"), [
    (["--trials", "0"], "error: search: --trials must be > 0, got 0"),
    ([], "error: search: give a budget: --trials N (finished trials) and/or --timeout (wall time)"),
    (["--trials", "2", "--study", "two words"], "error: search: --study 'two words': use letters, digits,"),
    (["--trials", "2", "--storage", "postgresql://tuner:secret@127.0.0.1:9/studies"],
     "error: study storage postgresql://tuner@127.0.0.1:9/studies is unreachable ("),
])
def test_a_bad_budget_name_or_storage_stops_with_one_line(in_project, capsys, arguments, message):
    write_space(in_project, GOOD_SPACE)
    with pytest.raises(SystemExit) as stopped:
        cli(["search", "--study", "s", *arguments] if "--study" not in arguments else ["search", *arguments])
    error = capsys.readouterr().err
    assert stopped.value.code == 1 and error.startswith(message) and error.count("\n") == 1, error
    assert "secret" not in error  # a storage URL's password is never shown


def test_a_wall_time_of_zero_is_refused(in_project, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli(["search", "--study", "s", "--timeout", "0"])
    assert stopped.value.code == 2 and "a wall time > 0 in seconds, or like 90m or 1h, got '0'" in capsys.readouterr().err


def test_every_subcommand_explains_itself(capsys):
    for command in ("remedies", "search", "pick", "study-report", "seeds", "bench", "plots-template"):
        with pytest.raises(SystemExit) as stopped:
            cli([command, "--help"])
        assert stopped.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: finetune {command}")


REMEDY_EVIDENCE = {verdict: diagnose(MRPC, *history, BASELINE, PARAMS) for verdict, history in HISTORIES.items()}


def test_overfitting_gets_stopping_where_validation_loss_was_lowest_and_regularisation():
    found = {remedy.name: remedy for remedy in remedies(MRPC, REMEDY_EVIDENCE["overfitting"], PARAMS, 1000)}
    assert list(found) == ["stop-at-best", "early-stopping", "weight-decay", "dropout"]
    assert found["stop-at-best"].changes == {"max_steps": 300}
    assert "validation loss was lowest at step 300 of 1000, then rose 187%" in found["stop-at-best"].why
    assert found["early-stopping"].changes == {"early_stopping_patience": 2}  # save_steps 50 is a multiple of 50
    assert found["weight-decay"].changes == {"weight_decay": 0.1}
    assert found["dropout"].command() == "dvc exp run -S dropout=0.1"


def test_underfitting_gets_a_higher_rate_more_epochs_and_the_embeddings():
    found = remedies(MRPC, REMEDY_EVIDENCE["underfitting"], PARAMS, 345)
    assert [(remedy.name, remedy.changes) for remedy in found] == [
        ("higher-lr", {"lr": 0.0003}), ("more-epochs", {"epochs": 6.0}), ("train-embeddings", {"freeze_embeddings": False})]
    assert "validation accuracy never got far above the majority's (0.684 against 0.684)" in found[0].why


def test_erratic_gets_a_lower_rate_warm_up_and_a_larger_batch_with_the_rate_scaled():
    found = remedies(MRPC, REMEDY_EVIDENCE["erratic"], PARAMS, 1000)
    assert [(remedy.name, remedy.changes) for remedy in found] == [
        ("lower-lr", {"lr": 3.33e-05}), ("warm-up", {"warmup_ratio": 0.1}),
        ("larger-batch", {"train_batch_size": 64, "lr": 0.000141})]


def test_a_healthy_run_has_nothing_to_fix_and_the_command_points_to_the_search(in_project, capsys):
    assert remedies(MRPC, REMEDY_EVIDENCE["healthy"], PARAMS, 1000) == []
    (in_project / "metrics").mkdir()
    (in_project / "metrics" / "diagnosis.json").write_text(json.dumps(REMEDY_EVIDENCE["healthy"]))
    (in_project / "metrics" / "train.json").write_text(json.dumps({"trained_steps": 1000}))
    cli(["remedies"])
    output = capsys.readouterr().out
    assert "remedies: the workspace: healthy: validation accuracy" in output
    assert "remedies: nothing to fix. To tune what is sound: finetune search --help" in output


@dataclasses.dataclass(frozen=True)
class FakeRun:
    label: str
    seed: int
    rows: tuple

    @property
    def params(self):
        return {"seed": self.seed}

    def predictions(self, split):
        return [{"idx": str(index), "label": label, "prediction": prediction}
                for index, (label, prediction) in enumerate(self.rows)]


def runs_with_accuracy(labels, accuracies, seed=0):
    """Runs on `labels` that get `accuracy` of them right (each run other examples)."""
    generator = np.random.default_rng(seed)
    names = ("not_equivalent", "equivalent")
    runs = []
    for number, accuracy in enumerate(accuracies):
        right = generator.random(len(labels)) < accuracy
        rows = tuple((names[label], names[label if ok else 1 - label]) for label, ok in zip(labels, right, strict=True))
        runs.append(FakeRun(f"run{number}", number, rows))
    return runs


LABELS = np.random.default_rng(7).integers(0, 2, 408).tolist()


def test_a_clear_gain_is_a_winner_beyond_noise():
    candidate = Group({}, runs_with_accuracy(LABELS, [0.90, 0.91, 0.89], seed=1))
    baseline = Group({}, runs_with_accuracy(LABELS, [0.75, 0.76, 0.74], seed=2))
    comparison = compare(GLUE_TASKS["mrpc"], candidate, baseline, "validation", "accuracy", resamples=2000)
    assert comparison.difference == pytest.approx(0.15, abs=0.03)
    assert 0 < comparison.low < comparison.difference < comparison.high and comparison.beyond_noise
    assert comparison.sentence().endswith("better beyond noise")
    assert "over 408 examples and 3 + 3 runs" in comparison.sentence()


def test_a_gain_inside_the_seed_noise_is_no_winner():
    # One seed of the candidate is much better, the others are not: the mean is higher, the
    # interval (runs resampled too) still holds 0.
    candidate = Group({}, runs_with_accuracy(LABELS, [0.80, 0.72, 0.74], seed=3))
    baseline = Group({}, runs_with_accuracy(LABELS, [0.74, 0.75, 0.73], seed=4))
    comparison = compare(GLUE_TASKS["mrpc"], candidate, baseline, "validation", "accuracy", resamples=2000)
    assert comparison.difference > 0 and comparison.low < 0 < comparison.high and not comparison.beyond_noise
    assert comparison.sentence().endswith("no winner beyond noise (the interval contains 0)")


def test_one_run_against_one_is_better_on_these_examples_only():
    # A clear gain, but one seed a side: the interval holds the examples' noise, not the seeds'.
    candidate = Group({}, runs_with_accuracy(LABELS, [0.90], seed=1))
    baseline = Group({}, runs_with_accuracy(LABELS, [0.75], seed=2))
    comparison = compare(GLUE_TASKS["mrpc"], candidate, baseline, "validation", "accuracy", resamples=2000)
    assert comparison.low > 0 and not comparison.beyond_noise
    assert comparison.sentence().endswith("and 1 + 1 runs): better on these examples (one seed each: example noise only)")
    several = Group({}, runs_with_accuracy(LABELS, [0.90, 0.91], seed=1))
    comparison = compare(GLUE_TASKS["mrpc"], several, baseline, "validation", "accuracy", resamples=2000)
    assert not comparison.beyond_noise
    assert comparison.sentence().endswith("better on these examples (one seed of the baseline: example noise only)")


def test_identical_predictions_differ_by_nothing():
    runs = runs_with_accuracy(LABELS, [0.8])
    comparison = compare(GLUE_TASKS["mrpc"], Group({}, runs), Group({}, runs), "validation", "f1", resamples=500)
    assert (comparison.difference, comparison.low, comparison.high) == (0.0, 0.0, 0.0)


def make_study(storage_url, name, pruner, previous=()):
    """A study as `finetune search` makes it, with finished trials of these {examples seen: value} curves."""
    study = optuna.create_study(study_name=name, storage=storage_url, direction="maximize")
    study.set_user_attr(PRUNER_ATTRIBUTE, pruner)
    for curve in previous:
        study.add_trial(optuna.trial.create_trial(value=max(curve.values()), intermediate_values=curve,
                                                  params={}, distributions={}))
    return study


def test_a_trial_reports_to_its_study_and_is_pruned_below_the_median(project, tiny_params, monkeypatch, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make_study(storage, "tiny", {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                       previous=[{32: 1.0, 64: 1.0, 96: 1.0}])
    trial = study.ask()
    monkeypatch.setenv(STORAGE_VARIABLE, storage)
    write_params(project, tiny_params, trial=f"tiny/{trial.number}")
    for stage in (download, tokenize, train, evaluate, diagnose_stage, plot, publish):
        stage.main()
    # Below the finished trial's 1.0 at the first evaluation (step 4, 32 examples of batch 8): pruned there.
    training = json.loads((project / "metrics" / "train.json").read_text())
    assert training["trial_state"] == "pruned" and training["trained_steps"] == 4
    reported = study.trials[-1].intermediate_values
    assert list(reported) == [32] and reported[32] < 1.0
    evaluations = (project / "metrics" / "history" / "evaluations.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in evaluations[1:]] == ["4"]  # its curves so far, kept
    # No weights; validation scored by train, published by evaluate, without test or intervals.
    assert not (project / "trained_model" / "model.safetensors").exists()
    evaluation = json.loads((project / "metrics" / "evaluation.json").read_text())
    assert sorted(evaluation) == ["validation_accuracy", "validation_balanced_accuracy", "validation_f1",
                                  "validation_loss", "validation_macro_f1"]
    assert evaluation["validation_f1"] == pytest.approx(reported[32], abs=1e-6)
    assert sorted(path.name for path in (project / "metrics" / "predictions").iterdir()) == ["validation.csv"]
    assert "Trial `tiny/1` of `finetune search` (pruned by the study)" in (project / "models" / "README.md").read_text()
    assert list((project / "metrics" / "report" / "figures").iterdir()) == []


def test_a_trial_above_the_median_completes(project, tiny_params, monkeypatch, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make_study(storage, "tiny", {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                       previous=[{32: -1.0, 64: -1.0, 96: -1.0}])
    trial = study.ask()
    monkeypatch.setenv(STORAGE_VARIABLE, storage)
    write_params(project, tiny_params, trial=f"tiny/{trial.number}")
    for stage in (download, tokenize, train, evaluate):
        stage.main()
    training = json.loads((project / "metrics" / "train.json").read_text())
    assert training["trial_state"] == "complete" and training["trained_steps"] == 12
    assert list(study.trials[-1].intermediate_values) == [32, 64, 96]  # the examples seen at steps 4, 8, 12


def test_a_trial_without_its_storage_says_what_to_set(project, tiny_params, monkeypatch, capsys):
    monkeypatch.delenv(STORAGE_VARIABLE, raising=False)
    write_params(project, tiny_params, trial="tiny/3")
    download.main()
    tokenize.main()
    with pytest.raises(SystemExit):
        train_stage_entry()
    assert capsys.readouterr().err == ("error: params.yaml: trial 'tiny/3' reports to its study: set "
                                       "FINETUNE_STUDY_STORAGE to the study's storage URL (`finetune search` does)\n")
    assert not (project / "trained_model").exists()


def train_stage_entry():
    from finetune.core.errors import run_stage

    run_stage(train.main)


def _draw_reports(storage, folder, times):
    from finetune.tune.study_report import write_study_report
    study = optuna.load_study(study_name="shared", storage=storage)
    for _ in range(times):
        write_study_report(study, folder)


@pytest.mark.slow
def test_workers_drawing_one_study_report_at_once_each_leave_it_whole(tmp_path):
    # Search workers in one folder finish at about the same time and each draws the report.
    import multiprocessing
    from pathlib import Path
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    for value, (lr, batch) in enumerate([(1e-5, 8), (3e-5, 16), (1e-4, 8)]):
        study.enqueue_trial({"lr": lr, "batch": batch})
        study.optimize(lambda trial, value=value: value + trial.suggest_float("lr", 1e-6, 1e-3, log=True)
                       + trial.suggest_categorical("batch", [8, 16]), n_trials=1)
    folder = tmp_path / "tuning" / "shared"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_draw_reports, args=(storage, folder, 4)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert sorted(path.name for path in Path(folder).iterdir()) == ["figures", "report.md"]
    assert sorted(path.name for path in (folder / "figures").iterdir()) == [
        "optimization_history.png", "parallel_coordinate.png", "param_importances.png"]
    assert "| 2 |" in (folder / "report.md").read_text()


def test_each_trial_gets_its_gpu_or_its_share_of_the_cores(monkeypatch):
    from finetune.processes import trial_environment

    assert trial_environment(3, jobs=2) == {"CUDA_VISIBLE_DEVICES": "3"}
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # what this search itself was given
    assert trial_environment(None, jobs=2) == {"OMP_NUM_THREADS": "4"}
    assert trial_environment(None, jobs=3) == {"OMP_NUM_THREADS": "2"}
    assert trial_environment(None, jobs=16) == {"OMP_NUM_THREADS": "1"}


def test_a_worker_waits_for_the_study_attributes_another_is_writing(tmp_path):
    # Three workers starting together: one created the study and has written the metric, not yet the space.
    import threading

    from finetune.tune import search

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="together", storage=storage, direction="maximize")
    study.set_user_attr(search.METRIC_ATTRIBUTE, "validation_f1")

    def creator_goes_on():
        study.set_user_attr(search.SPACE_ATTRIBUTE, {"lr": "float"})
        study.set_user_attr(search.PRUNER_ATTRIBUTE, {"name": "none"})

    later = threading.Timer(0.5, creator_goes_on)
    later.start()
    attributes = search._settled_attributes(optuna.load_study(study_name="together", storage=storage))
    later.join()
    assert attributes[search.SPACE_ATTRIBUTE] == {"lr": "float"} and attributes[search.PRUNER_ATTRIBUTE] == {"name": "none"}
