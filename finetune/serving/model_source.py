"""Which model `finetune predict` serves: the workspace's models/ and exported/, or those of a Git
revision, an experiment or a registry version, fetched with `dvc get` from this project (its cache,
else its remote) into a temporary folder."""

import contextlib
import subprocess
import tempfile
from pathlib import Path

from finetune.core.errors import PipelineError
from finetune.core.paths import EXPORTED_DIR, MODEL_DIR

ARTIFACT = "text-classifier"  # dvc.yaml's artifacts: the published model


@contextlib.contextmanager
def model_folders(rev=None, artifact=None, engine="torch"):
    """Yields (models folder, exported folder) of the workspace, of `rev` (commit, tag, branch or
    experiment name) or of `artifact` ('VERSION' or '#STAGE' of text-classifier, 'latest' for the
    newest)."""
    if rev is None and artifact is None:
        yield MODEL_DIR, EXPORTED_DIR
        return
    if artifact is not None:
        rev = _artifact_rev(artifact)
    commit = _commit(rev)
    with tempfile.TemporaryDirectory(prefix="finetune-predict-") as scratch:
        wanted = MODEL_DIR if engine == "torch" else EXPORTED_DIR
        target = Path(scratch) / wanted.name
        run = subprocess.run(["dvc", "get", ".", str(wanted), "--rev", commit, "-o", str(target)],
                             capture_output=True, text=True)
        if run.returncode:
            reason = " ".join(run.stderr.split())[-300:]
            raise PipelineError(f"{wanted}/ of revision {rev!r} ({commit[:8]}): not in the cache or the remote "
                                f"({reason})")
        yield (target, None) if engine == "torch" else (None, target)


def _commit(rev):
    """The commit of a Git revision or of an experiment (its ref under refs/exps/)."""
    parsed = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if parsed.returncode == 0:
        return parsed.stdout.strip()
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/"],
                          capture_output=True, text=True).stdout.split("\n")
    found = [line.split()[1] for line in refs if line and line.split()[0].rsplit("/", 1)[-1] == rev]
    if len(found) != 1:
        raise PipelineError(f"--rev {rev!r}: neither a Git revision nor an experiment of this repository"
                            + (f" ({len(found)} experiments have that name)" if found else ""))
    return found[0]


def _artifact_rev(artifact):
    import dvc.api

    version, stage = (None, artifact[1:]) if artifact.startswith("#") else (None if artifact == "latest" else artifact, None)
    try:
        return dvc.api.artifacts_show(ARTIFACT, version=version, stage=stage, repo=".")["rev"]
    except Exception as error:  # noqa: BLE001 - DVC raises several kinds; each is a bad --artifact
        raise PipelineError(f"--artifact {artifact!r}: no such version or stage of {ARTIFACT} ({error})") from None
