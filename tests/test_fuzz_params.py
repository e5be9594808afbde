"""Property: whatever params.yaml holds, the pipeline either runs to the end, or a stage stops
with one line naming the key, exit status 1, no traceback, and nothing written by it or after it.

Hypothesis draws whole params.yaml files: every key of `Params`, each either a plausible value
(small, so that a run takes seconds on the tiny model) or a YAML oddity (`~`, `.nan`, `1e-5`,
lists, very long strings), left out or misspelled. Each example runs the seven stages in this
process, as `python -m stages.<stage>` would (`run_stage`): any exception other than the one-line
exit is a traceback a user would see, and fails the test. So does a run where too few examples
get past download's checks into train: such a fuzzer tests only the params parser."""

import collections
import contextlib
import dataclasses
import io
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.core.errors import run_stage
from finetune.core.params import Params
from finetune.training.pruning import STORAGE_VARIABLE
from stages import diagnose, download, evaluate, plot, publish, tokenize, train
from tests.conftest import write_glue_task

STAGES = [(download, ["data/raw"]), (tokenize, ["data/tokenized"]), (train, ["trained_model", "metrics/train.json"]),
          (evaluate, ["metrics/evaluation.json"]), (diagnose, ["metrics/diagnosis.json"]), (plot, ["metrics/report"]),
          (publish, ["models"])]
TRAIN = [stage for stage, _ in STAGES].index(train)
# The keys a params.yaml must hold: a key added to Params without a strategy below fails the test.
PARAM_KEYS = [field.name for field in dataclasses.fields(Params)]
# Below this share of examples reaching train, most of the pipeline goes untested.
REACHING_TRAIN_SHARE = 0.3

ODD_YAML = st.sampled_from(["~", ".nan", ".inf", "-.inf", "1e-5", "'1e-5'", "[]", "{}", "[1, 2]", "yes", "no", "''",
                            "' '", "0x10", "1_000", "-1", "0", "1.5", "true", "'" + "x" * 300 + "'", "2e9", "-0.0"])


def plausible(tiny_model_dir):
    """Per key, values a user might write, within ranges that keep a run to seconds; some of them
    out of range, some not for this task (class weights of another task's labels, a trial
    without a study)."""
    small_float = st.floats(-0.2, 1.2, allow_nan=False)
    return {
        "dataset": st.just("nyu-mll/glue"),
        "dataset_config": st.sampled_from(["mrpc", "sst2", "stsb", "mrcp"]),
        "text_columns": st.sampled_from([[], ["sentence1"]]),
        "label_column": st.sampled_from(["label", "", ["label", "idx"]]),
        "label_delimiter": st.sampled_from(["", ","]),
        "allow_empty_labels": st.booleans(),
        "checkpoint": st.just(str(tiny_model_dir)),
        "max_length": st.integers(-1, 80),
        "seed": st.integers(-2, 2**33),
        "lr": st.floats(1e-6, 5e-2),
        "epochs": st.floats(0.01, 2.0),
        "max_steps": st.integers(-2, 14),
        "train_batch_size": st.integers(-1, 64),
        "eval_batch_size": st.integers(-1, 64),
        "weight_decay": small_float,
        "dropout": small_float,
        "class_weights": st.sampled_from(["none", "balanced", "uniform", {"not_equivalent": 1, "equivalent": 2.5},
                                          {"negative": 0.5, "positive": 2}, {"equivalent": 2}, {"0": 1, "1": 2},
                                          {"not_equivalent": 1, "equivalent": 0}]),
        "freeze_embeddings": st.booleans(),
        "cpu_speedups": st.booleans(),
        "warmup_ratio": small_float,
        "lr_scheduler": st.sampled_from(["linear", "cosine", "constant", "constant_with_warmup", "exponential"]),
        "precision": st.sampled_from(["auto", "fp32", "bf16", "fp16"]),
        "group_by_length": st.booleans(),
        "eval_steps": st.one_of(st.just("auto"), st.integers(-1, 20)),
        "eval_sample_size": st.integers(-1, 600),
        "logging_steps": st.integers(-1, 20),
        "early_stopping_patience": st.integers(-1, 3),
        "best_model_metric": st.sampled_from(["auto", "loss", "accuracy", "f1", "pearson", "matthews_correlation",
                                              "precision"]),
        "save_steps": st.one_of(st.just("auto"), st.integers(-1, 20)),
        "processes": st.one_of(st.just("auto"), st.integers(-1, 1)),
        "keep_checkpoints": st.integers(-1, 3),
        "multi_label_threshold": small_float,
        "bootstrap_resamples": st.integers(0, 2000),
        "bootstrap_seed": st.integers(-1, 2**130),
        "diagnose_baseline_margin": small_float,
        "diagnose_loss_spread": small_float,
        "diagnose_loss_rise": small_float,
        "diagnose_accuracy_gap": small_float,
        "diagnose_window": st.integers(-1, 20),
        "trial": st.sampled_from(["", "s1/0", "s1"]),
    }


def check_every_key_drawn(strategies, defaults):
    """Else a key added to params.yaml would be left out of every example, each stopping at
    download with "missing key" (so it went for five keys, unnoticed, before this check)."""
    for key in PARAM_KEYS:
        assert key in strategies, f"params key {key!r} has no strategy: add the values a user might write to plausible()"
        assert key in defaults, f"params key {key!r} is not in params.yaml"
    unknown = sorted(set(strategies) - set(PARAM_KEYS))
    assert not unknown, f"plausible() draws {unknown[0]!r}, no key of Params: remove it"


@st.composite
def params_files(draw, strategies, defaults):
    """The text of a params.yaml: the tiny defaults with one or two keys drawn anew, each mostly a
    plausible value, else a YAML oddity, left out or misspelled (an unknown key). Few changes, and
    few of them broken: each broken key stops the pipeline at download, so more would leave
    most examples testing the params parser alone (REACHING_TRAIN_SHARE)."""
    changed = draw(st.lists(st.sampled_from(PARAM_KEYS), min_size=1, max_size=2, unique=True))
    lines = []
    for key in PARAM_KEYS:
        choice = "default"
        if key in changed:
            choice = draw(st.sampled_from(["plausible"] * 7 + ["broken"]))
            if choice == "broken":
                choice = draw(st.sampled_from(["odd", "missing", "misspelled"]))
        if choice == "missing":
            continue
        if choice == "odd":
            lines.append(f"{key}: {draw(ODD_YAML)}")
            continue
        value = defaults[key] if choice == "default" else draw(strategies[key])
        line = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6).strip()[1:-1]
        lines.append(line.replace(key, key.replace("_", "-") + "s", 1) if choice == "misspelled" else line)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fuzz_glue_dir(tmp_path_factory):
    glue_dir = tmp_path_factory.mktemp("fuzz-glue")
    for config in ("mrpc", "sst2", "stsb"):
        write_glue_task(glue_dir, config, "parquet")
    return glue_dir


def run_pipeline(project_dir):
    """Runs the stages in order; returns (the stage that stopped or None, its stderr)."""
    for index, (stage, _) in enumerate(STAGES):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                run_stage(stage.main)
            except SystemExit as stop:
                assert stop.code == 1, f"{stage.__name__} exited with {stop.code}"
                return index, stderr.getvalue()
    return None, ""


@pytest.mark.slow  # most examples run the whole pipeline: 2 to 5 s each
def test_any_params_file_runs_or_stops_with_one_line(tiny_model_dir, tiny_params, fuzz_glue_dir, monkeypatch):
    # 1,000 resamples, not params.yaml's 50,000: the intervals are not what this test checks.
    strategies, defaults = plausible(tiny_model_dir), {**tiny_params, "epochs": 1, "bootstrap_resamples": 1000}
    check_every_key_drawn(strategies, defaults)
    monkeypatch.setenv("GLUE_DIR", str(fuzz_glue_dir))
    monkeypatch.delenv(STORAGE_VARIABLE, raising=False)  # a trial then stops in train, as it does for a user
    stopped_in = collections.Counter()

    # @given inside the test, so that the share below is asserted over this run's examples.
    @settings(max_examples=int(os.environ.get("FUZZ_PARAMS_EXAMPLES", "30")), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(text=params_files(strategies, defaults))
    def runs_or_stops_with_one_line(text):
        with tempfile.TemporaryDirectory() as project_dir:
            project = Path(project_dir)
            (project / "params.yaml").write_text(text)
            with contextlib.chdir(project):  # left before the folder goes
                stopped, stderr = run_pipeline(project)
            stopped_in[len(STAGES) if stopped is None else stopped] += 1
            if stopped is None:
                assert all((project / output).exists() for _, outputs in STAGES for output in outputs)
                return
            assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
            assert re.match(r"error: params\.yaml(:| is not valid YAML| must be)", stderr), stderr
            unwritten = [output for _, outputs in STAGES[stopped:] for output in outputs]
            assert [output for output in unwritten if (project / output).exists()] == [], stderr

    runs_or_stops_with_one_line()
    examples = sum(stopped_in.values())
    reaching_train = sum(count for index, count in stopped_in.items() if index >= TRAIN)
    outcomes = {("ran to the end" if index == len(STAGES) else f"stopped in {STAGES[index][0].__name__}"): count
                for index, count in sorted(stopped_in.items())}
    assert reaching_train >= REACHING_TRAIN_SHARE * examples, f"{reaching_train} of {examples} reached train: {outcomes}"
