"""Migrations: the schema they build is the one the code declares, and data stored by earlier
revisions reads and adjudicates the same after an upgrade."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import Cli
from worker.store import schema as t
from worker.store.database import make_engine, upgrade

LEGACY = Path(__file__).with_name("legacy")


def test_migrated_schema_matches_the_declared_tables(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), t.metadata)
    engine.dispose()
    assert drift == []


def test_a_revision_0002_database_upgrades_without_losing_anything(tmp_path):
    db = tmp_path / "legacy.db"
    shutil.copy(LEGACY / "rev0002.db", db)
    cli = Cli(f"sqlite:///{db}", tmp_path)
    cli("db", "upgrade")

    def history() -> str:
        return cli("outcomes", "--history", "--format", "csv").out

    assert history() == (LEGACY / "history_before_run.csv").read_text()
    # The waiting re-queue, the queued batch, the ledger and the claim-id holders carried over:
    # the next run decides exactly what the old code decided (WX-1 a duplicate id, WX-7 overlapping
    # the migrated paid WX-1, WX-3 suspended again).
    assert "run 3: 4 claims" in cli("run").out
    assert history() == (LEGACY / "history_after_run.csv").read_text()
    assert "re-queued 1 claims" in cli("requeue", "--claim", "WX-7", "--operator", "ann", "--note", "n").out


def test_the_packed_ledger_is_lz4_compressed_on_postgresql(pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    with engine.connect() as conn:
        method = conn.exec_driver_sql(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'paid_months'::regclass AND attname = 'claims'"
        ).scalar_one()
    engine.dispose()
    assert method == "l"
