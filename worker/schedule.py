"""The schedule `adjudicate beat` keeps: the nightly run and the drop-folder sweep.

ADJUDICATION_RUN_SCHEDULE is a crontab ("0 2 * * *", in ADJUDICATION_TIMEZONE) or an interval
("every 5s": for tests and trials; a crontab's finest grain is a minute). However many beats send
it, one run at a time: a scheduled run that finds the run lock taken says so and does nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from celery.schedules import ParseException, crontab, crontab_parser
from redis.exceptions import LockError, RedisError

from worker.errors import UserError
from worker.settings import Settings, interval_seconds
from worker.store.records import write_lock_held

log = logging.getLogger("adjudication")

RUN = "adjudication.run"
SWEEP = "adjudication.sweep_drop_folder"
SCHEDULED_RUN_LOCK = "adjudication:scheduled-run"


# The five fields of a crontab: name, how many values, the first one.
CRONTAB_FIELDS = (("minute", 60, 0), ("hour", 24, 0), ("day_of_month", 31, 1), ("month_of_year", 12, 1),
                  ("day_of_week", 7, 0))
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February of a leap year


def run_schedule(spec: str) -> crontab | timedelta:
    """ADJUDICATION_RUN_SCHEDULE (its shape checked by Settings) as celery beat takes it: each crontab
    field within its range, for a day that comes (not 31 February); a configuration error naming the
    field otherwise."""
    seconds = interval_seconds(spec)
    if seconds is not None:
        return timedelta(seconds=seconds)
    named = f"configuration: ADJUDICATION_RUN_SCHEDULE {spec.strip()!r}"
    values = {}
    for (name, size, first), text in zip(CRONTAB_FIELDS, spec.split()):
        try:
            values[name] = crontab_parser(size, first).parse(text)
        except (ValueError, ParseException) as error:
            raise UserError(f"{named}: its {name.replace('_', ' ')} field {text!r} is not valid ({error})") from None
    if not any(day <= DAYS_IN_MONTH[month - 1] for month in values["month_of_year"] for day in values["day_of_month"]):
        raise UserError(f"{named} never comes: none of its months has that day")
    return crontab(**dict(zip((name for name, _size, _first in CRONTAB_FIELDS), spec.split())))


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


IN_PROGRESS = "another scheduled run is in progress"


@contextmanager
def _renewed(lock, lives: float) -> Iterator[None]:
    """Keep a held redis lock alive for the block (a thread renews its time to live, `lives` s)."""
    stop = threading.Event()

    def renew() -> None:
        renewed = time.monotonic()
        while not stop.wait(lives / 3):
            try:
                lock.reacquire()
                renewed = time.monotonic()
            except LockError:  # lost (expired, or the broker restarted without it): nothing to keep
                log.warning("the scheduled run's broker lock was lost")
                return
            except RedisError:  # the broker out of reach for a moment: try again while the lock lives
                if time.monotonic() - renewed > lives:
                    log.warning("the scheduled run's broker lock could not be renewed")
                    return

    thread = threading.Thread(target=renew, name="scheduled-run-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def scheduled_run(app, client) -> dict:
    """The nightly run as the beat starts it (worker.tasks), one at a time however many beats send it:
    skipped, saying so, while another scheduled run is in progress (a lock in the broker, so that
    runs waiting on the database never fill a worker's threads while the shards wait for one) or
    another run holds the run lock; a summary of ids and counts otherwise."""
    # The lock lives ADJUDICATION_SCHEDULED_LOCK_SECONDS unless renewed (a thread does, every third
    # of it, while the run goes on): a worker killed mid-run frees it within that time, not after the
    # run's whole timeout. Not thread-local: the renewing thread must see the token this one took.
    lives = app.settings.scheduled_lock_seconds
    lock = client.lock(SCHEDULED_RUN_LOCK, timeout=lives, thread_local=False)
    if not lock.acquire(blocking=False):
        log.warning("scheduled run skipped: %s", IN_PROGRESS)
        return {"skipped": IN_PROGRESS}
    try:
        with _renewed(lock, lives):
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
