import pytest
import yaml

from stages.common import PipelineError
from stages.params import load_params, parse_params
from tests.conftest import PROJECT_ROOT, run_stage_process, write_params


def test_project_params_file_is_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.lr == 5e-5
    assert params.checkpoint == "sentence-transformers/all-MiniLM-L6-v2"


def test_lr_written_back_by_dvc_is_read_as_a_float(tmp_path, tiny_params):
    # `dvc exp run -S lr=1e-5` writes `lr: 1e-05`, which plain PyYAML reads as a string.
    text = yaml.safe_dump(tiny_params).replace(f"lr: {tiny_params['lr']}", "lr: 1e-05")
    assert "lr: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml")
    assert isinstance(params.lr, float) and params.lr == 1e-5


BAD_PARAMS = [
    ({"lrr": 1e-5}, "unknown key 'lrr'"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"train_batch_size": 0}, "train_batch_size must be > 0"),
    ({"train_batch_size": 8.5}, "train_batch_size must be an integer"),
    ({"precision": "fp8"}, "precision must be one of auto, fp32, bf16, fp16"),
    ({"lr_scheduler": "exponential"}, "lr_scheduler must be one of"),
    ({"group_by_length": "yes"}, "group_by_length must be true or false"),
    ({"max_steps": 0}, "max_steps must be -1"),
    ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1)"),
    ({"best_model_metric": "precision"}, "best_model_metric must be one of accuracy, f1, loss"),
    ({"checkpoint": ""}, "checkpoint must be a non-empty string"),
]


@pytest.mark.parametrize(("change", "message"), BAD_PARAMS, ids=[str(change) for change, _ in BAD_PARAMS])
def test_bad_param_is_rejected_by_name(tiny_params, change, message):
    with pytest.raises(PipelineError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_params({**tiny_params, **change})


def test_missing_key_is_named(tiny_params):
    params = dict(tiny_params)
    del params["seed"]
    with pytest.raises(PipelineError, match="missing key 'seed'"):
        parse_params(params)


def test_bad_param_stops_stage_with_one_line_and_writes_nothing(tmp_path, tiny_params, glue_parquet_dir):
    write_params(tmp_path, tiny_params, lr=-1)
    result = run_stage_process("download", tmp_path, {"GLUE_DIR": str(glue_parquet_dir)})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: params.yaml: lr must be > 0, got -1.0"
    assert not (tmp_path / "data").exists()
