"""Run records around `service.run`: the run lock as a lease everyone can read, the record a run
leaves when it fails or is a dry run (each in its own transaction), and the list of runs.

The run lock: a run takes the `run_lock` row as a lease (`holder`: the command, its process id and
host; `since`: when), committed, so a second run sees who holds it and since when, waits up to
ADJUDICATION_LOCK_WAIT_SECONDS, and gives up (exit 5). A lease whose process is gone (same host, no
such process) is taken over. The run's own transaction still takes the row's database lock, so the
writers that take it (submit, re-queue, ...) wait for the run as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl

from worker import access
from worker.poison import RunBroke
from worker.errors import ShardsFailed, Unavailable, UserError
from worker.store.records import now
from worker.store.unit_of_work import unit_of_work

log = logging.getLogger("adjudication.runs")


class LockTimeout(Exception):
    """The run lock stayed held by another run for the whole wait (exit code 5)."""


def holder_description(command: str) -> str:
    return f"{command} pid {os.getpid()} on {socket.gethostname()}"


def _process_here(holder: str) -> bool | None:
    """Whether the holder's process is alive, when it names one on this host; None otherwise."""
    _, _, where = holder.rpartition(" pid ")
    pid_text, _, host = where.partition(" on ")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _gone(holder: str) -> bool:
    """True when the holder names a process on this host that no longer exists."""
    return _process_here(holder) is False


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "an unknown time"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextmanager
def run_lock(engine, command: str, wait_seconds: float) -> Iterator[str]:
    """Hold the run lease for the block; wait up to wait_seconds for another holder, then LockTimeout."""
    me = holder_description(command)
    deadline = time.monotonic() + wait_seconds
    reported = None
    while True:
        with unit_of_work(engine) as repo:
            holder, since = repo.runs.lease()
            free = holder is None or _gone(holder)
            if free and repo.runs.take_lease(me, holder):
                if holder is not None:
                    log.warning("the run lock was held by %s, which is gone: taken over", holder,
                                extra={"event": "lock.taken_over", "holder": holder})
                    _record_unfinished(repo, holder, since, f"found by {me}, which took the run lock over")
                break
        if not free:
            held = f"held by {holder} since {_when(since)}"
            if time.monotonic() >= deadline:
                raise LockTimeout(f"gave up waiting for the run lock after {wait_seconds:g} s: {held} "
                                  "(ADJUDICATION_LOCK_WAIT_SECONDS)")
            if reported != holder:
                log.warning("waiting for the run lock: %s", held,
                            extra={"event": "lock.waiting", "holder": holder, "since": _when(since)})
                reported = holder
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    try:
        yield me
    finally:
        with unit_of_work(engine) as repo:
            repo.runs.release_lease(me)


def unlock(engine, operator: str, note: str) -> str | None:
    """Clear a run lock whose holder is gone (a machine that died mid-run), by an operator with the
    operator role; audited. Returns the holder cleared (None when the lock was free). Refuses while
    the holder runs on this host."""
    access.require_note(note)
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "operator")
        holder, since = repo.runs.lease()
        if holder is None:
            return None
        if _process_here(holder):
            raise UserError(f"the run lock is held by {holder}, which is running: wait for it, or stop it first")
        repo.runs.release_lease(holder)
        repo.audit(operator, "run.unlock", f"holder={holder}", note)
        _record_unfinished(repo, holder, since, f"the run lock cleared by {operator}")
    return holder


def _record_unfinished(repo, holder: str, since: dt.datetime | None, found: str) -> None:
    """A run whose process went away while it held the lease (killed, or its machine died) stored
    nothing and recorded nothing: unless a run started since it took the lease stored its work (it
    finished, and died before freeing the lease), record it as failed, so that `runs`, the metrics
    and the last-run alert see the lost night. A dry run's lease is not a night: not recorded."""
    if not holder.startswith("run pid ") or (since is not None and repo.runs.stored_since(since)):
        return
    run_id = repo.runs.add(since or now(), "failed",
                           failure=f"did not finish: {holder} went away while it ran ({found})")
    log.warning("run %s recorded as failed: %s went away while it ran", run_id, holder,
                extra={"event": "run.failed", "run_id": run_id, "holder": holder})


def failure_text(error: BaseException) -> str:
    """What a failed run's record says: the refusal as reported, or the error's type and first line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, (UserError, Unavailable, LockTimeout, RunBroke, ShardsFailed)):
        return text[:500]
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {text}"[:500]


# How long a failed run's record waits for a run that is storing its work (which holds the run
# numbering until it commits) before it gives up (logged; the run's own error is still reported).
RECORD_WAIT_SECONDS = 10.0


def record_failure(engine, started: dt.datetime, error: BaseException) -> int | None:
    """A failed run's record, in its own transaction (its work was rolled back); None when even that
    cannot be written (the database is gone: the error itself is what the operator sees)."""
    try:
        with unit_of_work(engine) as repo:
            # A run that found the lease taken must not wait out the holder's store phase to say so.
            run_id = repo.runs.add(started, "failed", failure=failure_text(error), wait_seconds=RECORD_WAIT_SECONDS)
    except Exception as recording:  # noqa: BLE001 - the run's own error is the one to raise
        # INFO: when the database is gone, the run's own error already says so in one line.
        log.info("could not record the failed run (%s)", type(recording).__name__)
        log.debug("could not record the failed run", exc_info=True)
        return None
    # INFO: the caller reports the error itself (the command line in one line, a scheduler in its log).
    log.info("run %s recorded as failed", run_id, extra={"event": "run.failed", "run_id": run_id})
    return run_id


def record_dry_run(engine, started: dt.datetime, summary, operator: str) -> int:
    """A dry run's record and its audit entry, in their own transaction (the run's work was rolled back)."""
    with unit_of_work(engine) as repo:
        run_id = repo.runs.add(started, "dry-run", claims=summary.claims, paid=summary.paid,
                               suspended=summary.suspended, rejected=summary.rejected, paid_cents=summary.paid_cents,
                               voids=summary.voids, reversed_cents=summary.reversed_cents)
        repo.audit(operator, "run.dry-run",
                     f"run={run_id} claims={summary.claims} paid={summary.paid} suspended={summary.suspended} "
                     f"rejected={summary.rejected}", "dry run: nothing stored")
    return run_id


RUNS_SCHEMA = {
    "run_id": pl.Int64, "started": pl.Datetime("us", "UTC"), "finished": pl.Datetime("us", "UTC"),
    "status": pl.String, "claims": pl.Int64, "paid": pl.Int64, "suspended": pl.Int64, "rejected": pl.Int64,
    "voids": pl.Int64, "paid_cents": pl.Int64, "reversed_cents": pl.Int64, "failure": pl.String,
}


def list_runs(engine) -> pl.DataFrame:
    """Every run, newest first (RUNS_SCHEMA; amounts in cents)."""
    with unit_of_work(engine, write=False) as repo:
        return pl.DataFrame(repo.runs.listing(), schema=RUNS_SCHEMA, orient="row")


def fatal_warnings(summary, fail_rejected_percent: float | None) -> list[str]:
    """Warnings about a completed run that the settings make fatal (exit 4)."""
    found = []
    if fail_rejected_percent is not None and summary.claims:
        share = 100 * summary.rejected / summary.claims
        if share > fail_rejected_percent:
            found.append(f"run {summary.run_id} rejected {summary.rejected} of {summary.claims} claims "
                         f"({share:.1f}%), more than ADJUDICATION_FAIL_REJECTED_PERCENT={fail_rejected_percent:g}")
    return found
