import json

import datasets
import pandas as pd
import pytest

from finetune.errors import PipelineError
from stages import download
from tests.conftest import SPLIT_ROWS, run_stage_process, synthetic_pairs, write_tsv_layout


def read_raw(project):
    return {split: pd.read_parquet(project / "data" / "raw" / f"{split}.parquet") for split in SPLIT_ROWS}


def test_parquet_layout_is_copied_checked_and_recorded(project):
    download.main()
    raw = read_raw(project)
    assert {split: len(frame) for split, frame in raw.items()} == SPLIT_ROWS
    assert list(raw["train"].columns) == ["sentence1", "sentence2", "label", "idx"]
    provenance = json.loads((project / "data" / "raw" / "provenance.json").read_text())
    assert provenance["source"]["kind"] == "local" and provenance["source"]["layout"] == "parquet"
    assert provenance["splits"]["train"]["rows"] == SPLIT_ROWS["train"]
    assert provenance["splits"]["train"]["label_counts"] == {"not_equivalent": 24, "equivalent": 24}
    assert len(provenance["splits"]["test"]["sha256"]) == 64
    features = datasets.Dataset.from_parquet(str(project / "data" / "raw" / "train.parquet")).features
    assert features["label"].names == ["not_equivalent", "equivalent"]


def test_tsv_layout_reads_quotes_verbatim_and_unlabelled_test(project, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(write_tsv_layout(tmp_path_factory.mktemp("glue-tsv"))))
    download.main()
    raw = read_raw(project)
    assert {split: len(frame) for split, frame in raw.items()} == SPLIT_ROWS
    assert raw["train"]["sentence1"][0].endswith(' "quoted')
    assert set(raw["test"]["label"]) == {-1}
    provenance = json.loads((project / "data" / "raw" / "provenance.json").read_text())
    assert provenance["source"]["layout"] == "tsv"
    assert provenance["splits"]["test"]["label_counts"] is None


def test_hub_is_used_without_glue_dir(project, monkeypatch):
    calls = []

    def fake_load_dataset(name, config):
        calls.append((name, config))
        return datasets.DatasetDict({split: datasets.Dataset.from_pandas(synthetic_pairs(rows, 0))
                                     for split, rows in SPLIT_ROWS.items()})

    monkeypatch.delenv("GLUE_DIR")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    download.main()
    assert calls == [("nyu-mll/glue", "mrpc")]
    assert json.loads((project / "data" / "raw" / "provenance.json").read_text())["source"]["kind"] == "hub"


def test_unreachable_hub_explains_how_to_work_offline(project, monkeypatch):
    def unreachable(name, config):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("GLUE_DIR")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(PipelineError, match=r"set GLUE_DIR to the folder that contains mrpc/"):
        download.main()
    assert not (project / "data").exists()


def test_missing_local_folder_is_a_one_line_error(tmp_path, tiny_params):
    from tests.conftest import write_params

    write_params(tmp_path, tiny_params)
    result = run_stage_process("download", tmp_path, {"GLUE_DIR": str(tmp_path / "nowhere")})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"GLUE_DIR={tmp_path / 'nowhere'}: no such folder" in result.stderr
    assert not (tmp_path / "data").exists()
