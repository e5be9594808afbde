"""`finetune search` end to end on a copy of the shared tiny run: every trial a DVC experiment with its
params, metrics and state; a pruned trial marked and never taken for a full run; a failing trial
recorded with its error while the study goes on."""

import os
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback

from tests.repos import experiments_by_name, run_metrics, run_params, runner, study_storage

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def test_each_trial_is_a_dvc_experiment_with_its_params_metrics_and_state(tuning_repository, reproduced_repository):
    root, run = tuning_repository
    # Called by its path, its environment not activated: the dvc it runs, and dvc the stages' python, are its own.
    unactivated = runner(root, {**reproduced_repository.env, "PATH": "/usr/bin:/bin"})
    output = unactivated(FINETUNE, "search", "--study", "tiny", "--space", "space.yaml", "--trials", "2", "--jobs", "2")
    assert ("search: study tiny, validation_f1 (maximize, pruner median (3 startup trials, 0 warm-up examples)), "
            "0 trials finished, up to 2 trials more, 2 at once") in output
    study = optuna.load_study(study_name="tiny", storage=study_storage(root))
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    shown = experiments_by_name(run)
    for trial in study.trials:
        entry = shown[f"tiny-{trial.number}"]
        assert run_params(entry)["trial"] == f"tiny/{trial.number}"
        assert run_params(entry)["lr"] == pytest.approx(trial.params["lr"])
        assert run_metrics(entry, "metrics/train.json")["trial_state"] == "complete"
        assert run_metrics(entry, "metrics/evaluation.json")["validation_f1"] == pytest.approx(trial.value)
    # The workspace is as it was: trials ran in temporary copies.
    assert run("git", "status", "--porcelain", "--untracked-files=no") == ""
    # Two at once from one repository, each with its own params (not the other's).
    log = (root / "tuning" / "tiny" / "logs" / "tiny-0.log").read_text()
    assert "Reproducing experiment 'tiny-0'" in log and "-S trial=\"tiny/0\"" in log
    # Each its share of the cores, as its log says (2 jobs: half the CPUs this test may use).
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert f"train: 1 process, on cpu, {threads} CPU threads each" in log
    report = (root / "tuning" / "tiny" / "report.md").read_text()
    assert "| 0 | `tiny-0` | complete |" in report and "![optimization_history.png]" in report
    assert {path.name for path in (root / "tuning" / "tiny" / "figures").iterdir()} == {
        "optimization_history.png", "param_importances.png", "parallel_coordinate.png"}


def test_a_trial_below_the_finished_ones_is_pruned_and_never_taken_for_a_full_run(tuning_repository):
    root, run = tuning_repository
    # Two finished trials that scored 2.0, above any F1, at every evaluation (every 4 steps of batch
    # 8 or 16, reported at the examples seen): with the two real ones, the median at any evaluation
    # is 2.0, and the next trial falls below it at its first, whatever params it draws.
    study = optuna.load_study(study_name="tiny", storage=study_storage(root))
    seen = sorted({32 * number for number in range(1, 7)} | {64 * number for number in range(1, 4)})
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=2.0, intermediate_values=dict.fromkeys(seen, 2.0),
                                                  params=study.trials[0].params,
                                                  distributions=study.trials[0].distributions))
    output = run(FINETUNE, "search", "--study", "tiny", "--space", "space.yaml", "--trials", "5")
    assert "pruner median (3 startup trials, 0 warm-up examples)" in output  # the study's own, as first made
    study = optuna.load_study(study_name="tiny", storage=study_storage(root))
    pruned = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.PRUNED]
    assert [trial.number for trial in pruned] == [4]  # 2 real + 2 added = 4 finished: one more to run
    entry = experiments_by_name(run)["tiny-4"]
    training = run_metrics(entry, "metrics/train.json")
    # Stopped at the evaluation where the pruner said so, reported at the examples seen there; its
    # curves up to there are kept.
    batch = run_params(entry)["train_batch_size"]
    reported = sorted(pruned[0].intermediate_values)
    assert training["trial_state"] == "pruned" and training["trained_steps"] == reported[-1] // batch == 4
    evaluations = run("git", "show", f"{entry['rev']}:metrics/history/evaluations.csv").splitlines()
    assert [int(line.split(",")[0]) * batch for line in evaluations[1:]] == reported
    # The same params without `trial` are a plain run: trained in full, not the pruned outputs
    # from DVC's run-cache.
    params = run_params(entry)
    plain = run("dvc", "exp", "run", "--temp", "-n", "plain", "-S", f"lr={params['lr']}",
                "-S", f"train_batch_size={params['train_batch_size']}")
    assert "Running stage 'train'" in plain
    plain_training = run_metrics(experiments_by_name(run)["plain"], "metrics/train.json")
    assert plain_training["trained_steps"] > 4 and "trial_state" not in plain_training


def test_a_failing_trial_is_recorded_with_its_error_and_the_study_goes_on(tuning_repository):
    root, run = tuning_repository
    (root / "fail.yaml").write_text("max_length: {choices: [32, 100]}\n")
    study = optuna.create_study(study_name="failing", storage=study_storage(root), direction="maximize")
    study.enqueue_trial({"max_length": 100})  # beyond the tiny model's 64 positions: tokenize stops
    study.enqueue_trial({"max_length": 32})
    run("git", "add", "fail.yaml")
    run("git", "commit", "-q", "-m", "a space of a value that fails")
    output = run(FINETUNE, "search", "--study", "failing", "--space", "fail.yaml", "--trials", "2", "--retries", "1")
    assert "search: trial 0 (failing-0) failed: error: params.yaml: max_length must be in [5, 64]" in output
    # Run again once (--retries 1), after the queued trial; failed again, it counts as failed.
    assert "search: trial 0 failed (retry 1 of 1): its params run again" in output
    assert "search: trial 2 (failing-2) failed: error: params.yaml: max_length must be in [5, 64]" in output
    study = optuna.load_study(study_name="failing", storage=study_storage(root))
    assert [trial.state.name for trial in study.trials] == ["FAIL", "COMPLETE", "FAIL"]
    assert RetryHeartbeatStaleTrialCallback.retry_history(study.trials[2]) == [0]
    for failed in (study.trials[0], study.trials[2]):
        assert failed.user_attrs["error"].startswith("error: params.yaml: max_length must be in [5, 64]")
    assert {"failing-0", "failing-2"}.isdisjoint(experiments_by_name(run)) and "failing-1" in experiments_by_name(run)
