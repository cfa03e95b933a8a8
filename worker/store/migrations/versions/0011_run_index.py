"""an index of attempts by run: reading one run's attempts (its remittance, its run report) no longer
reads the whole history on SQLite, or the whole month's partition on PostgreSQL

Revision ID: 0011
Revises: 0010

A run's attempts are appended together. On PostgreSQL a block range index (BRIN) on run_id finds
them: it is built in one pass over a month's partition and holds a few pages, where a B-tree would
cost the run a sort of a million keys. On SQLite a B-tree on run_id: its keys only ever grow, so
each run appends to its end.
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    using = " USING brin" if op.get_bind().dialect.name == "postgresql" else ""
    # IF NOT EXISTS: migration 0005 writes the attempts of older databases through the repository,
    # which builds the indexes the tables have today, this one included.
    op.execute(f"CREATE INDEX IF NOT EXISTS attempts_run ON attempts{using} (run_id)")


def downgrade() -> None:
    op.execute("DROP INDEX attempts_run")
