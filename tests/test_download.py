import json
import math
import os
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from finetune.core.errors import PipelineError
from finetune.core.tasks import GLUE_TASKS
from finetune.data import files
from finetune.data.loading import GLUE_TSV
from stages import download
from tests.conftest import (
    SPLIT_ROWS,
    glue_task_frames,
    own_data_frame,
    run_stage_process,
    split_rows,
    synthetic_pairs,
    write_frame,
    write_glue_task,
    write_own_data,
    write_tsv_layout,
)
from tests.repos import make_git_project, ran_stages, runner, write_params

# The real offline mirror, when the test run is given one (GLUE_DIR=../shared/data/glue make test).
MIRROR = Path(os.environ["GLUE_DIR"]).resolve() if os.environ.get("GLUE_DIR") else None


def read_raw(project, splits=tuple(SPLIT_ROWS)):
    return {split: pd.read_parquet(project / "data" / "raw" / f"{split}.parquet") for split in splits}


def read_json(project, name):
    return json.loads((project / "data" / "raw" / name).read_text())


def raw_label_names(project, split="train"):
    return datasets.Dataset.from_parquet(str(project / "data" / "raw" / f"{split}.parquet")).features["label"].names


def test_tsv_table_names_the_columns_of_every_glue_task():
    assert set(GLUE_TSV) == set(GLUE_TASKS)
    for config, tsv in GLUE_TSV.items():
        assert tuple(tsv.text) == GLUE_TASKS[config].text_columns
        assert set(tsv.files) == set(GLUE_TASKS[config].splits)


@pytest.mark.parametrize("layout", ["parquet", "tsv"])
@pytest.mark.parametrize("config", list(GLUE_TASKS))
def test_every_glue_task_loads_from_either_offline_layout(project, tiny_params, tmp_path_factory, monkeypatch,
                                                          config, layout):
    task = GLUE_TASKS[config]
    monkeypatch.setenv("GLUE_DIR", str(write_glue_task(tmp_path_factory.mktemp("glue"), config, layout)))
    write_params(project, tiny_params, dataset_config=config)
    download.main()

    assert read_json(project, "task.json") == json.loads(task.to_json())
    raw = read_raw(project, task.splits)
    expected = glue_task_frames(config, layout)
    provenance = read_json(project, "provenance.json")
    assert provenance["config"] == config and provenance["source"]["layout"] == layout
    assert len(provenance["source"]["files_sha256"]) == len(task.splits)
    for split, frame in raw.items():
        assert list(frame.columns) == [*task.text_columns, "label", "idx"]
        assert len(frame) == split_rows(split) and list(frame["idx"]) == list(range(len(frame)))
        assert frame["label"].dtype == ("float64" if task.regression else "int64")
        for column in task.text_columns:
            # GLUE's TSV files are not quoted: the bare " written after each first text stays as it is
            suffix = ' "quoted' if layout == "tsv" and column == task.text_columns[0] else ""
            assert frame[column].tolist() == [text + suffix for text in expected[split][column]]
        labels = expected[split]["label"].tolist()
        summary = provenance["splits"][split]
        assert summary["rows"] == len(frame) and len(summary["sha256"]) == 64
        if labels[0] == -1:  # unlabelled test split: -1, or NaN for a regression
            assert frame["label"].isna().all() if task.regression else set(frame["label"]) == {-1}
            assert summary.get("label_counts", summary.get("label_mean", "absent")) is None
        elif task.regression:
            assert frame["label"].tolist() == pytest.approx(labels)
            assert summary["label_mean"] == pytest.approx(sum(labels) / len(labels))
            assert summary["label_variance"] > 0
        else:
            assert frame["label"].tolist() == labels
            assert summary["label_counts"] == {name: labels.count(index) for index, name in enumerate(task.label_names)}
    if not task.regression:
        assert raw_label_names(project) == list(task.label_names)


def test_bom_and_crlf_tsv_files_read_like_plain_ones(project, tmp_path_factory, monkeypatch):
    glue_dir = write_tsv_layout(tmp_path_factory.mktemp("glue-tsv"))
    assert (glue_dir / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    download.main()
    plain = read_raw(project)
    for path in (glue_dir / "MRPC").glob("*.tsv"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    download.main()
    crlf = read_raw(project)
    for split in SPLIT_ROWS:
        pd.testing.assert_frame_equal(plain[split], crlf[split])
    assert read_json(project, "provenance.json")["splits"]["train"]["label_counts"] == {
        "not_equivalent": 24, "equivalent": 24}
    assert set(crlf["test"]["label"]) == {-1}
    assert not crlf["train"]["sentence2"].str.contains("\r").any()


def test_parquet_layout_is_copied_checked_and_recorded(project):
    download.main()
    raw = read_raw(project)
    assert {split: len(frame) for split, frame in raw.items()} == SPLIT_ROWS
    assert list(raw["train"].columns) == ["sentence1", "sentence2", "label", "idx"]
    provenance = read_json(project, "provenance.json")
    assert provenance["source"]["kind"] == "local" and provenance["source"]["layout"] == "parquet"
    assert set(provenance) == {"dataset", "config", "source", "splits"}
    assert set(provenance["splits"]["train"]) == {"rows", "label_counts", "sha256"}
    assert provenance["splits"]["train"]["label_counts"] == {"not_equivalent": 24, "equivalent": 24}
    assert raw_label_names(project) == ["not_equivalent", "equivalent"]


MIRROR_COUNTS = {
    "mrpc": {"train": {"not_equivalent": 1194, "equivalent": 2474}, "validation": {"not_equivalent": 129, "equivalent": 279},
             "test": {"not_equivalent": 578, "equivalent": 1147}},
    "rte": {"train": {"entailment": 1249, "not_entailment": 1241}, "validation": {"entailment": 146, "not_entailment": 131},
            "test": None},
}
MIRROR_ROWS = {"mrpc": {"train": 3668, "validation": 408, "test": 1725},
               "rte": {"train": 2490, "validation": 277, "test": 3000}}


@pytest.mark.skipif(MIRROR is None or not (MIRROR / "mrpc").is_dir(), reason="needs GLUE_DIR, the offline mirror")
@pytest.mark.parametrize("config", list(MIRROR_COUNTS))
def test_real_mirror_gives_its_rows_and_label_counts(project, tiny_params, monkeypatch, config):
    monkeypatch.setenv("GLUE_DIR", str(MIRROR))
    write_params(project, tiny_params, dataset_config=config)
    download.main()
    provenance = read_json(project, "provenance.json")
    assert {split: entry["rows"] for split, entry in provenance["splits"].items()} == MIRROR_ROWS[config]
    assert {split: entry["label_counts"] for split, entry in provenance["splits"].items()} == MIRROR_COUNTS[config]
    raw = read_raw(project)
    for split in SPLIT_ROWS:
        mirror = pd.read_parquet(MIRROR / config / f"{split}-00000-of-00001.parquet")
        assert raw[split]["sentence1"].tolist() == mirror["sentence1"].tolist()
        assert raw[split]["label"].tolist() == mirror["label"].tolist()


def own_data_params(project, tiny_params, folder, text_columns, label_column):
    write_params(project, tiny_params, dataset=str(folder), text_columns=list(text_columns), label_column=label_column)


OWN_DATA = [
    # (format, text columns, label column, labels as written, the task's label names)
    ("csv", ["review"], "sentiment", ["positive", "negative"], ["negative", "positive"]),
    ("jsonl", ["review"], "sentiment", ["positive", "negative", "mixed"], ["mixed", "negative", "positive"]),
    ("tsv", ["claim", "evidence"], "verdict", [2, 0, 1], ["0", "1", "2"]),
    ("json", ["text"], "stars", [10, 9, 1], ["1", "9", "10"]),
    ("parquet", ["first", "second"], "class", [1, 0], ["0", "1"]),
]


@pytest.mark.parametrize(("fmt", "text_columns", "label_column", "labels", "label_names"), OWN_DATA,
                         ids=[case[0] for case in OWN_DATA])
def test_own_data_classes_are_trains_sorted_labels(project, tiny_params, tmp_path_factory, fmt, text_columns,
                                                   label_column, labels, label_names):
    folder = write_own_data(tmp_path_factory.mktemp("own") / "reviews", fmt, text_columns, label_column, labels)
    own_data_params(project, tiny_params, folder, text_columns, label_column)
    download.main()

    task = read_json(project, "task.json")
    assert task["name"] == "reviews" and task["text_columns"] == text_columns and task["label_names"] == label_names
    assert task["test_splits"] == ["test"]
    raw = read_raw(project)
    originals = {split: pd.read_parquet(folder / f"{split}.{fmt}") if fmt == "parquet" else None for split in SPLIT_ROWS}
    for split, frame in raw.items():
        assert list(frame.columns) == [*text_columns, "label", "idx"] and len(frame) == SPLIT_ROWS[split]
        expected = [label_names.index(str(labels[row % len(labels)])) for row in range(len(frame))]
        assert frame["label"].tolist() == expected
        if originals[split] is not None:
            assert frame[text_columns[0]].tolist() == originals[split][text_columns[0]].tolist()
    assert raw_label_names(project) == label_names
    provenance = read_json(project, "provenance.json")
    assert provenance["config"] is None and provenance["source"]["layout"] == "own"
    assert sorted(provenance["source"]["files_sha256"]) == sorted(f"{split}.{fmt}" for split in SPLIT_ROWS)
    assert sum(provenance["splits"]["train"]["label_counts"].values()) == SPLIT_ROWS["train"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_a_split_read_in_chunks_is_written_as_if_read_whole(project, tiny_params, tmp_path_factory, monkeypatch, fmt):
    """Chunks of 5 rows (the stage reads 50,000 at a time): the same data/raw, a bad row named by
    its row number in the file, not in its chunk."""
    folder = write_own_data(tmp_path_factory.mktemp("own") / "reviews", fmt, ["review"], "sentiment",
                            ["positive", "negative", "mixed"])
    own_data_params(project, tiny_params, folder, ["review"], "sentiment")
    download.main()
    whole = {name: read_json(project, name) for name in ("task.json", "provenance.json")}
    whole_frames = read_raw(project)

    monkeypatch.setattr(files.table_chunks, "__defaults__", (5,))
    download.main()
    chunked = {name: read_json(project, name) for name in whole}
    for split in SPLIT_ROWS:  # the parquet files' bytes differ: a row group per chunk
        del chunked["provenance.json"]["splits"][split]["sha256"], whole["provenance.json"]["splits"][split]["sha256"]
    assert chunked == whole
    for split, frame in read_raw(project).items():
        pd.testing.assert_frame_equal(frame, whole_frames[split])

    frame = own_data_frame("validation", ["review"], "sentiment", ["positive", "negative", "mixed"], 1)
    frame.loc[13, "sentiment"] = "furious"
    if fmt == "parquet":
        frame.to_parquet(folder / "validation.parquet", index=False)
    else:
        write_frame(frame, folder / f"validation.{fmt}", fmt)
    with pytest.raises(PipelineError, match=r"validation\.\w+ row 13: label 'furious' is not one of train's labels"):
        download.main()


def test_own_data_float_labels_make_a_regression_and_test_may_be_unlabelled(project, tiny_params, tmp_path_factory):
    folder = write_own_data(tmp_path_factory.mktemp("own") / "scores", "csv", ["question", "answer"], "score", None,
                            test_labels=False, validation_name="dev")
    own_data_params(project, tiny_params, folder, ["question", "answer"], "score")
    download.main()

    task = read_json(project, "task.json")
    assert task["label_names"] is None and task["metrics"] == ["pearson", "spearmanr"]
    raw = read_raw(project)
    assert raw["validation"]["label"].tolist() == pytest.approx(pd.read_csv(folder / "dev.csv")["score"].tolist())
    assert raw["test"]["label"].isna().all() and raw["test"]["label"].dtype == "float64"
    splits = read_json(project, "provenance.json")["splits"]
    assert splits["test"] == {"rows": SPLIT_ROWS["test"], "sha256": splits["test"]["sha256"],
                              "label_mean": None, "label_variance": None}
    train = raw["train"]["label"]
    assert splits["train"]["label_mean"] == pytest.approx(train.mean())
    assert splits["train"]["label_variance"] == pytest.approx(train.var(ddof=0))


def test_own_data_without_test_file_has_no_test_split(project, tiny_params, tmp_path_factory):
    folder = write_own_data(tmp_path_factory.mktemp("own") / "notest", "jsonl", ["text"], "label", ["a", "b"])
    (folder / "test.jsonl").unlink()
    own_data_params(project, tiny_params, folder, ["text"], "label")
    download.main()
    assert read_json(project, "task.json")["test_splits"] == []
    assert sorted(path.name for path in (project / "data" / "raw").iterdir()) == [
        "provenance.json", "task.json", "train.parquet", "validation.parquet"]


def test_own_text_files_may_have_a_bom_and_crlf_lines(project, tiny_params, tmp_path_factory):
    folder = write_own_data(tmp_path_factory.mktemp("own") / "windows", "csv", ["review"], "sentiment", ["neg", "pos"])
    for path in folder.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    own_data_params(project, tiny_params, folder, ["review"], "sentiment")
    download.main()
    raw = read_raw(project)
    assert raw["train"]["label"].tolist()[:4] == [0, 1, 0, 1]
    assert not raw["train"]["review"].str.contains("\r").any()


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
    assert read_json(project, "provenance.json")["source"] == {"kind": "hub", "dataset": "nyu-mll/glue", "config": "mrpc"}


def test_hub_stsb_test_labels_become_nan(project, tiny_params, monkeypatch):
    frames = glue_task_frames("stsb", "parquet")

    monkeypatch.delenv("GLUE_DIR")
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config: datasets.DatasetDict(
        {split: datasets.Dataset.from_pandas(frame) for split, frame in frames.items()}))
    write_params(project, tiny_params, dataset_config="stsb")
    download.main()
    raw = read_raw(project)
    assert raw["test"]["label"].isna().all() and not raw["train"]["label"].isna().any()
    assert all(not math.isnan(value) for value in raw["validation"]["label"])


def test_unreachable_hub_explains_how_to_work_offline(project, monkeypatch):
    def unreachable(name, config):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("GLUE_DIR")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(PipelineError, match=r"set GLUE_DIR to the folder that contains mrpc/ \(Hub parquet files\) "
                                            r"or MRPC/ \(GLUE TSV files\)"):
        download.main()
    assert not (project / "data").exists()


@pytest.mark.slow
def test_missing_local_folder_is_a_one_line_error(tmp_path, tiny_params):
    write_params(tmp_path, tiny_params)
    result = run_stage_process("download", tmp_path, {"GLUE_DIR": str(tmp_path / "nowhere")})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"GLUE_DIR={tmp_path / 'nowhere'}: no such folder" in result.stderr
    assert not (tmp_path / "data").exists()


def write_shards(frame, folder, split, fmt, count):
    """`frame` as `count` shards <split>-0000k-of-0000n.<fmt>, as the Hub and Spark name them."""
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), count)):
        write_frame(frame.iloc[rows].reset_index(drop=True), folder / f"{split}-{index:05d}-of-{count:05d}.{fmt}", fmt)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_split_in_shards_is_read_as_the_one_file_they_make(project, tiny_params, tmp_path_factory, fmt):
    labels = ["positive", "negative", "mixed"]
    whole = write_own_data(tmp_path_factory.mktemp("whole") / "reviews", fmt, ["review"], "sentiment", labels)
    sharded = tmp_path_factory.mktemp("sharded") / "reviews"
    sharded.mkdir()
    for seed, split in enumerate(("train", "validation", "test")):
        frame = own_data_frame(split, ["review"], "sentiment", labels, seed)
        write_shards(frame, sharded, split, fmt, 3 if split != "validation" else 1)
    own_data_params(project, tiny_params, whole, ["review"], "sentiment")
    download.main()
    expected = read_raw(project)
    own_data_params(project, tiny_params, sharded, ["review"], "sentiment")
    download.main()
    for split, frame in read_raw(project).items():
        pd.testing.assert_frame_equal(frame, expected[split])  # idx runs on across the shards
    assert len(read_json(project, "provenance.json")["source"]["files_sha256"]) == 7

    bad = own_data_frame("train", ["review"], "sentiment", labels, 0)
    bad.loc[len(bad) - 2, "review"] = " "  # in the last shard
    write_shards(bad, sharded, "train", fmt, 3)
    last_shard_row = len(bad) - 2 - sum(len(rows) for rows in np.array_split(np.arange(len(bad)), 3)[:2])
    with pytest.raises(PipelineError, match=rf"train-00002-of-00003\.{fmt} row {last_shard_row}: review is empty"):
        download.main()
    write_frame(bad, sharded / f"train.{fmt}", fmt)
    with pytest.raises(PipelineError, match=rf"split 'train' has 2 files or sets of shards: .*train\.{fmt}; "
                                            rf".*train-\*\.{fmt}; keep one"):
        download.main()


@pytest.mark.slow
def test_shards_tracked_by_dvc_import_url_feed_the_pipeline(tmp_path, tiny_params, glue_parquet_dir):
    """docs/large-data.md's way to data larger than one machine's disk or patience: the shards stay where
    they are (object storage; here a folder), `dvc import-url` tracks them, `dvc update` fetches new ones."""
    labels = ["positive", "negative"]
    storage = tmp_path / "bucket" / "reviews"
    storage.mkdir(parents=True)
    for seed, split in enumerate(("train", "validation")):
        write_shards(own_data_frame(split, ["review"], "sentiment", labels, seed), storage, split, "parquet", 2)
    root = tmp_path / "project"
    env = make_git_project(root, {**tiny_params, "dataset": "reviews", "text_columns": ["review"],
                                  "label_column": "sentiment", "max_steps": 2}, glue_parquet_dir)
    run = runner(root, env)
    run("dvc", "import-url", str(storage), "reviews")
    assert ran_stages(run("dvc", "repro", "download")) == ["download"]
    rows = read_json(root, "provenance.json")["splits"]
    assert {split: rows[split]["rows"] for split in rows} == {"train": SPLIT_ROWS["train"],
                                                             "validation": SPLIT_ROWS["validation"]}
    # A new shard upstream: `dvc update` brings it, and download runs again on it.
    write_frame(own_data_frame("validation", ["review"], "sentiment", labels, 5), storage / "train-00002.parquet", "parquet")
    run("dvc", "update", "reviews.dvc")
    assert ran_stages(run("dvc", "repro", "download")) == ["download"]
    provenance = read_json(root, "provenance.json")
    assert provenance["splits"]["train"]["rows"] == SPLIT_ROWS["train"] + SPLIT_ROWS["validation"]
    assert len(provenance["source"]["files_sha256"]) == 5
