"""All configuration in one place: environment variables prefixed ADJUDICATION_ (or CLI flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADJUDICATION_", extra="ignore")

    database_url: str = "sqlite:///adjudication.db"
    broker_url: str | None = None
    rules_file: Path | None = None
    max_file_bytes: int = 512 * 1024 * 1024
    max_decompressed_bytes: int = 2 * 1024 * 1024 * 1024
    # Seconds a second `run` (or writer) waits for the one holding the SQLite write lock.
    sqlite_busy_timeout: float = 600.0
