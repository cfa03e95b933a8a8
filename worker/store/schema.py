"""Tables (SQLAlchemy Core). Numbers the engine sums are scaled integers: units x10^4, money in cents.

Append-only by design: claims are kept as posted, every adjudication attempt is a new row, the
paid ledger and the audit trail only grow. `attempts.latest` marks the current outcome of a claim.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Table, Text, UniqueConstraint)

metadata = MetaData()

providers = Table(
    "providers", metadata,
    Column("provider_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False),
)

plans = Table(
    "plans", metadata,
    Column("plan_id", String, primary_key=True),
    Column("client_prime", String, nullable=False, index=True),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("status", String, nullable=False),
    Column("monthly_hours", String, nullable=False),  # exact decimal text
)

enrollments = Table(
    "enrollments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_prime", String, nullable=False, index=True),
    Column("cme_id", String, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
)

spas = Table(
    "spas", metadata,
    Column("spa_id", String, primary_key=True),
    Column("plan_id", String, ForeignKey("plans.plan_id"), nullable=False, index=True),
    Column("provider_id", String, ForeignKey("providers.provider_id"), nullable=False),
    Column("service_element", String, nullable=False),
    Column("procedure_code", String, nullable=False),
    Column("modifier", String, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("units", String, nullable=False),
    Column("unit_period", String, nullable=False),
    Column("rate", String, nullable=False),
    Column("status", String, nullable=False),
)

# One row per enqueue (a batch submitted, claims re-queued): its seq is the adjudication order.
queue_events = Table(
    "queue_events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", String, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

batches = Table(
    "batches", metadata,
    Column("batch_id", String, primary_key=True),
    Column("content_hash", String, nullable=False, unique=True),
    Column("file_name", String, nullable=False),
    Column("file_format", String, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("seq", Integer, ForeignKey("queue_events.seq"), nullable=False),
    Column("status", String, nullable=False),  # queued | adjudicated
    Column("claims", Integer, nullable=False),
    Column("intake_rejected", Integer, nullable=False),  # rows failing record checks at intake
)

claims = Table(
    "claims", metadata,
    Column("claim_pk", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("batch_id", String, ForeignKey("batches.batch_id"), nullable=False),
    Column("line", Integer, nullable=False),
    Column("claim_id", String),
    Column("client_prime", String),
    Column("provider_id", String),
    Column("staff_id", String),
    Column("procedure_code", String),
    Column("modifier", String),
    Column("service_date", String),
    Column("start_time", String),
    Column("end_time", String),
    Column("units", String),
    Column("billed_rate", String),
    Index("ix_claims_batch_line", "batch_id", "line"),
    Index("ix_claims_claim_id", "claim_id"),
)

# The posted claims of a batch as one Parquet blob (claim_pk, line, raw columns): the nightly run
# reads a million claims from it in a fraction of the time a row-by-row select takes.
batch_payloads = Table(
    "batch_payloads", metadata,
    Column("batch_id", String, ForeignKey("batches.batch_id"), primary_key=True),
    Column("payload", LargeBinary, nullable=False),
)

# Suspended claims waiting for another adjudication, at the place in the order they were queued.
requeues = Table(
    "requeues", metadata,
    Column("claim_pk", BigInteger, ForeignKey("claims.claim_pk"), primary_key=True),
    Column("seq", Integer, ForeignKey("queue_events.seq"), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("claims", Integer, nullable=False, default=0),
    Column("paid", Integer, nullable=False, default=0),
    Column("suspended", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("paid_cents", BigInteger, nullable=False, default=0),
)

attempts = Table(
    "attempts", metadata,
    Column("claim_pk", BigInteger, ForeignKey("claims.claim_pk"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.run_id"), nullable=False),
    Column("status", String, nullable=False),
    Column("reasons", Text, nullable=False),  # ';'-separated
    Column("carc", Text, nullable=False),
    Column("spa_id", String),
    Column("paid_units_s", BigInteger),  # x10^4
    Column("paid_cents", BigInteger),
    Column("conflicts_with", Text, nullable=False),
    Column("latest", Boolean, nullable=False),
    Index("ix_attempts_latest_status", "latest", "status"),
)

# Claims paid, denormalized for the edits of later runs (paid stays paid: rows are never removed).
ledger = Table(
    "ledger", metadata,
    Column("claim_pk", BigInteger, ForeignKey("claims.claim_pk"), primary_key=True),
    Column("claim_id", String, nullable=False),
    Column("client_prime", String, nullable=False),
    Column("service_day", Date, nullable=False),
    Column("provider_id", String, nullable=False),
    Column("procedure_code", String, nullable=False),
    Column("modifier", String, nullable=False),
    Column("start_min", Integer),
    Column("end_min", Integer),
    Column("units_s", BigInteger, nullable=False),
    Column("spa_id", String, nullable=False),
    Index("ix_ledger_client_day", "client_prime", "service_day"),
    Index("ix_ledger_spa", "spa_id"),
)

# Which claim holds a claim_id (the first claim with that id that was not rejected).
claim_ids = Table(
    "claim_ids", metadata,
    Column("claim_id", String, primary_key=True),
    Column("claim_pk", BigInteger, ForeignKey("claims.claim_pk"), nullable=False),
)

operators = Table(
    "operators", metadata,
    Column("name", String, primary_key=True),
    Column("role", String, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

waivers = Table(
    "waivers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("claim_pk", BigInteger, ForeignKey("claims.claim_pk"), nullable=False, index=True),
    Column("code", String, nullable=False),
    Column("operator", String, ForeignKey("operators.name"), nullable=False),
    Column("note", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("claim_pk", "code"),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("operator", String, nullable=False),
    Column("action", String, nullable=False),
    Column("target", Text, nullable=False),
    Column("note", Text, nullable=False),
)

# A single row every writer that must be alone (a run) updates first: SQLite and PostgreSQL both
# then serialize those writers on it.
run_lock = Table(
    "run_lock", metadata,
    Column("id", Integer, primary_key=True),
    Column("holder", String),
)
