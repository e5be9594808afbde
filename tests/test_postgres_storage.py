"""A study in a real PostgreSQL server (Debian's package, started and stopped here in a temporary
folder): the storage that workers on several machines share, its budget exact over them."""

import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from tests.workers import three_workers_with_one_killed

pytestmark = pytest.mark.slow

FINETUNE = str(Path(sys.executable).with_name("finetune"))


def postgres_program(name):
    """A PostgreSQL server program: on PATH, or where Debian's package puts it."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    assert found, f"{name} not found: apt-get install postgresql (.ci/run does)"
    return found


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://postgres@127.0.0.1:<port>/postgres of a server in a temporary folder. The server
    refuses to run as root: as root, it runs as the `postgres` user of the package, in a folder of
    /tmp that user can reach (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="finetune-postgres-"))
    as_user = ["runuser", "-u", "postgres", "--"] if getpass.getuser() == "root" else []
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, postgres_program("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    control = [*as_user, postgres_program("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log")]
    subprocess.run([*control, "-w", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*control, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_study_in_postgresql_runs_its_trials_as_experiments(postgres_url, tuning_repository):
    root, run = tuning_repository
    run(FINETUNE, "search", "--study", "in-postgres", "--space", "space.yaml", "--trials", "1",
        "--storage", postgres_url, "--pruner", "none")
    study = optuna.load_study(study_name="in-postgres", storage=postgres_url)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"]
    assert study.trials[0].user_attrs["experiment"] == "in-postgres-0"
    names = [ref.rpartition("/")[2] for ref in run("git", "for-each-ref", "--format=%(refname)", "refs/exps").split()]
    assert [name for name in names if name.startswith("in-postgres")] == ["in-postgres-0"]
    # Its report, from the same storage; nothing of it in the workspace's Git files.
    run(FINETUNE, "study-report", "--study", "in-postgres", "--storage", postgres_url)
    assert "| 0 | `in-postgres-0` | complete |" in (root / "tuning" / "in-postgres" / "report.md").read_text()
    assert not (root / "tuning" / "studies.db").exists() and os.listdir(root / "tuning" / "in-postgres")


def test_three_workers_on_postgresql_with_a_budget_of_four_finish_four_after_one_is_killed(postgres_url,
                                                                                         tuning_repository,
                                                                                         reproduced_repository):
    # Killed outright, with its process group, as a machine's loss would: the trial's heartbeat
    # goes silent and another worker re-queues it; its dvc exp run ends with it all the same.
    root, _ = tuning_repository
    three_workers_with_one_killed(root, reproduced_repository.env, postgres_url,
                                  lambda worker: os.killpg(worker.pid, signal.SIGKILL))
