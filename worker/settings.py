"""All configuration in one place: environment variables prefixed ADJUDICATION_ (or CLI flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADJUDICATION_", extra="ignore")

    database_url: str = "sqlite:///adjudication.db"
    # With a broker, `run` splits the edits by client into `run_shards` shards for the Celery workers
    # and gives up (storing nothing) when they have not all come back within `run_timeout_seconds`.
    broker_url: str | None = None
    run_shards: int = Field(default=4, ge=1)
    run_timeout_seconds: float = Field(default=3600.0, gt=0)
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
    # Seconds a second `run` (or writer) waits for the one holding the SQLite write lock.
    sqlite_busy_timeout: float = 600.0

    # Drop folder (`adjudicate watch DIR`, or a Celery beat task sweeping `drop_folder`): a file is
    # taken once its size and times have not changed for `drop_settle_seconds`; a file a crashed sweep
    # left in DIR/.processing/ goes back to DIR after `drop_stale_seconds` (at once if its process is gone).
    drop_folder: Path | None = None
    drop_settle_seconds: float = 10.0
    drop_interval_seconds: float = 30.0
    drop_stale_seconds: float = 3600.0
