"""cheaper attempt indexes: the status index holds only the attempts that did not pay, and on
PostgreSQL the indexed id columns compare bytes (COLLATE "C")

Revision ID: 0010
Revises: 0006

A run of a million claims builds the attempt indexes of its month's partition (PostgreSQL) or of the
new table (SQLite) after the insert, and that build was most of what the run spent storing:
- `attempts_status` indexed every attempt, 96% of them `paid`: a query for paid attempts reads the
  table anyway, so the index now holds the others only (suspended, rejected, void), which are what
  operators ask for by status (`outcomes --status suspended`). PostgreSQL's planner uses it for any
  `status = 'x'` with x not paid; the repository adds `status <> 'paid'` to such queries so that
  SQLite's does too.
- On PostgreSQL the id columns the indexes sort (claim_id, batch_id, status, provider_id,
  client_prime) compare as bytes (`COLLATE "C"`) instead of through the database's locale: ids are
  ASCII, equality is unchanged, and sorting them for an index costs about half. The views are read
  back and created again around the change (PostgreSQL refuses to alter a column a view uses).
"""
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

ID_COLUMNS = ("claim_id", "batch_id", "status", "provider_id", "client_prime")
NOT_PAID = "status <> 'paid'"


def _recreated_views(collation: str | None) -> None:
    bind = op.get_bind()
    views = {name: bind.exec_driver_sql(f"SELECT pg_get_viewdef('{name}'::regclass, true)").scalar()
             for name in ("outcome_attempts", "outcomes_latest")}
    for name in views:
        op.execute(f"DROP VIEW {name}")
    collate = f' COLLATE "{collation}"' if collation else ""
    for column in ID_COLUMNS:
        op.execute(f"ALTER TABLE attempts ALTER COLUMN {column} TYPE varchar{collate}")
    for name, definition in views.items():
        op.execute(f"CREATE VIEW {name} AS {definition}")


def upgrade() -> None:
    op.execute("DROP INDEX attempts_status")
    if op.get_bind().dialect.name == "postgresql":
        _recreated_views("C")
    op.execute(f"CREATE INDEX attempts_status ON attempts (status) WHERE {NOT_PAID}")


def downgrade() -> None:
    op.execute("DROP INDEX attempts_status")
    if op.get_bind().dialect.name == "postgresql":
        _recreated_views(None)
    op.execute("CREATE INDEX attempts_status ON attempts (status)")
