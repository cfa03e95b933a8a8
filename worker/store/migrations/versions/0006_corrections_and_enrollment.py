"""provider enrollment dates and a batch's received date (claim corrections and authorization rules)

Revision ID: 0006
Revises: 0009

providers.start_date / end_date: the provider's enrollment, null = open-ended (every provider stored
so far stays enrolled throughout). batches.received_date: the date TIMELY_FILING and
FUTURE_SERVICE_DATE measure from (`submit --received`); batches stored before keep the day they were
submitted (UTC).
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as table:
        table.add_column(sa.Column("start_date", sa.Date(), nullable=True))
        table.add_column(sa.Column("end_date", sa.Date(), nullable=True))
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("received_date", sa.Date(), nullable=True))
    batches = sa.table("batches", sa.column("received_date", sa.Date()), sa.column("submitted_at", sa.DateTime()))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE batches SET received_date = (submitted_at AT TIME ZONE 'UTC')::date")
    else:  # SQLite keeps the timestamp as ISO text: its first ten characters are the date
        op.execute(batches.update().values(received_date=sa.func.substr(batches.c.submitted_at, 1, 10)))
    with op.batch_alter_table("batches") as table:
        table.alter_column("received_date", existing_type=sa.Date(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.drop_column("received_date")
    with op.batch_alter_table("providers") as table:
        table.drop_column("end_date")
        table.drop_column("start_date")
