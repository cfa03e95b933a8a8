"""`adjudicate health`: what an operator (or a monitoring probe) checks before trusting the night.

Each check is a line: the database answers, its schema is at the newest migration, the broker answers,
live workers take both queues, and the last run finished (not failed) within the expected age.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from worker.bootstrap import App
from worker.store.database import schema_revisions
from worker.store.unit_of_work import unit_of_work


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str


def checks(app: App, max_run_age_hours: float) -> tuple[list[Check], dict | None]:
    """The checks in order, and the last run (None when there is none or the database is not readable)."""
    found = [*_database(app)]
    last = None
    if all(c.ok for c in found):
        run_check, last = _last_run(app, max_run_age_hours)
        found.append(run_check)
    if app.settings.broker_url:
        found += _broker(app)
    else:
        found.append(Check("broker", True, "none configured (runs are in-process)"))
    return found, last


def _database(app: App) -> list[Check]:
    url = make_url(app.engine.url)
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return [Check("database", False, f"no database file at {url.database}")]  # connecting would create one
    try:
        current, heads = schema_revisions(app.engine)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return [Check("database", False, f"{where}: {type(error).__name__}: {str(error).splitlines()[0]}")]
    schema_ok = current == heads
    return [Check("database", True, where),
            Check("schema", schema_ok, f"at {', '.join(sorted(current)) or 'no schema'}"
                  + ("" if schema_ok else f", newest {', '.join(sorted(heads))}: run `adjudicate db upgrade`"))]


def _last_run(app: App, max_age_hours: float) -> tuple[Check, dict | None]:
    with unit_of_work(app.engine, write=False) as repo:
        run = repo.runs.last()
    if run is None:
        return Check("last run", True, "no run yet"), None
    started = run["started_at"]
    age = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    status = run.get("status") or ("finished" if run.get("finished_at") else "unfinished")
    last = {"run_id": run["run_id"], "status": status, "started_at": started.isoformat(), "age_seconds": round(age)}
    problems = []
    if status not in ("finished", "done", "completed", "succeeded"):
        problems.append(f"its status is {status}")
    if age > max_age_hours * 3600:
        problems.append(f"older than {max_age_hours:g} h")
    ago = f"{age / 60:.0f} min" if age < 3600 else f"{age / 3600:.1f} h"
    detail = f"run {run['run_id']} {status}, {ago} ago" + (f" ({'; '.join(problems)})" if problems else "")
    return Check("last run", not problems, detail), last


def _broker(app: App) -> list[Check]:
    from worker.celery_app import QUEUES, make_celery

    celery = make_celery(app.settings)
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
        queues = celery.control.inspect(timeout=2.0).active_queues() or {}
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return [Check("broker", False, f"cannot reach the broker ({type(error).__name__})"),
                Check("workers", False, "unknown (no broker)")]
    taking = {name: sorted({n for n, consumed in queues.items() if any(q["name"] == name for q in consumed)})
              for name in QUEUES}
    missing = [name for name, workers in taking.items() if not workers]
    detail = "; ".join(f"{name}: {', '.join(workers) or 'none'}" for name, workers in taking.items())
    return [Check("broker", True, make_url_safe(app.settings.broker_url)),
            Check("workers", not missing, detail + (f" (no live worker takes {', '.join(missing)})" if missing else ""))]


def make_url_safe(url: str) -> str:
    """A broker URL without its password."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def as_dict(found: list[Check], last: dict | None) -> dict:
    return {"healthy": all(c.ok for c in found), "checks": [asdict(c) for c in found], "last_run": last}
