"""Same params, same code, two separate processes on a CPU: bit-identical results."""

import shutil

from stages import download, tokenize
from tests.conftest import run_stage_process

RESULT_FILES = [
    "metrics/train.json", "metrics/evaluation.json", "metrics/history/train.csv",
    "metrics/history/evaluations.csv", "metrics/predictions/validation.csv",
    "metrics/predictions/test.csv", "trained_model/model.safetensors",
]


def test_two_runs_give_bit_identical_metrics_and_weights(project, tmp_path_factory):
    download.main()
    tokenize.main()
    second = tmp_path_factory.mktemp("second-run")
    shutil.copytree(project, second, dirs_exist_ok=True)
    for run_dir in (project, second):
        for stage in ("train", "evaluate"):
            result = run_stage_process(stage, run_dir)
            assert result.returncode == 0, result.stderr
    different = [name for name in RESULT_FILES if (project / name).read_bytes() != (second / name).read_bytes()]
    assert different == []
