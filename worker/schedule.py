"""The schedule `adjudicate beat` keeps: the nightly run and the drop-folder sweep.

ADJUDICATION_RUN_SCHEDULE is a crontab ("0 2 * * *", in ADJUDICATION_TIMEZONE) or an interval
("every 5s": for tests and trials; a crontab's finest grain is a minute). However many beats send
it, one run at a time: a scheduled run that finds the run lock taken says so and does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery.schedules import crontab
from redis.exceptions import LockError

from worker.settings import INTERVAL, Settings
from worker.store.records import write_lock_held

log = logging.getLogger("adjudication")

RUN = "adjudication.run"
SWEEP = "adjudication.sweep_drop_folder"
UNITS = {"s": 1, "m": 60, "h": 3600}
SCHEDULED_RUN_LOCK = "adjudication:scheduled-run"


def run_schedule(spec: str) -> crontab | timedelta:
    interval = INTERVAL.fullmatch(spec.strip())
    if interval:
        return timedelta(seconds=float(interval.group(1)) * UNITS[interval.group(2)])
    minute, hour, day_of_month, month_of_year, day_of_week = spec.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)


def beat_schedule(settings: Settings) -> dict:
    when = run_schedule(settings.run_schedule)
    # A run nobody took in time is dropped, not run late on top of the next one: an interval's
    # message expires after the interval, the nightly one after 6 hours.
    expires = when.total_seconds() if isinstance(when, timedelta) else 6 * 3600
    entries = {"nightly-run": {"task": RUN, "schedule": when, "options": {"expires": expires}}}
    if settings.drop_folder:
        entries["sweep-drop-folder"] = {"task": SWEEP, "schedule": settings.drop_interval_seconds,
                                        "options": {"expires": settings.drop_interval_seconds}}
    return entries


def scheduled_run(app, client) -> dict:
    """The nightly run as the beat starts it (worker.tasks), one at a time however many beats send it:
    skipped, saying so, while another scheduled run is in progress (a lock in the broker, so that
    runs waiting on the database never fill a worker's threads while the shards wait for one) or
    another run holds the run lock; a summary of ids and counts otherwise."""
    lock = client.lock(SCHEDULED_RUN_LOCK, timeout=app.settings.run_timeout_seconds + 600)
    if not lock.acquire(blocking=False):
        log.warning("scheduled run skipped: another scheduled run is in progress")
        return {"skipped": "another scheduled run is in progress"}
    try:
        if write_lock_held(app.engine, wait_seconds=2.0):  # another run (or writer) holds the run lock
            log.warning("scheduled run skipped: another run holds the run lock")
            return {"skipped": "another run holds the run lock"}
        summary = app.run()
    finally:
        try:
            lock.release()
        except LockError:  # expired, or the broker lost it in a restart
            pass
    log.info("scheduled run %s: %d claims, %d paid, %d suspended, %d rejected", summary.run_id, summary.claims,
             summary.paid, summary.suspended, summary.rejected)
    return {"run_id": summary.run_id, "claims": summary.claims, "paid": summary.paid,
            "suspended": summary.suspended, "rejected": summary.rejected}
