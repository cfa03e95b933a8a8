"""Tables (SQLAlchemy Core). Numbers the engine sums are scaled integers: units x10^4, money in cents.

Append-only by design: claims are kept as posted, every adjudication attempt is kept, the paid
ledger and the audit trail only grow. Bulk data (a batch's claims, a run's attempts) is stored as
one Parquet blob per batch or run, because a nightly run writes a million of each and rows cost
several times more (BENCHMARKS.md); the few things looked up one by one (claim-id holders,
suspended claims, the paid ledger by client and month) are indexed rows.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Date, DateTime, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

providers = Table(
    "providers", metadata,
    Column("provider_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("start_date", Date, nullable=True),  # enrollment; null = open-ended
    Column("end_date", Date, nullable=True),
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

# The reference tables as the engine reads them (plans, enrollments, spas), one Parquet blob each,
# rewritten by every reference load in the same transaction: runs read these instead of the rows.
reference_snapshots = Table(
    "reference_snapshots", metadata,
    Column("name", String, primary_key=True),
    Column("payload", LargeBinary, nullable=False),
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
    Column("status", String, nullable=False),  # queued | adjudicated | withdrawn
    Column("claims", Integer, nullable=False),
    Column("intake_rejected", Integer, nullable=False),  # rows failing record checks at intake
    Column("first_pk", BigInteger, nullable=False),  # claim_pk of its first claim
    Column("received_date", Date, nullable=False),  # `submit --received`: TIMELY_FILING counts from it
)

# The posted claims of a batch live in one Parquet blob (claim_pk, line, raw columns): a batch is
# written and read whole, and a million claims go in and out in a fraction of what rows would cost.
# Its claim_pks are first_pk .. first_pk + claims - 1, in line order.
batch_payloads = Table(
    "batch_payloads", metadata,
    Column("batch_id", String, ForeignKey("batches.batch_id"), primary_key=True),
    Column("payload", LargeBinary, nullable=False),
)

# Suspended claims waiting for another adjudication, at the place in the order they were queued.
requeues = Table(
    "requeues", metadata,
    Column("claim_pk", BigInteger, primary_key=True),
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

# Every attempt a run made, as one Parquet blob per run (claim_pk, attempt, status, reasons, carc,
# spa_id, paid_units_s, paid_cents, conflicts_with): append-only history, written in one piece.
outcome_segments = Table(
    "outcome_segments", metadata,
    Column("run_id", Integer, ForeignKey("runs.run_id"), primary_key=True),
    Column("payload", LargeBinary, nullable=False),
)

# Which batches' claims each run decided: exports of one batch read only those runs' segments.
run_batches = Table(
    "run_batches", metadata,
    Column("run_id", Integer, ForeignKey("runs.run_id"), primary_key=True),
    Column("batch_id", String, ForeignKey("batches.batch_id"), primary_key=True),
)

# Claims whose latest attempt is suspended: what operators re-queue and override. Like paid_months,
# written in bulk by a run only, with the run row and from batches it names: no foreign keys, which
# PostgreSQL would check row by row (migration 0004).
suspended = Table(
    "suspended", metadata,
    Column("claim_pk", BigInteger, primary_key=True),
    Column("batch_id", String, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("reasons", Text, nullable=False),  # ';'-separated
)

# The paid ledger the edits of later runs read, one row per client, month and run: the claims that
# run paid for that client and month, packed as text (adjudication.ledger_codec). A run reads the
# rows of the clients and months it touches; paid stays paid, rows are never removed.
paid_months = Table(
    "paid_months", metadata,
    Column("client_prime", String, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("run_id", Integer, primary_key=True),
    Column("claims", Text, nullable=False),  # lz4-compressed on PostgreSQL (migration 0004)
)

# Which claim holds a claim_id (the first claim with that id that was not rejected).
claim_ids = Table(
    "claim_ids", metadata,
    Column("claim_id", String, primary_key=True),
    Column("claim_pk", BigInteger, nullable=False),
    sqlite_with_rowid=False,
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
    Column("claim_pk", BigInteger, nullable=False, index=True),
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
