"""Tables (SQLAlchemy Core). Numbers the engine sums are scaled integers: units x10^4, money in cents.

Append-only by design: claims are kept as posted, every adjudication attempt is kept, reversals and
the audit trail only grow. A batch's posted claims are one Parquet blob (written and read whole);
the history is rows (`attempts`, `reversals`), indexed for the questions operators ask, with the
views `outcome_attempts` and `outcomes_latest` (created by migration 0005; docs/store.md) for people
and tools. The paid ledger is the paid attempts whose claim was not reversed.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table,
                        Text, UniqueConstraint, column, table, text)

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
    # The HTTP submitter that posted it (migration 0008); null for `submit` and the drop folder.
    Column("submitter", String, index=True),
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
    # done | failed (nothing of it stored; `failure` says why in one line) | dry-run (nothing stored)
    Column("status", String, nullable=False, server_default="done"),
    Column("failure", Text),
    Column("voids", Integer, nullable=False, server_default="0"),  # filled by corrections
    Column("reversed_cents", BigInteger, nullable=False, server_default="0"),
)

# Every adjudication attempt, one row each, append-only: the outcome export's columns (SPEC 3) with
# numbers as scaled integers (paid_units_s x10^4, paid_cents), lists ';'-joined ('' when empty), the
# claim's parsed fields (trimmed; service_date null when it did not parse), and what the edits of later
# runs read (start_min, end_min). run_row is the attempt's place in its run's adjudication order: the
# paid ledger is read in (run_id, run_row) order, the order claims were paid in. On PostgreSQL the
# table is partitioned by run_month (the first day of the month of the run), one partition per month,
# created by the run that first writes into it (migration 0005, docs/store.md). Read it through the
# views outcome_attempts and outcomes_latest.
NOT_PAID = "status <> 'paid'"
attempts = Table(
    "attempts", metadata,
    Column("run_id", Integer, nullable=False),
    Column("run_month", Date, nullable=False),
    Column("run_row", Integer, nullable=False),
    Column("claim_pk", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("claim_id", String),
    Column("batch_id", String, nullable=False),
    Column("line", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("spa_id", String),
    Column("paid_units_s", BigInteger),
    Column("paid_cents", BigInteger),
    Column("conflicts_with", Text, nullable=False),
    Column("carc", Text, nullable=False),
    Column("adjusts", String),
    Column("provider_id", String),
    Column("client_prime", String),
    Column("procedure_code", String),
    Column("modifier", String),
    Column("service_date", Date),
    Column("start_min", Integer),
    Column("end_min", Integer),
    Index("attempts_claim_pk", "claim_pk"),
    Index("attempts_claim_id", "claim_id"),
    Index("attempts_batch", "batch_id", "line"),
    Index("attempts_provider_date", "provider_id", "service_date"),
    Index("attempts_client_date", "client_prime", "service_date"),
    # Only the attempts that did not pay (migration 0010): a query for paid ones reads the table anyway.
    Index("attempts_status", "status", sqlite_where=text(NOT_PAID), postgresql_where=text(NOT_PAID)),
    # One run's attempts (its remittance, its report; migration 0011). A run's rows are appended
    # together, so on PostgreSQL a block range index finds them (built in one pass, a few pages); on
    # SQLite a B-tree, appended at its end night after night.
    Index("attempts_run", "run_id", postgresql_using="brin"),
    postgresql_partition_by="RANGE (run_month)",
)

# Claims whose latest attempt is suspended: what operators re-queue and override. Written in bulk by
# a run only, with the run row and from batches it names: no foreign keys, which PostgreSQL would
# check row by row (migration 0004).
suspended = Table(
    "suspended", metadata,
    Column("claim_pk", BigInteger, primary_key=True),
    Column("batch_id", String, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("reasons", Text, nullable=False),  # ';'-separated
)

# Replacements and voids that reversed a paid claim (claim_pk), append-only; attempts stay as they
# were and the views show reversed_by on the attempt that paid the original.
reversals = Table(
    "reversals", metadata,
    Column("claim_pk", BigInteger, primary_key=True),
    Column("reversed_by_pk", BigInteger, nullable=False),
    Column("reversed_by", String),
    Column("run_id", Integer, nullable=False),
)

# The views for people and tools (created by migration 0005, docs/store.md), with the export's column
# names (SPEC 3): every attempt, and the latest attempt of each claim.
VIEW_COLUMNS = ("claim_id", "batch_id", "line", "status", "reasons", "spa_id", "paid_units", "paid_amount",
                "conflicts_with", "carc", "attempt", "adjusts", "reversed_by", "provider_id", "client_prime",
                "procedure_code", "modifier", "service_date")
# After the export's columns the views also show run_id: the run that made the attempt.
outcome_attempts = table("outcome_attempts", *[column(c, Date if c == "service_date" else None) for c in VIEW_COLUMNS],
                         column("run_id"))
outcomes_latest = table("outcomes_latest", *[column(c, Date if c == "service_date" else None) for c in VIEW_COLUMNS],
                        column("run_id"))

operators = Table(
    "operators", metadata,
    Column("name", String, primary_key=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

# The roles each operator holds (admin, operator, override), one row per grant (worker.access);
# a revoke deletes the row, the audit trail keeps both.
operator_grants = Table(
    "operator_grants", metadata,
    Column("name", String, ForeignKey("operators.name"), primary_key=True),
    Column("role", String, primary_key=True),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("granted_by", String),  # null: the first admin, or a role migrated from before grants
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
    # Where the command ran, and the hash chain (worker.audit); UPDATE and DELETE are refused by
    # triggers (migration 0007).
    Column("os_user", String, nullable=False),
    Column("host", String, nullable=False),
    Column("prev_hash", String, nullable=False),
    Column("hash", String, nullable=False),
)

# A single row every writer that must be alone (a run) updates first: SQLite and PostgreSQL both
# then serialize those writers on it. A run also holds it as a lease everyone can read (worker/runs.py):
# `holder` names the command, its process id and host, `since` when it took it; empty when free.
run_lock = Table(
    "run_lock", metadata,
    Column("id", Integer, primary_key=True),
    Column("holder", String),
    Column("since", DateTime(timezone=True)),
)


# Upstream systems posting over HTTP (migration 0008): one token each, stored as its SHA-256 only
# (worker/http/submitters.py says why), and the providers each may post claims for.
submitters = Table(
    "submitters", metadata,
    Column("name", String, primary_key=True),
    Column("token_hash", String, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String, nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String),
)

submitter_providers = Table(
    "submitter_providers", metadata,
    Column("submitter", String, ForeignKey("submitters.name"), primary_key=True),
    Column("provider_id", String, primary_key=True),
)

# A post's Idempotency-Key: taken before the file is read (batch_id null while that post is under
# way), then the batch it made; a retry with the key gets that batch whatever bytes it carries.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("submitter", String, ForeignKey("submitters.name"), primary_key=True),
    Column("key", String, primary_key=True),
    Column("batch_id", String),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
