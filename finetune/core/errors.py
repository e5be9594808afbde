"""The one error type users see, and the entry point that shows it as one line."""

import gc
import sys


class PipelineError(Exception):
    """A problem the user can fix (bad param, missing data, unknown checkpoint).

    Stages raise it with a message that names the offending key, file or value;
    `run_stage` prints it as one line and exits non-zero, without a traceback.
    """


def run_stage(main):
    """Run a stage's (or a command's) `main`, turning a PipelineError into `error: ...`, exit 1."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    # Python's shutdown garbage-collects every object torch, transformers and datasets made at import:
    # about a second per stage process (measured), which a DVC run pays per stage. Frozen objects are
    # left for the operating system to reclaim; nothing else about the exit changes.
    gc.freeze()
