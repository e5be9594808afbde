"""The progress lines of long stages (finetune/data/progress.py): what a user of a large set reads."""

import io

import pytest

from finetune.data import progress as progress_module
from finetune.data.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return clock


def test_a_line_every_interval_with_rows_per_second_and_the_time_left(clock):
    stream = io.StringIO()
    progress = Progress("tokenize: train", 400_000, stream=stream)
    clock.now += 4
    progress.advance(40_000)  # before the first interval: nothing
    clock.now += 6
    progress.advance(60_000)
    clock.now += 10
    progress.advance(100_000)
    assert stream.getvalue().splitlines() == [
        "tokenize: train: 100,000 of 400,000 rows (25%), 10,000 rows/s, 30 s left",
        "tokenize: train: 200,000 of 400,000 rows (50%), 10,000 rows/s, 20 s left",
    ]


def test_work_that_ends_within_the_interval_prints_nothing(clock):
    stream = io.StringIO()
    progress = Progress("evaluate: validation", 408, stream=stream)
    clock.now += 30
    progress.advance(408)
    assert stream.getvalue() == ""


def test_the_time_left_follows_the_work_where_rows_cost_unequally(clock):
    """Length-sorted batches: the first half of the rows is a fifth of the tokens."""
    stream = io.StringIO()
    progress = Progress("evaluate: test", 1000, stream=stream, total_work=10_000)
    clock.now += 20
    progress.advance(500, work=2_000)
    assert stream.getvalue() == "evaluate: test: 500 of 1,000 rows (50%), 25 rows/s, 1 min 20 s left\n"


def test_a_stream_of_unknown_length_gives_rows_and_speed():
    stream = io.StringIO()
    progress = Progress("download: train", None, stream=stream, interval=0)
    progress.advance(50_000)
    assert stream.getvalue().startswith("download: train: 50,000 rows, ")


def test_durations_read_as_a_person_says_them():
    assert [duration(seconds) for seconds in (9, 146, 7500)] == ["9 s", "2 min 26 s", "2 h 5 min"]
