"""The Celery app: `celery -A worker.celery_app worker|beat|inspect|events` works as Celery's users
expect (Flower too), and `adjudicate worker` / `adjudicate beat` start the same app.

Configured from the settings (environment, ADJUDICATION_*) when imported. Two queues:
`adjudication.shards` (the shards of distributed runs: pure functions of their messages, no database)
and `adjudication.intake` (what touches the database: the drop-folder sweep and the scheduled run),
so shard workers can run on machines without database credentials. The tasks are in worker.tasks.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler
from kombu import Exchange, Queue

from worker.distributed import DECIDE, SHARDS_QUEUE
from worker.schedule import RUN, SWEEP, beat_schedule
from worker.settings import Settings

INTAKE_QUEUE = "adjudication.intake"
QUEUES = (SHARDS_QUEUE, INTAKE_QUEUE)
BEAT_STATE_FILE = "beat-schedule"


def make_celery(settings: Settings) -> Celery:
    app = Celery("adjudication", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],  # never pickle
        # No result backend: shards answer on the run's own keys (worker.distributed), the other
        # tasks' results are summaries nobody waits for (events carry them to Flower).
        task_ignore_result=True,
        # A task is acknowledged when it has finished, and one whose worker died goes back to the
        # queue (not lost). The Redis transport re-delivers an unacknowledged message after the
        # visibility timeout (kept at Redis' default, 1 hour): distributed runs do not wait for it
        # (they send a silent shard again after a time derived from its size), and a scheduled run
        # delivered twice finds the run lock taken or the queue empty.
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True, task_send_sent_event=True,  # `celery events`, Flower
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES], task_default_queue=INTAKE_QUEUE,
        task_routes={DECIDE: {"queue": SHARDS_QUEUE}, SWEEP: {"queue": INTAKE_QUEUE}, RUN: {"queue": INTAKE_QUEUE}},
        timezone=settings.timezone, enable_utc=True,
        beat_schedule=beat_schedule(settings), beat_scheduler="worker.celery_app:StateFolderScheduler",
        beat_schedule_filename=str(settings.state_dir / BEAT_STATE_FILE),
    )
    return app


class StateFolderScheduler(PersistentScheduler):
    """Celery's scheduler, its state file in ADJUDICATION_STATE_DIR (created when missing), never
    in the working folder."""

    def _open_schedule(self):
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open_schedule()


settings = Settings()
app = make_celery(settings)
