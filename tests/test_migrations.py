"""Migrations: the schema they build is the one the code declares, and data stored by earlier
revisions reads and adjudicates the same after an upgrade."""

from __future__ import annotations

import csv
import io
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

    def history() -> list[list[str]]:
        return _old_columns(cli("outcomes", "--history", "--format", "csv").out)

    assert history() == _old_columns((LEGACY / "history_before_run.csv").read_text())
    # The waiting re-queue, the queued batch, the ledger and the claim-id holders carried over:
    # the next run decides exactly what the old code decided (WX-1 a duplicate id, WX-7 overlapping
    # the migrated paid WX-1, WX-3 suspended again).
    assert "run 3: 4 claims" in cli("run").out
    assert history() == _old_columns((LEGACY / "history_after_run.csv").read_text())
    assert "re-queued 1 claims" in cli("requeue", "--claim", "WX-7", "--operator", "ann", "--note", "n").out


def _old_columns(export: str) -> list[list[str]]:
    """An export's rows (header first) cut to the eleven columns exports had before revision 0005."""
    return [row[:11] for row in csv.reader(io.StringIO(export))]


def test_a_revision_0004_database_upgrades_to_attempt_rows(tmp_path):
    """Written by the code before attempts were rows (Parquet segments, packed ledger): the same
    history after the upgrade, and the next run decides against the converted ledger what that code
    decided (WX-10 overlapping WX-2 of run 1, WX-11 overlapping WX-8 of run 2, WX-3 against WX-1
    and WX-6 in the order they were paid)."""
    db = tmp_path / "legacy.db"
    shutil.copy(LEGACY / "rev0004.db", db)
    cli = Cli(f"sqlite:///{db}", tmp_path)
    cli("db", "upgrade")

    def history() -> list[list[str]]:
        return _old_columns(cli("outcomes", "--history", "--format", "csv").out)

    assert history() == _old_columns((LEGACY / "rev0004_history_before_run.csv").read_text())
    assert "run 3: 4 claims, 0 paid, 3 suspended, 1 rejected" in cli("run").out
    assert history() == _old_columns((LEGACY / "rev0004_history_after_run.csv").read_text())
    rows = cli("outcomes", "--claim", "WX-9", "--format", "csv").rows()
    assert [(r["provider_id"], r["client_prime"], r["service_date"], r["conflicts_with"]) for r in rows] == [
        ("G1", "xyz0000a", "2026-03-02", "WX-4;WX-5")]
