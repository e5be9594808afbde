"""Atomic outputs: a stage leaves either its previous complete output or its new one."""

import contextlib
import csv
import errno
import json
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary sibling of `path`; it replaces `path` only if the block succeeds.

    A killed or failing stage therefore leaves either the previous complete output or
    nothing, never a half-written file or folder that looks valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named per process: writers of one output at once (search workers sharing a folder, each
    # drawing the study report) never write into, or remove, each other's staging.
    staging = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    _remove(staging)
    try:
        yield staging
        _put_in_place(staging, path)
    finally:
        _remove(staging)


def write_json(path, data):
    with atomic_output(path) as staging:
        staging.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path, header, rows):
    with atomic_output(path) as staging, open(staging, "w", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(header)
        writer.writerows(rows)


def link_tree(source, destination, skip=()):
    """Hard-link every file of folder `source` into `destination` (copy where the filesystem
    cannot link, e.g. across devices), except the names in `skip`; return how many were copied.

    A hard link costs no time or disk while the stage runs, and DVC's content-addressed cache
    stores each file once however many outputs hold it. (When DVC then saves the outputs, its
    default `reflink,copy` cache type leaves each folder its own copy: free on a filesystem with
    reflinks, one more copy of the model otherwise; measured on ext4.) Stages replace outputs by
    renaming (`atomic_output`) and never write into a file, so no folder changes under the other."""
    copied = 0
    for file in sorted(Path(source).rglob("*")):
        if not file.is_file() or file.name in skip:
            continue
        target = Path(destination) / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
            copied += 1
    return copied


def read_csv(path):
    with open(path, newline="") as csv_file:
        return list(csv.DictReader(csv_file))


def _put_in_place(staging, path):
    """Rename `staging` to `path`. A folder cannot replace a folder, so the old one is first
    renamed out of the way; if another writer put its own in place meanwhile, the last wins."""
    if not staging.is_dir():
        if path.is_dir() and not path.is_symlink():
            _remove(path)
        os.replace(staging, path)
        return
    for _ in range(100):
        retired = path.with_name(f".{path.name}.{os.getpid()}.old")
        _remove(retired)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, retired)
        _remove(retired)
        try:
            os.rename(staging, path)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise OSError(errno.EBUSY, f"{path} kept being replaced by other writers")


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
