"""submitters of the HTTP service: their token hashes and providers, who posted each batch, and
the Idempotency-Key of each post

Revision ID: 0008
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submitters",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("token_hash", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_by", sa.String()),
    )
    op.create_table(
        "submitter_providers",
        sa.Column("submitter", sa.String(), sa.ForeignKey("submitters.name"), primary_key=True),
        sa.Column("provider_id", sa.String(), primary_key=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("submitter", sa.String(), sa.ForeignKey("submitters.name"), primary_key=True),
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("batch_id", sa.String()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("batches", sa.Column("submitter", sa.String(), nullable=True))
    op.create_index("ix_batches_submitter", "batches", ["submitter"])


def downgrade() -> None:
    op.drop_index("ix_batches_submitter", "batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("submitter")
    op.drop_table("idempotency_keys")
    op.drop_table("submitter_providers")
    op.drop_table("submitters")
