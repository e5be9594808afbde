import datasets

from stages import download, tokenize
from tests.conftest import SPLIT_ROWS, run_stage_process, write_params


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


def test_max_length_beyond_the_model_is_rejected(project, tiny_params):
    write_params(project, tiny_params, max_length=1024)
    download.main()
    result = run_stage_process("tokenize", project)
    assert result.returncode == 1
    assert "max_length must be <= 64" in result.stderr
    assert not (project / "data" / "tokenized").exists()


def test_unknown_checkpoint_is_a_clear_error(project, tiny_params):
    write_params(project, tiny_params, checkpoint=str(project / "no-such-model"))
    download.main()
    result = run_stage_process("tokenize", project, {"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: checkpoint '{project / 'no-such-model'}': not a model folder")
    assert result.stderr.count("\n") == 1
    assert not (project / "data" / "tokenized").exists()
