"""cheaper bulk writes of a run's state: no foreign keys on suspended and paid_months, and the
packed ledger text compressed with lz4 on PostgreSQL

Revision ID: 0004
Revises: 0003

PostgreSQL checks a foreign key with a trigger per inserted row: for the ~33,000 suspended rows
and ~25,000 ledger rows of a million-claim run that cost more than writing them (BENCHMARKS.md).
Both tables are written only by a run, in the transaction that inserts the run row they name, from
batches that transaction read, so the keys guarded nothing a reader could see. (SQLite never
checked them: the product runs it with foreign_keys=OFF.)

The run's packed ledger text is about 85 MB; PostgreSQL's default TOAST compression (pglz) spends
more time on it than the COPY itself, lz4 about a third. A server built without lz4 keeps pglz;
values already stored keep theirs.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _suspended(foreign_keys: bool) -> sa.Table:
    return sa.Table(
        "suspended", sa.MetaData(),
        sa.Column("claim_pk", sa.BigInteger(), primary_key=True),
        sa.Column("batch_id", sa.String(), *([sa.ForeignKey("batches.batch_id")] if foreign_keys else []),
                  nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), *([sa.ForeignKey("runs.run_id")] if foreign_keys else []), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
    )


def _paid_months(foreign_keys: bool) -> sa.Table:
    return sa.Table(
        "paid_months", sa.MetaData(),
        sa.Column("client_prime", sa.String(), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("run_id", sa.Integer(), *([sa.ForeignKey("runs.run_id")] if foreign_keys else []),
                  primary_key=True),
        sa.Column("claims", sa.Text(), nullable=False),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("suspended_batch_id_fkey", "suspended", type_="foreignkey")
        op.drop_constraint("suspended_run_id_fkey", "suspended", type_="foreignkey")
        op.drop_constraint("paid_months_run_id_fkey", "paid_months", type_="foreignkey")
        op.execute("""
            DO $$ BEGIN
                ALTER TABLE paid_months ALTER COLUMN claims SET COMPRESSION lz4;
            EXCEPTION WHEN feature_not_supported THEN
                RAISE NOTICE 'this server has no lz4: paid_months keeps pglz';
            END $$
        """)
        return
    # SQLite's keys are unnamed parts of the table definition: the tables are rebuilt without them.
    for table in (_suspended(False), _paid_months(False)):
        with op.batch_alter_table(table.name, copy_from=table, recreate="always"):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE paid_months ALTER COLUMN claims SET COMPRESSION DEFAULT")
        op.create_foreign_key("suspended_batch_id_fkey", "suspended", "batches", ["batch_id"], ["batch_id"])
        op.create_foreign_key("suspended_run_id_fkey", "suspended", "runs", ["run_id"], ["run_id"])
        op.create_foreign_key("paid_months_run_id_fkey", "paid_months", "runs", ["run_id"], ["run_id"])
        return
    for table in (_suspended(True), _paid_months(True)):
        with op.batch_alter_table(table.name, copy_from=table, recreate="always"):
            pass
