"""Celery side: the shards of distributed runs (worker.distributed) and the drop-folder sweep as a
beat task. Tasks stay thin: they call the domain or worker.intake, and are safe to run twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from celery import Celery

from adjudication.engine import decide
from worker import distributed, intake
from worker.settings import Settings

log = logging.getLogger("adjudication")
SWEEP = "adjudication.sweep_drop_folder"


def make_celery(settings: Settings) -> Celery:
    backend = settings.broker_url if settings.broker_url and settings.broker_url.startswith("redis") else "rpc://"
    app = Celery("adjudication", broker=settings.broker_url, backend=backend)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True,  # a shard a dying worker held is run again
        worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_expires=3600,  # results carry claim data: the run deletes them once read, these expire
    )
    if settings.drop_folder:
        app.conf.beat_schedule = {
            "sweep-drop-folder": {"task": SWEEP, "schedule": settings.drop_interval_seconds},
        }
    app.task(name=SWEEP)(sweep_drop_folder)
    app.task(name=distributed.DECIDE)(decide_shard)
    return app


def decide_shard(message: dict) -> dict:
    """One shard of a distributed run: a pure function of its message, no database."""
    shard, rules = distributed.read_shard(message)
    return distributed.result_message(decide(shard.checked, shard.reference, rules, shard.ledger, shard.waivers))


def sweep_drop_folder(folder: str | None = None) -> list[dict]:
    """One sweep of the drop folder. Idempotent: a file is taken by one sweep only (atomic rename),
    and the same content submitted again is a no-op."""
    from worker.bootstrap import build

    app = build()
    target = Path(folder) if folder else app.settings.drop_folder
    if target is None:
        return []
    results = intake.sweep(app, target)
    for result in results:
        log.info("drop folder: %s %s %s", result.file, result.result, result.batch_id or "")
    return [{"file": r.file, "result": r.result, "batch_id": r.batch_id} for r in results]
