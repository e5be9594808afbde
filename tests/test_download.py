import json

import datasets
import pandas as pd
import pytest

from stages import download
from stages.common import PipelineError
from tests.conftest import SPLIT_ROWS, run_stage_process, synthetic_pairs, write_parquet_layout, write_tsv_layout


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


def bad_frames(split, change):
    frames = {name: synthetic_pairs(rows, seed) for seed, (name, rows) in enumerate(SPLIT_ROWS.items())}
    frames[split] = change(frames[split].copy())
    return frames


def set_cell(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


BAD_DATA = [
    ("train", set_cell("label", 5, 2), r"train-00000-of-00001.parquet row 5: label 2 is not 0 or 1"),
    ("validation", set_cell("sentence2", 3, "  "), r"validation-00000-of-00001.parquet row 3: sentence2 is empty"),
    ("test", lambda frame: frame.drop(columns="sentence1"), r"test-00000-of-00001.parquet: missing column 'sentence1'"),
    ("train", lambda frame: frame.iloc[0:0], r"train-00000-of-00001.parquet: no rows"),
]


@pytest.mark.parametrize(("split", "change", "message"), BAD_DATA, ids=["label", "empty-text", "column", "no-rows"])
def test_bad_data_names_file_row_and_problem(project, tmp_path_factory, monkeypatch, split, change, message):
    glue_dir = write_parquet_layout(tmp_path_factory.mktemp("bad-glue"), bad_frames(split, change))
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    with pytest.raises(PipelineError, match=message):
        download.main()
    assert not (project / "data").exists()


def test_missing_split_file_is_named(project, tmp_path_factory, monkeypatch):
    glue_dir = write_parquet_layout(tmp_path_factory.mktemp("no-test-split"))
    (glue_dir / "mrpc" / "test-00000-of-00001.parquet").unlink()
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    with pytest.raises(PipelineError, match=r"split 'test' missing: no file .*test-\*\.parquet"):
        download.main()
