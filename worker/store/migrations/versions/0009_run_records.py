"""run records: a run's status (done, failed, dry-run) and one-line failure, voids and amount
reversed (filled by corrections), and the run lock's holder since when

Revision ID: 0009
Revises: 0004

The run lock becomes a lease everyone can read: `holder` says which command holds it (its process id
and host), `since` when it took it; both are empty when nobody holds it (worker/runs.py). Holders left
by the transactional lock of earlier versions (`holder` was the last writer's name) are cleared.
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("status", sa.String(), nullable=False, server_default="done"))
    op.add_column("runs", sa.Column("failure", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("voids", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("reversed_cents", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("run_lock", sa.Column("since", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE run_lock SET holder = NULL")


def downgrade() -> None:
    with op.batch_alter_table("run_lock") as batch:
        batch.drop_column("since")
    with op.batch_alter_table("runs") as batch:
        for column in ("reversed_cents", "voids", "failure", "status"):
            batch.drop_column(column)
