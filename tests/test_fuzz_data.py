"""Property: whatever a user's data files hold, the download stage either writes data/raw/
(every row of every file, checked) or stops with one line naming the file, exit status 1, no
traceback and nothing written.

Hypothesis draws a folder of train, validation and test files in every supported format,
with text drawn from all of Unicode (empty and very long fields, quotes, separators, line
breaks), labels that are class names, integers, floats or missing, columns missing or extra,
duplicated rows, and then the bytes: encodings (UTF-8 with and without a byte-order mark,
Latin-1, UTF-16) and line endings (LF, CRLF, CR)."""

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from finetune.core.errors import run_stage
from stages import download
from tests.conftest import write_params

FORMATS = ["csv", "tsv", "json", "jsonl", "parquet"]
LONG_TEXT = st.builds(lambda words: " ".join(["long"] * words), st.just(2500))  # 12,500 characters
ODD_TEXT = st.one_of(LONG_TEXT, st.sampled_from(["", " ", '"quoted", and, commas', "tab\there", "line\nbreak",
                                                  "naïve café ☕", "\ufeffbom inside"]))
TEXT = st.one_of(st.text(min_size=1, max_size=40).filter(str.strip), ODD_TEXT)
LABELS = {"names": st.sampled_from(["pos", "neg", "neutral"]), "integers": st.integers(-1, 3),
          "floats": st.floats(-2, 5, allow_nan=False)}
ODD_LABEL = st.one_of(st.none(), st.just(""), st.just("maybe"), st.just(2.5), st.just("1e3"))


@st.composite
def split_frames(draw):
    """{split: frame} of review and sentiment columns, labels of one kind (class names, integers
    or floats), with now and then an odd label or text, duplicated rows, a column dropped or added."""
    label = LABELS[draw(st.sampled_from(sorted(LABELS)))]
    row = st.tuples(st.one_of(TEXT, ODD_TEXT) if draw(st.booleans()) else TEXT,
                    st.one_of(label, ODD_LABEL) if draw(st.integers(0, 3)) == 0 else label)
    frames = {}
    for split in ("train", "validation", "test"):
        rows = draw(st.lists(row, min_size=0 if split == "test" else 1, max_size=8))
        if draw(st.integers(0, 4)) == 0:
            rows = rows + rows[:2]  # duplicated rows
        frame = pd.DataFrame(rows, columns=["review", "sentiment"])
        mutation = draw(st.sampled_from(["none"] * 12 + ["drop_label", "drop_text", "extra_column"]))
        if mutation == "drop_label":
            frame = frame.drop(columns="sentiment")
        elif mutation == "drop_text":
            frame = frame.drop(columns="review")
        elif mutation == "extra_column":
            frame = frame.assign(extra=range(len(frame)))
        frames[split] = frame
    return frames


def encode(text, encoding, newline):
    # A Latin-1 file holds only what Latin-1 can: other characters are what its editor would write.
    return text.replace("\n", newline).encode(encoding, errors="replace")


def write_file(path, frame, fmt, encoding, newline):
    if fmt == "parquet":
        # A parquet column has one type: mixed labels are written as the text they would be in a CSV.
        for column in frame.columns:
            if len({type(value) for value in frame[column] if value is not None}) > 1:
                frame = frame.assign(**{column: [None if value is None else str(value) for value in frame[column]]})
        frame.to_parquet(path, index=False)
        return
    if fmt in ("csv", "tsv"):
        text = frame.to_csv(sep="," if fmt == "csv" else "\t", index=False, lineterminator="\n")
    elif fmt == "json":
        text = json.dumps(frame.to_dict("records"), ensure_ascii=False)
    else:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in frame.to_dict("records"))
    path.write_bytes(encode(text, encoding, newline))


@pytest.fixture(scope="module")
def own_params(tiny_params):
    return {**tiny_params, "dataset": "reviews", "text_columns": ["review"], "label_column": "sentiment"}


@settings(max_examples=int(os.environ.get("FUZZ_DATA_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=split_frames(), fmt=st.sampled_from(FORMATS),
       encoding=st.sampled_from(["utf-8"] * 3 + ["utf-8-sig"] * 2 + ["latin-1", "utf-16"]),
       newline=st.sampled_from(["\n"] * 3 + ["\r\n"] * 2 + ["\r"]), with_test=st.booleans())
def test_any_data_files_load_or_stop_with_one_line(own_params, monkeypatch, frames, fmt, encoding, newline, with_test):
    with tempfile.TemporaryDirectory() as project_dir:
        project = Path(project_dir)
        write_params(project, own_params)
        (project / "reviews").mkdir()
        for split, frame in frames.items():
            if split != "test" or with_test:
                write_file(project / "reviews" / f"{split}.{fmt}", frame, fmt, encoding, newline)
        stderr = io.StringIO()
        with contextlib.chdir(project), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                run_stage(download.main)
            except SystemExit as stop:
                assert stop.code == 1
                message = stderr.getvalue()
                assert message.count("\n") == 1 and message.startswith("error: "), message
                assert "reviews" in message or "params.yaml" in message, message  # names the file or key
                assert not (project / "data").exists()
                event("stopped: " + re.sub(r"(/\S+|'.*?'|\d+)", "_", message)[:70])
                return
        event("loaded")
        splits = ["train", "validation", *(["test"] if with_test else [])]
        for split in splits:
            written = pd.read_parquet(project / "data" / "raw" / f"{split}.parquet")
            assert len(written) == len(frames[split]), split
