"""Celery side: the drop-folder sweep as a beat task. Tasks stay thin: they call worker.intake.

Distributed adjudication runs (`run` dispatching to workers) are not built yet.
"""

from __future__ import annotations

import logging
from pathlib import Path

from celery import Celery

from worker import intake
from worker.bootstrap import build
from worker.settings import Settings

log = logging.getLogger("adjudication")
SWEEP = "adjudication.sweep_drop_folder"


def make_celery(settings: Settings) -> Celery:
    app = Celery("adjudication", broker=settings.broker_url)
    app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)
    if settings.drop_folder:
        app.conf.beat_schedule = {
            "sweep-drop-folder": {"task": SWEEP, "schedule": settings.drop_interval_seconds},
        }
    app.task(name=SWEEP)(sweep_drop_folder)
    return app


def sweep_drop_folder(folder: str | None = None) -> list[dict]:
    """One sweep of the drop folder. Idempotent: a file is taken by one sweep only (atomic rename),
    and the same content submitted again is a no-op."""
    app = build()
    target = Path(folder) if folder else app.settings.drop_folder
    if target is None:
        return []
    results = intake.sweep(app, target)
    for result in results:
        log.info("drop folder: %s %s %s", result.file, result.result, result.batch_id or "")
    return [{"file": r.file, "result": r.result, "batch_id": r.batch_id} for r in results]
