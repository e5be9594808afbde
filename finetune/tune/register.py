"""`finetune pick --promote`'s last steps: make a confirmed run the committed, tagged model, or
leave the repository as it was.

The steps change the repository one after the other (a branch, `dvc exp apply`, selection.json,
`dvc repro`, a commit, a tag, the pushes); a failure half-way would leave a branch without its
commit, a workspace with another run's params, or a tag without its data. So each failure puts
back what the steps changed: the original branch checked out at its original commit, the branch
and tag made deleted, the work tree and DVC's outputs as before. The pushes come last, data
first: a remote never gets a tag whose model it cannot pull.
"""

import dataclasses
import json
import re
import subprocess
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.paths import SELECTION_FILE
from finetune.reporting.model_card import ARTIFACT_NAME as ARTIFACT


@dataclasses.dataclass
class _Start:
    branch: str | None  # None: a detached HEAD
    commit: str
    untracked: set
    made: dict = dataclasses.field(default_factory=dict)  # "branch", "tag": what the steps created


def register(name, evidence, message, branch=None, push=None):
    """Apply experiment `name`, write `evidence` to selection.json, commit with `message` and tag the
    next model version (on a new `branch`, pushed to `push`); returns the tag. A failing step
    restores the repository and raises one line that names it."""
    start = _Start(_git_output("symbolic-ref", "-q", "--short", "HEAD", check=False) or None,
                   _git_output("rev-parse", "HEAD"), _untracked())
    step = "branch creation"
    try:
        if branch:
            _run(["git", "checkout", "-q", "-b", branch])
            start.made["branch"] = branch
        step = "dvc exp apply"
        _run(["dvc", "exp", "apply", name])
        step = "writing selection.json"
        SELECTION_FILE.write_text(json.dumps(evidence, indent=2, sort_keys=True) + "\n")
        step = "dvc repro"
        _run(["dvc", "repro"])  # publish: the model card now carries the evidence
        step = "git commit"
        _run(["git", "add", "params.yaml", "dvc.lock", "metrics", str(SELECTION_FILE)])
        _run(["git", "commit", "-q", "-m", message])
        step = "git tag"
        tag = f"{ARTIFACT}@{_next_version()}"
        _run(["git", "tag", "-a", tag, "-m", message])
        start.made["tag"] = tag
        if push:
            step = "dvc push"
            _run(["dvc", "push"])
            step = "git push"
            _run(["git", "push", "-q", "--atomic", push, "HEAD", tag])  # the commit and its tag, or neither
    except BaseException as error:  # ^C too: never leave a half-promoted repository
        problems = _restore(start)
        if not isinstance(error, (PipelineError, OSError)):
            raise
        where = f"{start.branch or 'a detached HEAD'} at {start.commit[:7]}"
        restored = (f"the repository was restored ({where}, as before)" if not problems else
                    f"restoring the repository failed too ({problems[0]}): it was {where}")
        raise PipelineError(f"pick --promote: the {step} step failed ({error}): {restored}") from None
    return tag


def _restore(start):
    """Undo what the steps did; returns the errors of what could not be undone."""
    commands = [["git", "tag", "-d", start.made["tag"]]] if "tag" in start.made else []
    commands.append(["git", "checkout", "-q", "-f", *([start.branch] if start.branch else ["--detach", start.commit])])
    commands.append(["git", "reset", "-q", "--hard", start.commit])  # the branch, if it moved, and tracked files
    if "branch" in start.made:
        commands.append(["git", "branch", "-q", "-D", start.made["branch"]])
    problems = []
    for command in commands:
        try:
            _run(command)
        except PipelineError as error:
            problems.append(str(error))
    for path in _untracked() - start.untracked:  # only what the steps wrote: yours stay
        Path(path).unlink(missing_ok=True)
    try:
        _run(["dvc", "checkout", "--force"])  # the outputs of the restored dvc.lock
    except PipelineError as error:
        problems.append(str(error))
    return problems


def _next_version():
    tags = _run(["git", "tag", "--list", f"{ARTIFACT}@v*"]).split()
    versions = [tuple(map(int, match.groups())) for tag in tags
                if (match := re.fullmatch(rf"{re.escape(ARTIFACT)}@v(\d+)\.(\d+)\.(\d+)", tag))]
    if not versions:
        return "v1.0.0"
    major, minor, _ = max(versions)
    return f"v{major}.{minor + 1}.0"


def _untracked():
    return set(_run(["git", "ls-files", "--others", "--exclude-standard"]).splitlines())


def _git_output(*arguments, check=True):
    result = subprocess.run(["git", *arguments], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PipelineError(f"git {arguments[0]}: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")
    return result.stdout.strip()


def _run(command):
    """The command's output; raises PipelineError with its name (not its arguments: a commit
    message) and the last line it printed."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["failed"]
        raise PipelineError(f"{' '.join(word for word in command[:3] if not word.startswith('-'))}: {lines[-1]}")
    return result.stdout
