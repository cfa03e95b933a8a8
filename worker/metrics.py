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
from sqlalchemy import Engine

from worker.store.unit_of_work import unit_of_work

PREFIX = "adjudication"


def _seconds(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class DatabaseCollector:
    """A prometheus_client collector: each collect() reads the figures from the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self):
        with unit_of_work(self.engine, write=False) as repo:
            figures = repo.runs.figures()

        claims = CounterMetricFamily(f"{PREFIX}_claims_adjudicated", "Claims decided by completed runs, by status",
                                     labels=["status"])
        for status, count in figures["decided"].items():
            claims.add_metric([status], count)
        yield claims

        reasons: Counter[str] = Counter()
        for text, count in figures["by_reasons"]:
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
            run_counts.add_metric([status], figures["runs"].get(status, 0))
        yield run_counts

        yield from self._last_run(figures["last"])
        last_real, last_done = figures["last_real"], figures["last_done"]
        if last_real is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_run_success", "1 when the newest run (not a dry run) was done, "
                                    "0 when it failed", value=1 if last_real == "done" else 0)
        if last_done is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_success_timestamp_seconds",
                                    "When the newest completed run finished (Unix time)", value=_seconds(last_done))

        queue = GaugeMetricFamily(f"{PREFIX}_queue_claims", "Claims waiting for the next run", labels=["kind"])
        queue.add_metric(["batch"], figures["queued_claims"])
        queue.add_metric(["requeue"], figures["requeued"])
        yield queue
        yield GaugeMetricFamily(f"{PREFIX}_queue_batches", "Batches waiting for the next run",
                                value=figures["queued_batches"])

    @staticmethod
    def _last_run(last):
        """last: (status, started_at, finished_at) of the newest run, or None."""
        if last is None:
            return
        status, started_at, finished_at = last
        started, finished = _seconds(started_at), _seconds(finished_at)
        if finished is None:
            return
        duration = GaugeMetricFamily(f"{PREFIX}_last_run_duration_seconds", "Duration of the newest run",
                                     labels=["status"])
        duration.add_metric([status], max(0.0, finished - (started or finished)))
        yield duration
        at = GaugeMetricFamily(f"{PREFIX}_last_run_timestamp_seconds", "When the newest run finished (Unix time)",
                               labels=["status"])
        at.add_metric([status], finished)
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
