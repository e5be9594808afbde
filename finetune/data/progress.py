"""A progress line for work over many rows: done of total, rows/s and the time left, every few seconds.

Lines, not a redrawn bar: stages run under `dvc repro` and `dvc exp run --queue`, whose output is a
log file as often as a terminal. Work that ends before the first interval prints nothing, so
MRPC's stages stay as quiet as they were.
"""

import sys
import time

# Seconds between two lines of one piece of work.
INTERVAL = 10.0


class Progress:
    """`advance(n)` as work gets done; a line to stderr when INTERVAL has passed since the last one:
    "<what>: 120,000 of 390,965 rows (31%), 1,850 rows/s, 2 min 26 s left" (`total` None, as a file
    read as it streams: "<what>: 120,000 rows, 1,850 rows/s"). `total_work`: where rows cost unequally
    (length-sorted batches: the last are the longest), the time left is estimated from the work done,
    each `advance` saying how much."""

    def __init__(self, what, total, unit="rows", interval=INTERVAL, stream=None, total_work=None):
        self.what, self.total, self.unit, self.interval = what, total, unit, interval
        self.stream = stream  # None: sys.stderr when a line is printed (so a copy in another process prints there)
        self.done, self.total_work, self.work_done = 0, total_work, 0
        self.started = self.last_line = time.monotonic()

    def advance(self, count, work=0):
        self.work_done += work
        self.done = self.done + count if self.total is None else min(self.total, self.done + count)
        now = time.monotonic()
        if now - self.last_line >= self.interval and self.done != self.total:
            self.last_line = now
            print(self.line(now), file=self.stream or sys.stderr, flush=True)

    def line(self, now=None):
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.what}: {self.done:,} {self.unit}, {rate:,.0f} {self.unit}/s"
        if self.total_work and self.work_done:
            left = f", {duration(round(elapsed * (self.total_work - self.work_done) / self.work_done))} left"
        else:
            left = f", {duration(round((self.total - self.done) / rate))} left" if rate else ""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"{self.what}: {self.done:,} of {self.total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s{left}"


def duration(seconds):
    """"2 h 5 min", "2 min 26 s", "9 s"."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
