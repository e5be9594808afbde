"""Property: whatever params.yaml holds, the pipeline either runs to the end, or a stage stops
with one line naming the key, exit status 1, no traceback, and nothing written by it or after it.

Hypothesis draws whole params.yaml files: every key, each either a plausible value (small, so
that a run takes seconds on the tiny model) or a YAML oddity (`~`, `.nan`, `1e-5`, lists, very
long strings); sometimes a key is missing or an unknown one added. Each example runs the six
stages in this process, as `python -m stages.<stage>` would (`run_stage`): any exception other
than the one-line exit is a traceback a user would see, and fails the test."""

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from finetune.core.errors import run_stage
from stages import diagnose, download, evaluate, plot, publish, tokenize, train
from tests.conftest import write_glue_task

STAGES = [(download, ["data/raw"]), (tokenize, ["data/tokenized"]), (train, ["trained_model", "metrics/train.json"]),
          (evaluate, ["metrics/evaluation.json"]), (diagnose, ["metrics/diagnosis.json"]), (plot, ["metrics/report"]),
          (publish, ["models"])]

ODD_YAML = st.sampled_from(["~", ".nan", ".inf", "-.inf", "1e-5", "'1e-5'", "[]", "{}", "[1, 2]", "yes", "no", "''",
                            "' '", "0x10", "1_000", "-1", "0", "1.5", "true", "'" + "x" * 300 + "'", "2e9", "-0.0"])


def plausible(tiny_model_dir):
    """Per key, values a user might write, within ranges that keep a run to seconds."""
    small_float = st.floats(-0.2, 1.2, allow_nan=False)
    return {
        "dataset": st.just("nyu-mll/glue"),
        "dataset_config": st.sampled_from(["mrpc", "sst2", "stsb", "mrcp"]),
        "text_columns": st.sampled_from([[], ["sentence1"]]),
        "label_column": st.sampled_from(["label", ""]),
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
        "freeze_embeddings": st.booleans(),
        "cpu_speedups": st.booleans(),
        "warmup_ratio": small_float,
        "lr_scheduler": st.sampled_from(["linear", "cosine", "constant", "constant_with_warmup", "exponential"]),
        "precision": st.sampled_from(["auto", "fp32", "bf16", "fp16"]),
        "group_by_length": st.booleans(),
        "eval_steps": st.integers(-1, 20),
        "logging_steps": st.integers(-1, 20),
        "early_stopping_patience": st.integers(-1, 3),
        "best_model_metric": st.sampled_from(["auto", "loss", "accuracy", "f1", "pearson", "matthews_correlation",
                                              "precision"]),
        "save_steps": st.integers(-1, 20),
        "keep_checkpoints": st.integers(-1, 3),
        "bootstrap_resamples": st.integers(0, 2000),
        "bootstrap_seed": st.integers(-1, 2**130),
        "diagnose_baseline_margin": small_float,
        "diagnose_loss_spread": small_float,
        "diagnose_loss_rise": small_float,
        "diagnose_accuracy_gap": small_float,
        "diagnose_window": st.integers(-1, 20),
    }


@st.composite
def params_files(draw, tiny_model_dir, defaults):
    """The text of a params.yaml: the tiny defaults with one to four keys drawn anew, each a
    plausible value, a YAML oddity or left out; sometimes an unknown key besides."""
    strategies = plausible(tiny_model_dir)
    changed = draw(st.lists(st.sampled_from(sorted(strategies)), min_size=1, max_size=4, unique=True))
    lines = []
    for key, strategy in strategies.items():
        choice = draw(st.sampled_from(["plausible"] * 6 + ["odd", "missing"])) if key in changed else "default"
        if choice == "missing":
            continue
        if choice == "odd":
            lines.append(f"{key}: {draw(ODD_YAML)}")
            continue
        value = defaults[key] if choice == "default" else draw(strategy)
        lines.append(yaml.safe_dump({key: value}, default_flow_style=True, width=10**6).strip()[1:-1])
    if draw(st.integers(0, 9)) == 0:
        lines.append("learning_rate: 0.001")  # a key the pipeline does not know
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


@settings(max_examples=int(os.environ.get("FUZZ_PARAMS_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_params_file_runs_or_stops_with_one_line(tiny_model_dir, tiny_params, fuzz_glue_dir, data, monkeypatch):
    text = data.draw(params_files(tiny_model_dir, {**tiny_params, "epochs": 1}), label="params.yaml")
    monkeypatch.setenv("GLUE_DIR", str(fuzz_glue_dir))
    with tempfile.TemporaryDirectory() as project_dir:
        project = Path(project_dir)
        (project / "params.yaml").write_text(text)
        with contextlib.chdir(project):  # left before the folder goes
            stopped, stderr = run_pipeline(project)
        event("ran to the end" if stopped is None else f"stopped in {STAGES[stopped][0].__name__}")
        if stopped is None:
            assert all((project / output).exists() for _, outputs in STAGES for output in outputs)
            return
        assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
        assert re.match(r"error: params\.yaml(:| is not valid YAML| must be)", stderr), stderr
        unwritten = [output for _, outputs in STAGES[stopped:] for output in outputs]
        assert [output for output in unwritten if (project / output).exists()] == [], stderr
