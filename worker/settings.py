"""All configuration in one place: environment variables prefixed ADJUDICATION_ (or CLI flags)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADJUDICATION_", extra="ignore")

    database_url: str = "sqlite:///adjudication.db"
    # With a broker, `run` splits the edits by client into `run_shards` shards for the Celery workers
    # and gives up (storing nothing) when they have not all come back within `run_timeout_seconds`.
    broker_url: str | None = None
    run_shards: int = Field(default=4, ge=1)
    run_timeout_seconds: float = Field(default=3600.0, gt=0)
    # A shard that has not answered within `run_shard_resend_seconds` + its claims /
    # `run_shard_claims_per_second` is sent again (its worker may be dead), the wait doubling at each
    # send; a broker outage longer than `broker_outage_seconds` fails the run (exit 3).
    run_shard_resend_seconds: float = Field(default=30.0, gt=0)
    run_shard_claims_per_second: float = Field(default=20000.0, gt=0)
    broker_outage_seconds: float = Field(default=30.0, gt=0)
    # `adjudicate beat`: the nightly run's schedule, a crontab ("0 2 * * *": minute hour day month
    # weekday) or an interval ("every 30s", "every 5m", "every 2h"), in `timezone`; the beat's
    # schedule state lives in `state_dir`.
    run_schedule: str = "0 2 * * *"
    timezone: str = "America/Los_Angeles"
    # `adjudicate health` fails when the last run is older than this (a nightly run, and slack).
    health_max_run_age_hours: float = Field(default=26.0, gt=0)
    state_dir: Path = Field(default_factory=lambda: Path(
        os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "adjudication")
    # A run refuses (storing nothing) when more claims than this share one client and day: the edits
    # compare every two of them, so such a day costs memory by its square (3,000 took 2.2 GB: ops/crowded_day.py). A day
    # has 1,440 minutes; the batch can be withdrawn (`adjudicate withdraw`).
    run_max_claims_per_client_day: int = Field(default=2000, ge=2)
    rules_file: Path | None = None
    # The acting operator when a command is given no --operator (scheduled jobs and scripts run as a
    # registered service operator): worker.access.
    operator: str | None = None
    max_file_bytes: int = 512 * 1024 * 1024
    max_decompressed_bytes: int = 2 * 1024 * 1024 * 1024
    # HTTP service: posted files are read (as `submit` reads them) this many at a time, since reading
    # a big file takes several times its size in memory; they are streamed to `http_spool_dir`
    # (default: the system's temporary folder) first. Reading a batch or a remittance back takes
    # the same slots.
    http_concurrent_submits: int = Field(default=4, ge=1)
    http_spool_dir: Path | None = None
    # The broker lock of a scheduled run lives this long unless the run renews it (it does while it
    # goes on): a worker killed mid-run frees it within this time, and the run Celery hands back (at
    # once for a killed process) is tried again after 1.2 times it.
    scheduled_lock_seconds: float = Field(default=60.0, ge=1)
    # Requests refused for want of a valid token are audited at most once every this many seconds
    # (per service process; the next entry counts those left out): anyone can send them, and the
    # audit only grows. 0: every one.
    http_refused_audit_seconds: float = Field(default=10.0, ge=0)
    # Seconds a second `run` (or writer) waits for the one holding the SQLite write lock.
    sqlite_busy_timeout: float = 600.0

    # Drop folder (`adjudicate watch DIR`, or a Celery beat task sweeping `drop_folder`): a file is
    # taken once its size and times have not changed for `drop_settle_seconds`; a file a crashed sweep
    # left in DIR/.processing/ goes back to DIR after `drop_stale_seconds` (at once if its process is gone).
    drop_folder: Path | None = None
    drop_settle_seconds: float = 10.0
    drop_interval_seconds: float = 30.0
    drop_stale_seconds: float = 3600.0

    # Operations (docs/operations.md). A run waits this long for the run lock held by another run,
    # then gives up (exit 5). A run rejecting more than this percent of its claims exits 4 (None:
    # never). Each run rewrites the Prometheus textfile-collector file `metrics_file` when set.
    lock_wait_seconds: float = Field(default=600.0, ge=0)
    fail_rejected_percent: float | None = Field(default=None, ge=0, le=100)
    metrics_file: Path | None = None
    # Logs: `text` or `json` (one object per line); the level is the product's own loggers'.
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = "WARNING"
    # Without a terminal, a long command prints a progress line to stderr once it has been running
    # this long, and then at most every so often per stage.
    progress_interval_seconds: float = Field(default=5.0, ge=0)

    # Remittance advice (X12 835): who pays, as the 835 names it (`adjudicate remittance`).
    payer_id: str = "ORDHS"  # ISA06/GS02 sender id
    payer_name: str = "OREGON DEPARTMENT OF HUMAN SERVICES"
    payer_tin: str = "930000000"  # TRN03 is "1" + this federal tax id
    payer_address: str = "500 SUMMER ST NE"
    payer_city: str = "SALEM"
    payer_state: str = "OR"
    payer_postal_code: str = "97301"
    payer_contact_name: str = "EXPRS BILLING"
    payer_contact_phone: str = "5039450000"
    remit_receiver_id: str = ""  # ISA08/GS03 receiver id (at most 15 characters); empty: each provider's own id
    payee_id_qualifier: str = "FI"  # N1*PE N103 for the provider's id: FI, XV or XX
    x12_usage: str = Field(default="P", pattern="^[PT]$")  # ISA15: production or test

    @field_validator("run_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        # The shape here; a crontab's fields are read where a schedule is kept (worker.schedule).
        seconds = interval_seconds(value)
        if seconds is None and len(value.split()) != 5:
            raise ValueError(f"ADJUDICATION_RUN_SCHEDULE {value!r} is neither a crontab of 5 fields (\"0 2 * * *\": "
                             "minute hour day month weekday) nor an interval (\"every 30s\", \"every 5m\", \"every 2h\")")
        if seconds is not None and seconds < 1:
            raise ValueError(f"ADJUDICATION_RUN_SCHEDULE {value!r}: an interval is at least 1 second")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"ADJUDICATION_TIMEZONE {value!r} is not a time zone (e.g. America/Los_Angeles, UTC)") from None
        return value


INTERVAL = re.compile(r"every\s+(\d+(?:\.\d+)?)\s*([smh])")
INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600}


def interval_seconds(spec: str) -> float | None:
    """The seconds of an interval schedule ("every 30s"); None for anything else."""
    interval = INTERVAL.fullmatch(spec.strip())
    return None if interval is None else float(interval.group(1)) * INTERVAL_UNITS[interval.group(2)]
