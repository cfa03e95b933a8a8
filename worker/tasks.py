"""The Celery tasks (on the app of worker.celery_app): thin, named, safe to run twice.

- adjudication.decide_shard (queue adjudication.shards): one shard of a distributed run
  (worker.distributed); no database. Expiry and time limits come with each message.
- adjudication.sweep_drop_folder (queue adjudication.intake): one sweep of the drop folder.
- adjudication.run (queue adjudication.intake): the scheduled nightly run (worker.schedule).

Each worker process sets up its database engine and broker client once (`worker_process_init` in a
forked pool process; at first use in the threads pool, whose threads share them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from celery.signals import worker_process_init

from worker import distributed, intake, schedule
from worker.bootstrap import App, build
from worker.celery_app import app, settings

log = logging.getLogger("adjudication")
# Celery logs every task's return value at INFO; ours are summaries, but file names and counts are
# all the worker log needs.
logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

_process: dict = {}


@worker_process_init.connect
def set_up_process(**_kwargs) -> None:
    """Once per worker process: its own engine and broker client (never ones inherited over a fork)."""
    _process.clear()
    _process["app"] = build()
    if settings.broker_url:
        _process["redis"] = distributed.redis_client(settings.broker_url)


def _app() -> App:
    if "app" not in _process:
        set_up_process()
    return _process["app"]


def _redis() -> redis.Redis:
    if "redis" not in _process:
        set_up_process()
    return _process["redis"]


@app.task(name=distributed.DECIDE)
def decide_shard(run: str, index: int, message: dict) -> dict:
    """One shard of a distributed run: decided unless the run is over, answered on the run's keys."""
    return distributed.answer_shard(_redis(), run, index, message)


@app.task(name=schedule.SWEEP, soft_time_limit=3600, time_limit=3660)
def sweep_drop_folder(folder: str | None = None) -> list[dict]:
    """One sweep of the drop folder. Idempotent: a file is taken by one sweep only (atomic rename),
    and the same content submitted again is a no-op."""
    target = Path(folder) if folder else _app().settings.drop_folder
    if target is None:
        return []
    results = intake.sweep(_app(), target)
    for result in results:
        log.info("drop folder: %s", result.line())  # the name shown escaped: a line break starts no log line
    return [{"file": r.file, "result": r.result, "batch_id": r.batch_id} for r in results]


@app.task(bind=True, name=schedule.RUN, soft_time_limit=settings.run_timeout_seconds + 600,
          time_limit=settings.run_timeout_seconds + 660, max_retries=1)
def scheduled_run(self) -> dict:
    """The nightly run, as `adjudicate beat` sends it. Finding another scheduled run's lock, it is
    tried once more when that lock would have lapsed unrenewed, without holding a worker thread
    meanwhile: the lock of a run whose process was just killed (Celery hands its message back at
    once) lapses by then; a live run's is renewed, and the second try skips too."""
    outcome = schedule.scheduled_run(_app(), _redis())
    if outcome.get("skipped") == schedule.IN_PROGRESS and not self.request.retries:
        raise self.retry(countdown=settings.scheduled_lock_seconds * 1.2)
    return outcome
