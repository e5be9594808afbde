"""A study in a real PostgreSQL server (Debian's package, started and stopped here in a temporary
folder): the storage that workers on several machines share, its budget exact over them."""

import getpass
import glob
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

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


def test_three_workers_on_postgresql_with_a_budget_of_four_finish_four_after_one_is_stopped(postgres_url,
                                                                                          tuning_repository,
                                                                                          reproduced_repository):
    # Stopped by SIGTERM, as a scheduler stops a job: it ends its dvc exp run, marks its trial
    # interrupted and exits; the next worker to claim a place re-queues the trial.
    root, run = tuning_repository
    study, killed, outputs = three_workers_with_one_killed([root] * 3, reproduced_repository.env, postgres_url,
                                                           lambda worker: worker.send_signal(signal.SIGTERM))
    assert "search: interrupted: the running trials were stopped" in outputs[0]
    assert sum(output.count(f"search: trial {killed.number} was interrupted: its params run again")
               for output in outputs) == 1, outputs
    names = [ref.rpartition("/")[2] for ref in run("git", "for-each-ref", "--format=%(refname)", "refs/exps").split()]
    complete = [trial.number for trial in study.trials if trial.state.name == "COMPLETE"]
    assert sorted(name for name in names if name.startswith("budget-")) == sorted(f"budget-{n}" for n in complete)
    # Its report, from the same storage; nothing of it in the workspace's Git files.
    run(FINETUNE, "study-report", "--study", "budget", "--storage", postgres_url)
    report = (root / "tuning" / "budget" / "report.md").read_text()
    assert f"| {complete[0]} | `budget-{complete[0]}` | complete |" in report
    assert f"| {killed.number} | `budget-{killed.number}` | fail |" in report and "interrupted" in report
    assert not (root / "tuning" / "studies.db").exists()
