"""Every framework internal the project relies on, in one place, each with a test that fails when
the framework changes under it. Each is used for a measured reason given where it is used; public
APIs serve everything else.

transformers `Trainer`
  - `_get_train_sampler` (replaced, finetune/training/resume.py): draws each epoch's batch order
    so that a resumed run replays it; no public hook sets Trainer's sampler. Tests: below, and
    tests/test_resume.py (a killed run resumes byte-identical).
  - `_save_checkpoint` (extended, same module): saves that order's RNG state in each checkpoint;
    no callback runs inside the checkpoint folder before Trainer marks it complete. Tests: below,
    and tests/test_resume.py.
  - `ProgressCallback.training_bar` (finetune/training/trainer.py): the one bar the train stage
    writes its evaluation lines under. Test: below.
transformers attention internals (finetune/training/cpu_speedups/, behind `cpu_speedups`)
  - `PretrainedConfig._attn_implementation`, the registries `AttentionInterface` /
    `ALL_ATTENTION_FUNCTIONS` and `ALL_MASK_ATTENTION_FUNCTIONS`, `sdpa_attention_forward`,
    `sdpa_mask`, BERT's `eager_attention_forward` and the layout of `BertLayer` (its `attention`,
    `feed_forward_chunk`). Tests: tests/test_cpu_speedups.py compares logits, losses and
    gradients with transformers' stock code.
transformers model layout (finetune/training/label_priors.py)
  - A sequence classifier's output is its last `nn.Linear` with one output per label and a bias
    (BERT's `classifier`): a multi-label head starts from train's label frequencies there. Test:
    below (the model's outputs at the start are the frequencies' log-odds).
DVCLive
  - `Live._init_dvc` (overridden, finetune/training/live.py): in a Git repository without a
    commit it raises instead of skipping the experiment; nothing public avoids the call. Test:
    below (fails once DVCLive no longer needs it).
  - `dvclive.monitor_system.GPU_AVAILABLE` (turned off where NVML cannot start,
    finetune/training/system.py): without NVIDIA's driver its monitor recorded no CPU or memory
    sample at all; nothing public skips the GPU probe. Test: below (fails once DVCLive records them).
Optuna (finetune/training/pruning.py)
  - `optuna.trial.Trial(study, trial_id)`, built by the train stage of a search trial from the
    storage's ids (`get_study_id_from_name`, `get_trial_id_from_study_id_trial_number`): the trial
    the search asked for runs in another process, and Optuna's public API hands a trial only to
    the process that asked. Test: below, and tests/test_tune.py's pruning tests.
Optuna's optimisation loop (finetune/tune/search.py, study_budget.py)
  - `study.optimize(n_trials=1)` stores its trial, RUNNING, before it calls the objective in the
    calling thread (the budget lock is let go there, once the next worker can count the trial),
    and a KeyboardInterrupt the objective raises fails the trial and passes through (an
    interrupted trial, re-queued at the next start). Test: below.
DVC experiments (finetune/tune/experiments.py)
  - An experiment's Git ref is refs/exps/<2 hex>/<38 hex of its baseline>/<name>, and `dvc exp
    run --temp` prints "Reproducing experiment" once it has stashed its params and runs on its
    own. Tests: tests/test_search_e2e.py (every trial found by its ref; a trial's log).
dvc-render
  - `VegaRenderer.SCRIPTS`: the vega bundles .dvc/plots/offline.html inlines. Test:
    tests/test_plots_template.py.
"""

import subprocess

import pytest
import torch
from dvclive import Live
from scmrepo.exceptions import SCMError
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from finetune.core.params import load_params
from finetune.core.tasks import load_task
from finetune.data.loading import load_tokenized
from finetune.models import load_classifier, load_tokenizer
from finetune.training.evaluations import evaluation_sets
from finetune.training.resume import EPOCH_ORDER_FILE, ReplayableOrderSampler
from finetune.training.trainer import TrainingProgress, build_trainer
from stages import download, tokenize
from tests.repos import write_params


@pytest.fixture
def trainer(project, tiny_params, tmp_path):
    """The train stage's Trainer on the tiny project, one epoch, a checkpoint every 3 steps."""
    write_params(project, tiny_params, epochs=1, save_steps=3)
    download.main()
    tokenize.main()
    params, task, tokenized = load_params(), load_task(), load_tokenized()
    model = load_classifier(params.checkpoint, task, dropout=params.dropout)
    sets, _ = evaluation_sets(task, tokenized, params.eval_sample_size)
    trainer, _ = build_trainer(params, task, model, load_tokenizer(params.checkpoint),
                               tokenized["train"].remove_columns("idx"), sets, str(tmp_path / "checkpoints"))
    return trainer


def test_trainer_draws_its_train_order_from_get_train_sampler(trainer):
    assert isinstance(trainer.get_train_dataloader().batch_sampler.sampler, ReplayableOrderSampler)


def test_the_length_grouping_is_the_one_trainer_makes_itself(trainer, tmp_path):
    own = TrainingArguments(output_dir=str(tmp_path / "own"), per_device_train_batch_size=8, use_cpu=True,
                            train_sampling_strategy="group_by_length", report_to="none")
    stock = Trainer(model=trainer.model, args=own, train_dataset=trainer.train_dataset,
                    processing_class=trainer.processing_class)
    stock_sampler = stock._get_train_sampler()
    assert type(stock_sampler) is LengthGroupedSampler
    torch.manual_seed(0)
    stock_order = list(stock_sampler)
    torch.manual_seed(0)
    assert list(trainer._get_train_sampler().sampler) == stock_order


def test_trainer_saves_checkpoints_through_save_checkpoint(trainer, tmp_path):
    trainer.train()
    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]
    assert all((tmp_path / "checkpoints" / name / EPOCH_ORDER_FILE).is_file() for name in checkpoints)


def test_the_progress_callback_still_has_its_training_bar(trainer, capsys):
    trainer.train()
    progress = next(callback for callback in trainer.callback_handler.callbacks
                    if isinstance(callback, TrainingProgress))
    assert progress.training_bar is None  # closed at the end, as Trainer's own ProgressCallback does
    assert "train: step 4/6: train_subset loss" in capsys.readouterr().out


def test_a_trial_built_from_its_storage_ids_reports_to_the_study(tmp_path, monkeypatch):
    import optuna

    from finetune.training.pruning import PRUNER_ATTRIBUTE, STORAGE_VARIABLE, _trial

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="ids", storage=storage, direction="maximize")
    study.set_user_attr(PRUNER_ATTRIBUTE, {"name": "none"})
    asked = study.ask()
    monkeypatch.setenv(STORAGE_VARIABLE, storage)
    built = _trial(f"ids/{asked.number}")
    built.report(0.25, 4)
    assert built.number == asked.number and not built.should_prune()
    assert optuna.load_study(study_name="ids", storage=storage).trials[0].intermediate_values == {4: 0.25}


def test_dvclive_still_fails_in_a_repository_without_a_commit(tmp_path, monkeypatch):
    # When this fails, DVCLive handles it itself: drop UncommittedSafeLive.
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STUDIO_OFFLINE", "true")
    with pytest.raises(SCMError, match="Empty git repo"):
        Live(dir="live", dvcyaml=None, save_dvc_exp=False)


def _nvml_starts():
    import dvclive.monitor_system as dvclive_monitor

    try:
        dvclive_monitor.nvmlInit()
    except dvclive_monitor.NVMLError:
        return False
    dvclive_monitor.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_starts(), reason="NVML starts here: DVCLive's monitor reads GPUs as it should")
def test_dvclive_monitor_still_records_no_cpu_without_nvml(tmp_path, monkeypatch):
    # When this fails, DVCLive's monitor copes with a machine without NVIDIA's driver: drop
    # _without_unusable_nvml (finetune/training/system.py).
    import time

    import dvclive.monitor_system as dvclive_monitor

    from finetune.training.system import MachineMonitor, summary

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STUDIO_OFFLINE", "true")
    assert hasattr(dvclive_monitor, "GPU_AVAILABLE")  # the flag the workaround turns off
    monkeypatch.setattr(dvclive_monitor, "GPU_AVAILABLE", True)  # as pynvml's import left it (an earlier train turns it off)
    live = Live(dir="plain", dvcyaml=None, save_dvc_exp=False, report=None)
    live.monitor_system(interval=0.05, num_samples=2)
    time.sleep(0.6)
    live.end()
    assert not list((tmp_path / "plain").rglob("*.tsv"))
    # The workaround: the same machine's CPU and memory, sampled.
    monitor = MachineMonitor(Live, resuming=False)
    time.sleep(1.5)
    monitor.end(processes=1)
    assert {"mean_cpu_percent", "peak_ram_used_gb"} <= set(summary())


def test_a_multi_label_head_starts_at_the_label_frequencies(tiny_model_dir):
    import numpy as np
    import torch

    from finetune.core.tasks import own_data_task
    from finetune.models import load_classifier
    from finetune.training.label_priors import start_from_label_frequencies
    from tests.conftest import padded_tiny_batch

    task = own_data_task("tags", ["text"], ["a", "b", "c"], has_test=False, multi_label=True)
    model = load_classifier(str(tiny_model_dir), task)
    train_labels = [[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert start_from_label_frequencies(model, task, train_labels) == {"a": 0.75, "b": 0.25, "c": 0.0}
    batch = {key: value for key, value in padded_tiny_batch().items() if key != "labels"}
    with torch.no_grad():
        probabilities = model(**batch).logits.sigmoid().mean(dim=0).numpy()
    # The fresh weights add a little to each output; the bias sets where they start.
    assert probabilities == pytest.approx(np.array([0.75, 0.25, 1e-4]), abs=0.02)
    # Positives weighted by their negatives / positives (class_weights: balanced): every label starts at 0.5.
    start_from_label_frequencies(model, task, train_labels, {"a": 1 / 3, "b": 3.0, "c": 4.0})
    with torch.no_grad():
        probabilities = model(**batch).logits.sigmoid().mean(dim=0).numpy()
    assert probabilities[:2] == pytest.approx(np.array([0.5, 0.5]), abs=0.02)


def test_optuna_stores_the_trial_before_the_objective_runs_and_fails_it_on_keyboard_interrupt():
    import threading

    import optuna

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    seen = []

    def objective(trial):
        seen.append((threading.get_ident(), [other.state.name for other in study.get_trials(deepcopy=False)]))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1, catch=(Exception,))
    assert seen == [(threading.get_ident(), ["RUNNING"])]
    assert [trial.state.name for trial in study.trials] == ["FAIL"]
