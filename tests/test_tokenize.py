import shutil
import subprocess

import datasets
import pytest
import yaml

from finetune.data.progress import Progress
from stages import download, tokenize
from tests.conftest import SPLIT_ROWS, run_stage_process
from tests.repos import copy_project, dvc_environment, write_params


def test_pairs_are_truncated_and_left_unpadded(project, tiny_params):
    write_params(project, tiny_params, max_length=12)
    download.main()
    tokenize.main()
    tokenized = datasets.load_from_disk(str(project / "data" / "tokenized"))
    assert {split: len(tokenized[split]) for split in SPLIT_ROWS} == SPLIT_ROWS
    assert {"input_ids", "attention_mask", "labels", "idx"} <= set(tokenized["train"].column_names)
    lengths = {len(ids) for ids in tokenized["train"]["input_ids"]}
    assert max(lengths) == 12  # some pairs were truncated to max_length
    assert len(lengths) > 1  # no padding on disk: lengths differ
    assert 0 not in {token for ids in tokenized["train"]["input_ids"] for token in ids}  # no [PAD]


def test_a_split_shared_out_among_processes_gives_the_files_of_one_process(project, monkeypatch):
    # A machine with more cores tokenizes a large split in parts: the same bytes, so data/tokenized
    # keeps its DVC hash (and train its cache) from one machine to another.
    download.main()
    monkeypatch.setattr(tokenize, "ROWS_PER_PROCESS", 10)  # train's 48 rows make parts, the others not
    progress_lines = []  # what each split's (or part's) progress lines are headed
    monkeypatch.setattr(tokenize, "Progress", lambda what, *rest: progress_lines.append(what) or Progress(what, *rest))
    files = {}
    for cores in ("1", "2"):
        monkeypatch.setenv("OMP_NUM_THREADS", cores)
        tokenize.main()
        folder = project / "data" / "tokenized"
        files[cores] = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert files["1"] == files["2"]
    assert progress_lines[3:] == ["tokenize: train, part 1 of 2", "tokenize: train, part 2 of 2",
                                  "tokenize: validation", "tokenize: test"]  # 16 rows: one process


@pytest.mark.slow
def test_max_length_beyond_the_model_is_rejected(project, tiny_params):
    write_params(project, tiny_params, max_length=1024)
    download.main()
    result = run_stage_process("tokenize", project)
    assert result.returncode == 1
    assert "max_length must be in [5, 64]" in result.stderr
    assert not (project / "data" / "tokenized").exists()


@pytest.mark.slow
def test_unknown_checkpoint_is_a_clear_error(project, tiny_params):
    write_params(project, tiny_params, checkpoint=str(project / "no-such-model"))
    download.main()
    result = run_stage_process("tokenize", project, {"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: checkpoint '{project / 'no-such-model'}': not a model folder")
    assert result.stderr.count("\n") == 1
    assert not (project / "data" / "tokenized").exists()


@pytest.mark.slow
def test_tokenized_data_has_one_dvc_hash_whatever_the_clone(tmp_path, tiny_params, tiny_model_dir, glue_parquet_dir):
    # Two clones at other paths, each with its own copy of the checkpoint (as another venv
    # installs it elsewhere), and a train-only param changed: tokenize's output is the same
    # data, so DVC must record the same hash (else train re-runs for nothing in every clone).
    env = dvc_environment(glue_parquet_dir)
    hashes = []
    for clone, max_steps in (("first-clone", -1), ("second/clone", 7)):
        root = copy_project(tmp_path / clone)
        shutil.copytree(tiny_model_dir, root / "checkpoint")
        write_params(root, tiny_params, checkpoint="checkpoint", max_steps=max_steps)
        for command in (["git", "init", "-q"], ["dvc", "repro", "tokenize"]):
            result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stdout + result.stderr
        lock = yaml.safe_load((root / "dvc.lock").read_text())
        hashes.append({out["path"]: out["md5"] for out in lock["stages"]["tokenize"]["outs"]})
    assert hashes[0] == hashes[1]
