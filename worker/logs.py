"""Logging: the standard library's, to stderr, as text or as one JSON object per line.

The standard library rather than structlog: every library here (Celery, SQLAlchemy, alembic) already
logs through it, so one handler and one formatter cover them all with no second pipeline, and the
product's few log calls carry their fields in `extra=` (run_id, claims, paid, ...), which the JSON
formatter writes as fields and the text formatter as key=value.

`--log-level` / ADJUDICATION_LOG_LEVEL sets the level of the product's loggers (`adjudication.*`);
other libraries stay at WARNING: SQLAlchemy at INFO or DEBUG logs statements with their parameters
and rows, which are client data. Logs carry ids (claim, batch, run), never a client prime or name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extra(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extra(record),
        }
        if record.exc_info:
            document["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _extra(record)
        if fields:
            first, newline, rest = text.partition("\n")
            text = first + " " + " ".join(f"{k}={v}" for k, v in fields.items()) + newline + rest
        return text


def configure(level: str = "WARNING", fmt: str = "text") -> None:
    """One stderr handler on the root logger; the product's loggers at `level`, the rest at WARNING."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error)")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("adjudication").setLevel(numeric)
