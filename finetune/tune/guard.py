"""Run a command so that it ends with the process that started it, whatever way that one ends.

    python -m finetune.tune.guard -- dvc exp run --temp -n NAME ...

`finetune search` starts each trial's `dvc exp run` through this guard, in a session of its own
(so that ^C in a terminal or a kill of the search's process group reaches the guard alone, and
the guard decides). Linux tells the guard when its parent dies, even by SIGKILL
(PR_SET_PDEATHSIG), and the guard then ends its whole process group: dvc and the stage it is
running. Without it, a killed search left `dvc exp run` and its train stage running as orphans,
training the very params that the search's retry then ran a second time (seen: two trainings
of one trial sharing the 2 cores). A plain child cannot be told: DVC ignores SIGINT while a stage
runs, and a SIGTERM ends dvc but not the stage it started.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 10
POLL_SECONDS = 0.5


def main(argv):
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python -m finetune.tune.guard -- COMMAND ...", file=sys.stderr)
        return 2
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        return 1
    ending_since = []

    def end_group(signum, frame):
        for ignored in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # the group's signal reaches this process too
            signal.signal(ignored, signal.SIG_IGN)
        ending_since.append(time.monotonic())
        os.killpg(0, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, end_group)
    if ending_since:
        return 1
    child = subprocess.Popen(argv[1:])
    while child.poll() is None:
        time.sleep(POLL_SECONDS)
        if ending_since and time.monotonic() - ending_since[0] > GRACE_SECONDS:
            break
    if ending_since:  # whatever of dvc's stage is left, and this process with it
        os.killpg(0, signal.SIGKILL)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
