"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 14:17:51.544255
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('operator', sa.String(), nullable=False),
    sa.Column('action', sa.String(), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('enrollments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client_prime', sa.String(), nullable=False),
    sa.Column('cme_id', sa.String(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollments_client_prime'), ['client_prime'], unique=False)

    op.create_table('operators',
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('plans',
    sa.Column('plan_id', sa.String(), nullable=False),
    sa.Column('client_prime', sa.String(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('monthly_hours', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('plan_id')
    )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plans_client_prime'), ['client_prime'], unique=False)

    op.create_table('providers',
    sa.Column('provider_id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('provider_id')
    )
    op.create_table('queue_events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_table('run_lock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('runs',
    sa.Column('run_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.Column('paid', sa.Integer(), nullable=False),
    sa.Column('suspended', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('paid_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('run_id')
    )
    op.create_table('batches',
    sa.Column('batch_id', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(), nullable=False),
    sa.Column('file_name', sa.String(), nullable=False),
    sa.Column('file_format', sa.String(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('claims', sa.Integer(), nullable=False),
    sa.Column('intake_rejected', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['seq'], ['queue_events.seq'], ),
    sa.PrimaryKeyConstraint('batch_id'),
    sa.UniqueConstraint('content_hash')
    )
    op.create_table('spas',
    sa.Column('spa_id', sa.String(), nullable=False),
    sa.Column('plan_id', sa.String(), nullable=False),
    sa.Column('provider_id', sa.String(), nullable=False),
    sa.Column('service_element', sa.String(), nullable=False),
    sa.Column('procedure_code', sa.String(), nullable=False),
    sa.Column('modifier', sa.String(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('units', sa.String(), nullable=False),
    sa.Column('unit_period', sa.String(), nullable=False),
    sa.Column('rate', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.plan_id'], ),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.provider_id'], ),
    sa.PrimaryKeyConstraint('spa_id')
    )
    with op.batch_alter_table('spas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spas_plan_id'), ['plan_id'], unique=False)

    op.create_table('claims',
    sa.Column('claim_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.String(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('claim_id', sa.String(), nullable=True),
    sa.Column('client_prime', sa.String(), nullable=True),
    sa.Column('provider_id', sa.String(), nullable=True),
    sa.Column('staff_id', sa.String(), nullable=True),
    sa.Column('procedure_code', sa.String(), nullable=True),
    sa.Column('modifier', sa.String(), nullable=True),
    sa.Column('service_date', sa.String(), nullable=True),
    sa.Column('start_time', sa.String(), nullable=True),
    sa.Column('end_time', sa.String(), nullable=True),
    sa.Column('units', sa.String(), nullable=True),
    sa.Column('billed_rate', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.batch_id'], ),
    sa.PrimaryKeyConstraint('claim_pk')
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index('ix_claims_batch_line', ['batch_id', 'line'], unique=False)
        batch_op.create_index('ix_claims_claim_id', ['claim_id'], unique=False)

    op.create_table('attempts',
    sa.Column('claim_pk', sa.BigInteger(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('reasons', sa.Text(), nullable=False),
    sa.Column('carc', sa.Text(), nullable=False),
    sa.Column('spa_id', sa.String(), nullable=True),
    sa.Column('paid_units_s', sa.BigInteger(), nullable=True),
    sa.Column('paid_cents', sa.BigInteger(), nullable=True),
    sa.Column('conflicts_with', sa.Text(), nullable=False),
    sa.Column('latest', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claims.claim_pk'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], ),
    sa.PrimaryKeyConstraint('claim_pk', 'attempt')
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_latest_status', ['latest', 'status'], unique=False)

    op.create_table('claim_ids',
    sa.Column('claim_id', sa.String(), nullable=False),
    sa.Column('claim_pk', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claims.claim_pk'], ),
    sa.PrimaryKeyConstraint('claim_id')
    )
    op.create_table('ledger',
    sa.Column('claim_pk', sa.BigInteger(), nullable=False),
    sa.Column('claim_id', sa.String(), nullable=False),
    sa.Column('client_prime', sa.String(), nullable=False),
    sa.Column('service_day', sa.Date(), nullable=False),
    sa.Column('provider_id', sa.String(), nullable=False),
    sa.Column('procedure_code', sa.String(), nullable=False),
    sa.Column('modifier', sa.String(), nullable=False),
    sa.Column('start_min', sa.Integer(), nullable=True),
    sa.Column('end_min', sa.Integer(), nullable=True),
    sa.Column('units_s', sa.BigInteger(), nullable=False),
    sa.Column('spa_id', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claims.claim_pk'], ),
    sa.PrimaryKeyConstraint('claim_pk')
    )
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_client_day', ['client_prime', 'service_day'], unique=False)
        batch_op.create_index('ix_ledger_spa', ['spa_id'], unique=False)

    op.create_table('requeues',
    sa.Column('claim_pk', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claims.claim_pk'], ),
    sa.ForeignKeyConstraint(['seq'], ['queue_events.seq'], ),
    sa.PrimaryKeyConstraint('claim_pk')
    )
    op.create_table('waivers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('claim_pk', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(), nullable=False),
    sa.Column('operator', sa.String(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['claim_pk'], ['claims.claim_pk'], ),
    sa.ForeignKeyConstraint(['operator'], ['operators.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('claim_pk', 'code')
    )
    with op.batch_alter_table('waivers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waivers_claim_pk'), ['claim_pk'], unique=False)

    op.execute("INSERT INTO run_lock (id, holder) VALUES (1, NULL)")


def downgrade() -> None:
    with op.batch_alter_table('waivers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waivers_claim_pk'))

    op.drop_table('waivers')
    op.drop_table('requeues')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_spa')
        batch_op.drop_index('ix_ledger_client_day')

    op.drop_table('ledger')
    op.drop_table('claim_ids')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_latest_status')

    op.drop_table('attempts')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index('ix_claims_claim_id')
        batch_op.drop_index('ix_claims_batch_line')

    op.drop_table('claims')
    with op.batch_alter_table('spas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spas_plan_id'))

    op.drop_table('spas')
    op.drop_table('batches')
    op.drop_table('runs')
    op.drop_table('run_lock')
    op.drop_table('queue_events')
    op.drop_table('providers')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plans_client_prime'))

    op.drop_table('plans')
    op.drop_table('operators')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollments_client_prime'))

    op.drop_table('enrollments')
    op.drop_table('audit')
