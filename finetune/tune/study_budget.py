"""A study's budget of trials, exact over all its workers, and its retries.

`--trials N` is the study's total: N workers starting together finish N trials, not N each, and
not N plus the ones that were running when the N-th finished. A worker may start a trial only
while it holds the study's budget lock (`BudgetLock`): under it, it fails trials whose heartbeat
went silent, re-queues interrupted ones, counts the trials that take a place in the budget
(finished, running, or failed for good) and, if one is left, creates its trial; it lets go once
the trial exists in the storage, so the next worker counts it. The lock is the storage's own:
a file lock beside a SQLite file (workers of one machine), a PostgreSQL advisory lock on the
server that workers on several machines share.

A failed trial is run again with its params up to the study's `retries` times, through Optuna's
retry callback (`RetryHeartbeatStaleTrialCallback`, formerly `RetryFailedTrialCallback`): for a
heartbeat gone silent (a killed process), ^C, or an error of its own. Its `retry_history` says
which trials a retry repeats, so that a trial is re-queued once however many workers look.
"""

import fcntl
import hashlib
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from finetune.core.errors import PipelineError

RETRIES_ATTRIBUTE = "retries"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def retry_callback(retries):
    return RetryHeartbeatStaleTrialCallback(max_retry=retries)


def retried_numbers(trials):
    """The numbers of trials that a later trial repeats."""
    return {number for trial in trials for number in RetryHeartbeatStaleTrialCallback.retry_history(trial)}


def failed_for_good(trial, retried, retries):
    """A failed trial that is not run again: its retries are spent and none repeats it."""
    return (trial.state == optuna.trial.TrialState.FAIL and trial.number not in retried
            and len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) >= retries)


def counted_trials(study):
    """The trials the budget counts: complete, pruned, or failed for good."""
    return _counted(study.get_trials(deepcopy=False), study.user_attrs[RETRIES_ATTRIBUTE])


def _counted(trials, retries):
    retried = retried_numbers(trials)
    return [trial for trial in trials if trial.state in FINISHED or failed_for_good(trial, retried, retries)]


def requeue_failed(study, trials, retries):
    """Re-queue, once, the failed ones of the study's `trials` that no trial repeats yet and that
    have retries left (stopped by an error of their own, ^C, or a kill that silenced their
    heartbeat). Only under the budget lock: a worker that re-queued its own failure as it ended
    raced another worker re-queuing the same one. Returns those trials."""
    retried = retried_numbers(trials)
    requeued = []
    for trial in trials:
        if (trial.state == optuna.trial.TrialState.FAIL and trial.number not in retried
                and not failed_for_good(trial, retried, retries)):
            retry_callback(retries)(study, trial)
            requeued.append(trial)
    return requeued


def claim_place(study, budget):
    """Under the budget lock: whether this worker may start a trial. Fails the trials whose
    heartbeat went silent and re-queues failed ones first, so that their places are free; then
    counts the places taken (counted trials and running ones) in the same read of the study (a
    re-queued trial takes none until it runs)."""
    running = {trial.number for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retries = study.user_attrs[RETRIES_ATTRIBUTE]
    for trial in requeue_failed(study, trials, retries):
        if trial.number in running:
            cause = "went silent (its process died)"
        elif trial.user_attrs.get("error"):
            cause = f"failed (retry {len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) + 1} of {retries})"
        else:
            cause = "was interrupted"
        print(f"search: trial {trial.number} {cause}: its params run again")
    still_running = [trial for trial in trials if trial.state == optuna.trial.TrialState.RUNNING]
    return budget is None or len(_counted(trials, retries)) + len(still_running) < budget


class BudgetLock:
    """The study's lock for starting a trial, held by one worker thread at a time. One per thread:
    a file lock and a database session lock both exclude another holder of the same process."""

    def __init__(self, url, study_name):
        self.url, self.study_name = url, study_name
        self._held = None

    def acquire(self):
        import sqlalchemy

        address = sqlalchemy.engine.make_url(self.url)
        if address.get_backend_name() == "sqlite":
            database = address.database
            if not database or database == ":memory:":
                raise PipelineError(f"study storage {self.url}: a budget needs a SQLite file that workers share")
            lock_file = open(Path(database).with_name(Path(database).name + ".budget.lock"), "w")  # noqa: SIM115
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            self._held = lock_file.close
        elif address.get_backend_name() == "postgresql":
            engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
            connection = engine.connect()
            key = int.from_bytes(hashlib.sha256(f"finetune search {self.study_name}".encode()).digest()[:8], "big",
                                 signed=True)
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()

            def release():
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
                connection.close()
                engine.dispose()
            self._held = release
        else:
            raise PipelineError(f"study storage {address.get_backend_name()}: --trials needs a lock that SQLite and "
                                "PostgreSQL give; give --timeout alone, or use one of those")

    def release(self):
        """Lets go, if held (the trial lets go as it starts; the worker again after, in case it did not)."""
        if self._held is not None:
            held, self._held = self._held, None
            held()
