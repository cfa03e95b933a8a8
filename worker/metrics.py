"""Prometheus metrics, read from the database: the same figures whoever asks.

Every figure comes from the stored runs, queue and suspended claims (a few aggregate queries), so a
process that scrapes (`serve` at /metrics: `render(engine)`) and the textfile-collector file each run
rewrites (`write_textfile`, ADJUDICATION_METRICS_FILE, for node_exporter's
--collector.textfile.directory) show the same numbers. Labels are statuses and reason codes only:
no claim, batch, client or provider ids.

    adjudication_claims_adjudicated_total{status}    claims decided by completed runs (paid/suspended/rejected)
    adjudication_suspended_claims{reason}            claims suspended now (waiting for an operator), by reason
    adjudication_runs_total{status}                  runs recorded: done, failed, dry-run
    adjudication_last_run_duration_seconds{status}   the newest run's duration (label: its status)
    adjudication_last_run_timestamp_seconds{status}  when the newest run finished (label: its status)
    adjudication_last_run_success                    1 when the newest real run (not a dry run) was done, 0 when it failed
    adjudication_last_success_timestamp_seconds      when the newest done run finished (absent before the first)
    adjudication_queue_claims{kind}                  claims waiting for the next run (batch: fresh, requeue: again)
    adjudication_queue_batches                       batches waiting for the next run
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import Engine, func, select

from worker.store import schema as t

PREFIX = "adjudication"


def _seconds(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives naive UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


class DatabaseCollector:
    """A prometheus_client collector: each collect() reads the figures from the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self):
        r = t.runs.c
        with self.engine.connect() as conn:
            decided = conn.execute(select(func.coalesce(func.sum(r.paid), 0), func.coalesce(func.sum(r.suspended), 0),
                                          func.coalesce(func.sum(r.rejected), 0)).where(r.status == "done")).one()
            runs = dict(conn.execute(select(r.status, func.count()).group_by(r.status)).all())
            last = conn.execute(select(r.status, r.started_at, r.finished_at).order_by(r.run_id.desc()).limit(1)).first()
            last_real = conn.execute(select(r.status).where(r.status != "dry-run").order_by(r.run_id.desc())
                                     .limit(1)).scalar()
            last_done = conn.execute(select(func.max(r.finished_at)).where(r.status == "done")).scalar()
            by_reasons = conn.execute(select(t.suspended.c.reasons, func.count()).group_by(t.suspended.c.reasons)).all()
            queued_batches, queued_claims = conn.execute(
                select(func.count(), func.coalesce(func.sum(t.batches.c.claims), 0))
                .where(t.batches.c.status == "queued")).one()
            requeued = conn.execute(select(func.count()).select_from(t.requeues)).scalar()

        claims = CounterMetricFamily(f"{PREFIX}_claims_adjudicated", "Claims decided by completed runs, by status",
                                     labels=["status"])
        for status, count in zip(("paid", "suspended", "rejected"), decided):
            claims.add_metric([status], int(count))
        yield claims

        reasons: Counter[str] = Counter()
        for text, count in by_reasons:
            for reason in text.split(";"):
                if reason:
                    reasons[reason.partition(":")[0]] += count
        suspended = GaugeMetricFamily(f"{PREFIX}_suspended_claims", "Claims suspended now, by reason (a claim "
                                      "suspended for two reasons counts under both)", labels=["reason"])
        for reason, count in sorted(reasons.items()):
            suspended.add_metric([reason], count)
        yield suspended

        run_counts = CounterMetricFamily(f"{PREFIX}_runs", "Runs recorded, by status", labels=["status"])
        for status in ("done", "failed", "dry-run"):
            run_counts.add_metric([status], runs.get(status, 0))
        yield run_counts

        yield from self._last_run(last)
        if last_real is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_run_success", "1 when the newest run (not a dry run) was done, "
                                    "0 when it failed", value=1 if last_real == "done" else 0)
        if last_done is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_success_timestamp_seconds",
                                    "When the newest completed run finished (Unix time)", value=_seconds(last_done))

        queue = GaugeMetricFamily(f"{PREFIX}_queue_claims", "Claims waiting for the next run", labels=["kind"])
        queue.add_metric(["batch"], int(queued_claims))
        queue.add_metric(["requeue"], int(requeued))
        yield queue
        yield GaugeMetricFamily(f"{PREFIX}_queue_batches", "Batches waiting for the next run", value=queued_batches)

    @staticmethod
    def _last_run(last):
        if last is None:
            return
        started, finished = _seconds(last.started_at), _seconds(last.finished_at)
        if finished is None:
            return
        duration = GaugeMetricFamily(f"{PREFIX}_last_run_duration_seconds", "Duration of the newest run",
                                     labels=["status"])
        duration.add_metric([last.status], max(0.0, finished - (started or finished)))
        yield duration
        at = GaugeMetricFamily(f"{PREFIX}_last_run_timestamp_seconds", "When the newest run finished (Unix time)",
                               labels=["status"])
        at.add_metric([last.status], finished)
        yield at


def registry(engine: Engine) -> CollectorRegistry:
    """A registry holding the database's figures (a fresh one per engine: no process-global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    return registry


def render(engine: Engine) -> tuple[bytes, str]:
    """The body and content type of a /metrics answer."""
    return generate_latest(registry(engine)), CONTENT_TYPE_LATEST


def write_textfile(engine: Engine, path: Path) -> None:
    """Rewrite the textfile-collector file atomically (written beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry(engine))
