"""Bad files of your own data: one line naming the file, row and problem, exit status 1, and
nothing written. Each case runs the download stage's entry point (`run_stage`)."""

import json
import re
import shutil

import pandas as pd
import pytest

from stages import download
from tests.conftest import TOPICS, write_multi_label_data, write_own_data, write_params
from tests.test_bad_input import run_failing


def damaged(write_files, damage):
    """A writer of a data folder: `write_files(folder)`, then `damage(folder)`."""
    def write(folder):
        write_files(folder)
        damage(folder)
        return folder
    return write


def own_files(fmt, text_columns, label_column, labels, damage=lambda folder: None):
    """Writes your own data (train, validation and test files), then damages it."""
    return damaged(lambda folder: write_own_data(folder, fmt, text_columns, label_column, labels), damage)


def own_cell(file_name, row, column, value):
    """Set one cell of one of your files (csv or jsonl)."""
    def damage(folder):
        path = folder / file_name
        frame = pd.read_json(path, lines=True) if path.suffix == ".jsonl" else pd.read_csv(path)
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        if path.suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_csv(path, index=False)
    return damage


def replaced_line(file_name, line_number, content):
    """Replace line `line_number` (1-based) of one of your files with `content` (bytes)."""
    def damage(folder):
        path = folder / file_name
        lines = path.read_bytes().split(b"\n")
        lines[line_number - 1] = content
        path.write_bytes(b"\n".join(lines))
    return damage


def latin1_train(folder):
    (folder / "train.csv").write_bytes(b"review,sentiment\na fine cat,pos\ncaf\xe9 dog,neg\n")


REVIEWS = ("csv", ["review"], "sentiment", ["neg", "pos"])
SCORES = ("jsonl", ["question", "answer"], "score", None)

# (id, how the data folder is written, text_columns, label_column, regular expression of the error line after "error: ")
BAD_OWN_DATA = [
    ("text-column-absent", own_files(*REVIEWS), ["text"], "sentiment",
     r".*/reviews/train.csv: missing column 'text' \(found: review, sentiment\)"),
    ("label-column-absent", own_files(*REVIEWS), ["review"], "stars",
     r".*/reviews/train.csv: missing column 'stars' \(found: review, sentiment\)"),
    ("text-column-absent-in-test", own_files(*REVIEWS, lambda folder: pd.read_csv(folder / "test.csv").rename(
        columns={"review": "text"}).to_csv(folder / "test.csv", index=False)), ["review"], "sentiment",
     r".*/reviews/test.csv: missing column 'review' \(found: text, sentiment\)"),
    ("split-missing", own_files(*REVIEWS, lambda folder: (folder / "validation.csv").unlink()), ["review"], "sentiment",
     r"split 'validation' missing: no file validation or dev \(\.csv, \.tsv, \.json, \.jsonl or \.parquet\) "
     r"in .*/reviews"),
    ("two-files-for-a-split", own_files(*REVIEWS, lambda folder: shutil.copy(folder / "validation.csv",
                                                                              folder / "dev.jsonl")),
     ["review"], "sentiment", r"split 'validation' has 2 files or sets of shards: .*/reviews/validation.csv; "
     r".*/reviews/dev.jsonl; keep one \(shards: of one format\)"),
    ("label-unseen-in-train", own_files(*REVIEWS, own_cell("validation.csv", 2, "sentiment", "meh")), ["review"],
     "sentiment", r".*/reviews/validation.csv row 2: label 'meh' is not one of train's labels \(neg, pos\)"),
    ("label-empty-in-train", own_files(*REVIEWS, own_cell("train.csv", 4, "sentiment", None)), ["review"], "sentiment",
     r".*/reviews/train.csv row 4: no label in column 'sentiment' \(only a test file may lack labels\)"),
    ("regression-label-not-a-number", own_files(*SCORES, own_cell("validation.jsonl", 1, "score", "high")),
     ["question", "answer"], "score",
     r".*/reviews/validation.jsonl row 1: label 'high' is not a number \(train's labels are numbers: a regression\)"),
    ("empty-text", own_files(*SCORES, own_cell("test.jsonl", 3, "answer", "")), ["question", "answer"], "score",
     r".*/reviews/test.jsonl row 3: answer is empty or not text \(''\)"),
    ("not-utf8", own_files(*REVIEWS, latin1_train), ["review"], "sentiment",
     r".*/reviews/train.csv: not UTF-8 \(byte 0xe9 at offset 35, line 3\); save it as UTF-8"),
    ("unquoted-comma", own_files(*REVIEWS, replaced_line("validation.csv", 4, b"a cat, a dog,pos")), ["review"], "sentiment",
     r".*/reviews/validation.csv row 2: 3 cells but 2 columns \(review, sentiment\); a text with an unquoted ','\?"),
    ("broken-json-line", own_files(*SCORES, replaced_line("train.jsonl", 3, b'{"question": "a cat",')),
     ["question", "answer"], "score",
     r".*/reviews/train.jsonl: not valid JSON lines \(line 3: Expecting property name enclosed in double quotes\)"),
    ("label-also-a-text-column", own_files(*REVIEWS), ["review", "sentiment"], "sentiment",
     r"params.yaml: text_columns must not include label_column \('sentiment'\), 'label' or 'idx' \(data/raw's names "
     r"for the label and row number\), got \['review', 'sentiment'\]"),
]


@pytest.mark.parametrize(("write", "text_columns", "label_column", "message"), [case[1:] for case in BAD_OWN_DATA],
                         ids=[case[0] for case in BAD_OWN_DATA])
def test_bad_own_data_is_named_with_file_row_and_problem(project, tiny_params, tmp_path_factory, capsys, write,
                                                         text_columns, label_column, message):
    folder = write(tmp_path_factory.mktemp("own") / "reviews")
    write_params(project, tiny_params, dataset=str(folder), text_columns=text_columns, label_column=label_column)
    status, stderr = run_failing(download, capsys)
    assert status == 1
    assert stderr.count("\n") == 1
    assert re.fullmatch(f"error: {message}\n", stderr), stderr
    assert not (project / "data").exists()


def tagged_files(form, damage=lambda folder: None, fmt=None):
    """A multi-label set (tests/conftest.py's TOPICS) in one of its forms, then damaged."""
    return damaged(lambda folder: write_multi_label_data(folder, form, fmt), damage)


def tagged_cell(file_name, row, column, value):
    """Set one cell of a multi-label file, jsonl (any JSON value) or csv (text as written)."""
    def damage(folder):
        path = folder / file_name
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines()]
            records[row][column] = value
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame.loc[row, column] = value
            frame.to_csv(path, index=False)
    return damage


LISTS = {"label_column": "topics"}
DELIMITED = {"label_column": "topics", "label_delimiter": "|"}
FLAGS = {"label_column": list(TOPICS)}
# (id, how the data folder is written, params, regular expression of the error line after "error: ")
BAD_MULTI_LABEL_DATA = [
    ("unknown-label-in-validation", tagged_files("list", tagged_cell("validation.jsonl", 2, "topics", ["times", "sport"])),
     LISTS, r".*/tagged/validation.jsonl row 2: label 'sport' is not one of train's labels \(animals, places, times\)"),
    ("empty-label-list", tagged_files("list", tagged_cell("train.jsonl", 3, "topics", [])), LISTS,
     r".*/tagged/train.jsonl row 3: no label set \(an empty label list\); set allow_empty_labels: true if a text "
     r"may have none"),
    ("neither-list-nor-label", tagged_files("list", tagged_cell("validation.jsonl", 1, "topics", None)), LISTS,
     r".*/tagged/validation.jsonl row 1: no label in column 'topics' \(only a test file may lack labels\)"),
    ("a-name-not-a-list", tagged_files("list", tagged_cell("train.jsonl", 5, "topics", "places")), LISTS,
     r".*/tagged/train.jsonl row 5: column 'topics' holds 'places', not a list of label names \(set label_delimiter "
     r"for names in one text cell\)"),
    ("empty-delimited-cell", tagged_files("delimited", tagged_cell("train.csv", 0, "topics", "")), DELIMITED,
     r".*/tagged/train.csv row 0: no label in column 'topics' \(only a test file may lack labels\)"),
    ("empty-name-between-delimiters", tagged_files("delimited", tagged_cell("validation.csv", 4, "topics",
                                                                           "animals||times")), DELIMITED,
     r".*/tagged/validation.csv row 4: label list 'animals\|\|times' has an empty name between '\|' delimiters"),
    ("flags-all-empty", tagged_files("flags", tagged_cell("validation.csv", 6, list(TOPICS), "")), FLAGS,
     r".*/tagged/validation.csv row 6: no label in columns animals, places, times \(only a test file may lack labels\)"),
    ("flags-all-zero", tagged_files("flags", tagged_cell("train.csv", 2, list(TOPICS), "0")), FLAGS,
     r".*/tagged/train.csv row 2: no label set \(an empty label list\); set allow_empty_labels: true if a text "
     r"may have none"),
    ("flag-not-0-or-1", tagged_files("flags", tagged_cell("train.csv", 7, "places", "yes")), FLAGS,
     r".*/tagged/train.csv row 7: column 'places' must be 0 or 1, got 'yes'"),
    ("flag-column-absent", tagged_files("flags"), {"label_column": ["animals", "plants"]},
     r".*/tagged/train.csv: missing column 'plants' \(found: text, animals, places, times\)"),
]


@pytest.mark.parametrize(("write", "changes", "message"), [case[1:] for case in BAD_MULTI_LABEL_DATA],
                         ids=[case[0] for case in BAD_MULTI_LABEL_DATA])
def test_bad_multi_label_data_is_named_with_file_row_and_problem(project, tiny_params, tmp_path_factory, capsys, write,
                                                                 changes, message):
    folder = write(tmp_path_factory.mktemp("own") / "tagged")
    write_params(project, tiny_params, dataset=str(folder), text_columns=["text"], **changes)
    status, stderr = run_failing(download, capsys)
    assert status == 1
    assert stderr.count("\n") == 1
    assert re.fullmatch(f"error: {message}\n", stderr), stderr
    assert not (project / "data").exists()


@pytest.mark.parametrize("form", ["list", "delimited", "flags"])
def test_allow_empty_labels_lets_a_row_have_none(project, tiny_params, tmp_path_factory, capsys, form):
    file_name, column = ("train.jsonl", "topics") if form == "list" else ("train.csv", "topics")
    empty = {"list": [], "delimited": "", "flags": "0"}[form]
    folder = tagged_files(form, tagged_cell(file_name, 3, list(TOPICS) if form == "flags" else column, empty))(
        tmp_path_factory.mktemp("own") / "tagged")
    changes = {"list": LISTS, "delimited": DELIMITED, "flags": FLAGS}[form]
    write_params(project, tiny_params, dataset=str(folder), text_columns=["text"], allow_empty_labels=True, **changes)
    download.main()
    train = pd.read_parquet(project / "data" / "raw" / "train.parquet")
    assert list(train["label"][3]) == [] and len(train["label"][4]) > 0
