import pytest
import yaml

from finetune.core.params import load_params
from tests.conftest import run_stage_process
from tests.repos import PROJECT_ROOT, write_params


def test_project_params_file_is_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.lr == 1e-4
    assert params.checkpoint == "sentence-transformers/all-MiniLM-L6-v2"


def test_lr_written_back_by_dvc_is_read_as_a_float(tmp_path, tiny_params):
    # `dvc exp run -S lr=1e-5` writes `lr: 1e-05`, which plain PyYAML reads as a string.
    text = yaml.safe_dump(tiny_params).replace(f"lr: {tiny_params['lr']}", "lr: 1e-05")
    assert "lr: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml")
    assert isinstance(params.lr, float) and params.lr == 1e-5


@pytest.mark.slow
def test_bad_param_stops_stage_with_one_line_and_writes_nothing(tmp_path, tiny_params, glue_parquet_dir):
    write_params(tmp_path, tiny_params, lr=-1)
    result = run_stage_process("download", tmp_path, {"GLUE_DIR": str(glue_parquet_dir)})
    assert result.returncode == 1
    assert result.stderr.strip() == "error: params.yaml: lr must be > 0, got -1.0"
    assert not (tmp_path / "data").exists()
