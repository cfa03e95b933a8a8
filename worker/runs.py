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
from sqlalchemy import Engine, insert, select, update

from worker import audit
from worker.store import repository as repo
from worker.store import schema as t

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
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextmanager
def run_lock(engine: Engine, command: str, wait_seconds: float) -> Iterator[str]:
    """Hold the run lease for the block; wait up to wait_seconds for another holder, then LockTimeout."""
    me = holder_description(command)
    deadline = time.monotonic() + wait_seconds
    reported = None
    while True:
        with engine.begin() as conn:
            row = conn.execute(select(t.run_lock.c.holder, t.run_lock.c.since).where(t.run_lock.c.id == 1)).one()
            free = row.holder is None or _gone(row.holder)
            if free:
                taken = conn.execute(update(t.run_lock).where(
                    t.run_lock.c.id == 1,
                    t.run_lock.c.holder.is_(None) if row.holder is None else t.run_lock.c.holder == row.holder,
                ).values(holder=me, since=repo.now())).rowcount
                if taken == 1:
                    if row.holder is not None:
                        log.warning("the run lock was held by %s, which is gone: taken over", row.holder,
                                    extra={"event": "lock.taken_over", "holder": row.holder})
                    break
        if not free:
            held = f"held by {row.holder} since {_when(row.since)}"
            if time.monotonic() >= deadline:
                raise LockTimeout(f"gave up waiting for the run lock after {wait_seconds:g} s: {held} "
                                  "(ADJUDICATION_LOCK_WAIT_SECONDS)")
            if reported != row.holder:
                log.warning("waiting for the run lock: %s", held,
                            extra={"event": "lock.waiting", "holder": row.holder, "since": _when(row.since)})
                reported = row.holder
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
    try:
        yield me
    finally:
        with engine.begin() as conn:
            conn.execute(update(t.run_lock).where(t.run_lock.c.id == 1, t.run_lock.c.holder == me)
                         .values(holder=None, since=None))


def unlock(engine: Engine, operator: str, note: str) -> str | None:
    """Clear a run lock whose holder is gone (a machine that died mid-run), by an operator with the
    operator role; audited. Returns the holder cleared (None when the lock was free). Refuses while
    the holder runs on this host."""
    from worker import access
    from worker.service import UserError

    if not note.strip():
        raise UserError("--note must say why")
    with engine.begin() as conn:
        access.authorize(conn, operator, "operator")
        holder = conn.execute(select(t.run_lock.c.holder).where(t.run_lock.c.id == 1)).scalar()
        if holder is None:
            return None
        if _process_here(holder):
            raise UserError(f"the run lock is held by {holder}, which is running: wait for it, or stop it first")
        conn.execute(update(t.run_lock).where(t.run_lock.c.id == 1, t.run_lock.c.holder == holder)
                     .values(holder=None, since=None))
        audit.append(conn, operator, "run.unlock", f"holder={holder}", note)
    return holder


def one_line(error: BaseException) -> str:
    """What a failed run's record says: the refusal as reported, or the error's type and first line."""
    from worker.poison import RunBroke
    from worker.service import Unavailable, UserError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, (UserError, Unavailable, LockTimeout, RunBroke)):
        return text[:500]
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {text}"[:500]


def record_failure(engine: Engine, started: dt.datetime, error: BaseException) -> int | None:
    """A failed run's record, in its own transaction (its work was rolled back); None when even that
    cannot be written (the database is gone: the error itself is what the operator sees)."""
    try:
        with engine.begin() as conn:
            run_id = conn.execute(insert(t.runs).values(
                started_at=started, finished_at=repo.now(), claims=0, paid=0, suspended=0, rejected=0, paid_cents=0,
                status="failed", failure=one_line(error)).returning(t.runs.c.run_id)).scalar_one()
    except Exception as recording:  # noqa: BLE001 - the run's own error is the one to raise
        # INFO: when the database is gone, the run's own error already says so in one line.
        log.info("could not record the failed run (%s)", type(recording).__name__)
        log.debug("could not record the failed run", exc_info=True)
        return None
    # INFO: the caller reports the error itself (the command line in one line, a scheduler in its log).
    log.info("run %s recorded as failed", run_id, extra={"event": "run.failed", "run_id": run_id})
    return run_id


def record_dry_run(engine: Engine, started: dt.datetime, summary, operator: str) -> int:
    """A dry run's record and its audit entry, in their own transaction (the run's work was rolled back)."""
    with engine.begin() as conn:
        run_id = conn.execute(insert(t.runs).values(
            started_at=started, finished_at=repo.now(), claims=summary.claims, paid=summary.paid,
            suspended=summary.suspended, rejected=summary.rejected, paid_cents=summary.paid_cents,
            voids=summary.voids, reversed_cents=summary.reversed_cents,
            status="dry-run").returning(t.runs.c.run_id)).scalar_one()
        audit.append(conn, operator, "run.dry-run",
                     f"run={run_id} claims={summary.claims} paid={summary.paid} suspended={summary.suspended} "
                     f"rejected={summary.rejected}", "dry run: nothing stored")
    return run_id


RUNS_SCHEMA = {
    "run_id": pl.Int64, "started": pl.Datetime("us", "UTC"), "finished": pl.Datetime("us", "UTC"),
    "status": pl.String, "claims": pl.Int64, "paid": pl.Int64, "suspended": pl.Int64, "rejected": pl.Int64,
    "voids": pl.Int64, "paid_cents": pl.Int64, "reversed_cents": pl.Int64, "failure": pl.String,
}


def list_runs(engine: Engine) -> pl.DataFrame:
    """Every run, newest first (RUNS_SCHEMA; amounts in cents)."""
    r = t.runs.c
    with engine.connect() as conn:
        rows = conn.execute(select(r.run_id, r.started_at, r.finished_at, r.status, r.claims, r.paid, r.suspended,
                                   r.rejected, r.voids, r.paid_cents, r.reversed_cents, r.failure)
                            .order_by(r.run_id.desc())).all()
    return pl.DataFrame([tuple(_utc(v) for v in row) for row in rows], schema=RUNS_SCHEMA, orient="row")


def _utc(value):
    if isinstance(value, dt.datetime) and value.tzinfo is None:  # SQLite gives naive UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def fatal_warnings(summary, fail_rejected_percent: float | None) -> list[str]:
    """Warnings about a completed run that the settings make fatal (exit 4)."""
    found = []
    if fail_rejected_percent is not None and summary.claims:
        share = 100 * summary.rejected / summary.claims
        if share > fail_rejected_percent:
            found.append(f"run {summary.run_id} rejected {summary.rejected} of {summary.claims} claims "
                         f"({share:.1f}%), more than ADJUDICATION_FAIL_REJECTED_PERCENT={fail_rejected_percent:g}")
    return found
