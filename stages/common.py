"""What every stage shares: the error type users see, the entry point and atomic outputs."""

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path


class PipelineError(Exception):
    """A problem the user can fix (bad param, missing data, unknown checkpoint).

    Stages raise it with a message that names the offending key, file or value;
    `run_stage` prints it as one line and exits non-zero, without a traceback.
    """


def run_stage(main):
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary sibling of `path`; it replaces `path` only if the block succeeds.

    A killed or failing stage therefore leaves either the previous complete output or
    nothing, never a half-written file or folder that looks valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.incomplete")
    _remove(staging)
    try:
        yield staging
        _remove(path)
        os.replace(staging, path)
    finally:
        _remove(staging)


def write_json(path, data):
    with atomic_output(path) as staging:
        staging.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
