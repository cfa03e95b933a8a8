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
    remit_receiver_id: str = ""  # ISA08/GS03 receiver id; empty: each provider's own id
    payee_id_qualifier: str = "FI"  # N1*PE N103 for the provider's id: FI, XV or XX
    x12_usage: str = Field(default="P", pattern="^[PT]$")  # ISA15: production or test
