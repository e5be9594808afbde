"""`finetune predict` on the tiny model: every file type, in the input's order with its ids, the
metrics of a labelled file equal to the evaluate stage's, a multi-label model, and bad input (one
line, nothing written)."""

import csv
import json

import pandas as pd
import pytest

from finetune.commands.cli import main as cli
from stages import download, evaluate, publish, tokenize, train
from tests.conftest import TOPICS, multi_label_frame, run_stages_in, synthetic_pairs, write_frame, write_multi_label_data

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")


# Up to publish, without export: these tests use torch.
PUBLISHED = (download, tokenize, train, evaluate, publish)


@pytest.fixture(scope="module")
def mrpc_project(tmp_path_factory, tiny_params, glue_parquet_dir):
    return run_stages_in(tmp_path_factory.mktemp("predict"), tiny_params, PUBLISHED, glue_parquet_dir)


def read_rows(path):
    with open(path, newline="") as output:
        return list(csv.DictReader(output))


def test_every_file_type_gives_the_same_predictions_in_the_input_order(mrpc_project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(mrpc_project)
    frame = synthetic_pairs(40, seed=7).drop(columns="label").sample(frac=1, random_state=0)  # ids out of order
    outputs = {}
    for fmt in FORMATS:
        write_frame(frame, tmp_path / f"new.{fmt}", fmt)
        cli(["predict", str(tmp_path / f"new.{fmt}"), "-o", str(tmp_path / f"{fmt}.csv")])
        outputs[fmt] = read_rows(tmp_path / f"{fmt}.csv")
    assert [row["idx"] for row in outputs["csv"]] == [str(index) for index in frame["idx"]]
    assert list(outputs["csv"][0]) == ["idx", "prediction", "probability_not_equivalent", "probability_equivalent"]
    assert all(outputs[fmt] == outputs["csv"] for fmt in FORMATS)
    assert {row["prediction"] for row in outputs["csv"]} <= {"not_equivalent", "equivalent"}
    assert "accuracy" not in capsys.readouterr().out  # no labels, no metrics


def test_a_labelled_file_gets_the_evaluate_stage_metrics(mrpc_project, glue_parquet_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(mrpc_project)
    validation = glue_parquet_dir / "mrpc" / "validation-00000-of-00001.parquet"
    cli(["predict", str(validation), "-o", str(tmp_path / "validation.csv")])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    evaluation = json.loads((mrpc_project / "metrics" / "evaluation.json").read_text())
    for metric in ("accuracy", "f1", "loss"):
        key = f"validation_{metric}"
        assert (f"{metric} {evaluation[key]:.4f} [{evaluation[key + '_ci_low']:.4f}, "
                f"{evaluation[key + '_ci_high']:.4f}]") in printed
    stage_rows = read_rows(mrpc_project / "metrics" / "predictions" / "validation.csv")
    assert [row["prediction"] for row in read_rows(tmp_path / "validation.csv")] == [row["prediction"] for row in stage_rows]


def test_a_folder_of_shards_is_read_in_name_order(mrpc_project, tmp_path, monkeypatch):
    monkeypatch.chdir(mrpc_project)
    frame = synthetic_pairs(30, seed=3).drop(columns="label")
    (tmp_path / "shards").mkdir()
    for number, start in enumerate(range(0, 30, 10)):
        write_frame(frame.iloc[start:start + 10], tmp_path / "shards" / f"part-{number:05d}.parquet", "parquet")
    cli(["predict", str(tmp_path / "shards"), "-o", str(tmp_path / "out.csv")])
    assert [row["idx"] for row in read_rows(tmp_path / "out.csv")] == [str(index) for index in range(30)]


def test_without_an_id_column_rows_are_numbered(mrpc_project, tmp_path, monkeypatch):
    monkeypatch.chdir(mrpc_project)
    write_frame(synthetic_pairs(5, seed=1).drop(columns=["label", "idx"]), tmp_path / "new.csv", "csv")
    cli(["predict", str(tmp_path / "new.csv"), "-o", str(tmp_path / "out.csv"), "--id-column", "row"])
    assert [row["row"] for row in read_rows(tmp_path / "out.csv")] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda frame: frame.drop(columns="sentence2"), "new.csv: missing column 'sentence2' (found: sentence1, label, idx)"),
    (lambda frame: frame.assign(sentence1=frame["sentence1"].where(frame.index != 3, " ")),
     "new.csv row 3: sentence1 is empty or not text (' ')"),
    (lambda frame: frame.assign(label=frame["label"].where(frame.index != 2, 7)),
     "new.csv row 2: label '7' is not one of not_equivalent, equivalent or a class index"),
])
def test_bad_input_stops_with_one_line_and_writes_nothing(mrpc_project, tmp_path, monkeypatch, capsys, damage, message):
    monkeypatch.chdir(mrpc_project)
    write_frame(damage(synthetic_pairs(8, seed=2)), tmp_path / "new.csv", "csv")
    with pytest.raises(SystemExit) as stopped:
        cli(["predict", str(tmp_path / "new.csv"), "-o", str(tmp_path / "out.csv")])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and error.endswith(message) and "\n" not in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.csv"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("new.json", '[{"sentence1": "a", ', "new.json"),
    ("new.txt", "a,b\n", "new.txt: not a file the pipeline reads (.csv, .tsv, .json, .jsonl, .parquet)"),
    ("missing.csv", None, "missing.csv: no such file or folder"),
])
def test_an_unreadable_file_is_named(mrpc_project, tmp_path, monkeypatch, capsys, name, text, message):
    monkeypatch.chdir(mrpc_project)
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit):
        cli(["predict", str(tmp_path / name), "-o", str(tmp_path / "out.csv")])
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error
    assert not (tmp_path / "out.csv").exists()


def test_a_model_folder_without_task_json_says_what_to_run(mrpc_project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((mrpc_project / "params.yaml").read_text())
    write_frame(synthetic_pairs(3, seed=1), tmp_path / "new.csv", "csv")
    with pytest.raises(SystemExit):
        cli(["predict", "new.csv"])
    assert capsys.readouterr().err.strip() == ("error: models/task.json not found: models is not a model folder the "
                                               "publish stage made (run `dvc repro publish`)")


def test_a_multi_label_model_predicts_label_sets_and_scores_them(tmp_path_factory, tiny_params, tmp_path, monkeypatch,
                                                                  capsys):
    folder = write_multi_label_data(tmp_path_factory.mktemp("tagged") / "tagged", "list")
    project_dir = run_stages_in(tmp_path_factory.mktemp("multi"), {**tiny_params, "dataset": str(folder),
                                "text_columns": ["text"], "label_column": "topics"}, PUBLISHED)
    monkeypatch.chdir(project_dir)
    records = multi_label_frame("validation", 1)
    write_frame(pd.DataFrame.from_records(records), tmp_path / "tagged.parquet", "parquet")
    cli(["predict", str(tmp_path / "tagged.parquet"), "-o", str(tmp_path / "out.csv"), "--label-column", "topics"])
    rows = read_rows(tmp_path / "out.csv")
    assert len(rows) == len(records) and list(rows[0]) == ["idx", "prediction", *(f"probability_{t}" for t in TOPICS)]
    assert all(set(json.loads(row["prediction"])) <= set(TOPICS) for row in rows)
    assert "micro_f1" in capsys.readouterr().out


def test_a_file_read_in_many_chunks_predicts_as_in_one(mrpc_project, glue_parquet_dir, tmp_path, monkeypatch, capsys):
    from finetune.serving import predict

    monkeypatch.chdir(mrpc_project)
    validation = str(glue_parquet_dir / "mrpc" / "validation-00000-of-00001.parquet")
    cli(["predict", validation, "-o", str(tmp_path / "whole.csv")])
    monkeypatch.setattr(predict, "CHUNK_ROWS", 3)  # 16 rows: six chunks, the last of one row
    cli(["predict", validation, "-o", str(tmp_path / "chunked.csv")])
    whole, chunked = capsys.readouterr().out.strip().splitlines()[1::2]
    assert read_rows(tmp_path / "chunked.csv") == read_rows(tmp_path / "whole.csv") and chunked == whole
