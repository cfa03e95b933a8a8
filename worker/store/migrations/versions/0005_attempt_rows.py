"""the history as rows: one `attempts` row per adjudication attempt (partitioned by run month on
PostgreSQL), `reversals`, and the views `outcome_attempts` and `outcomes_latest`; the paid ledger
is the paid attempts (the packed `paid_months` texts, the Parquet `outcome_segments` and
`run_batches` go away)

Revision ID: 0005
Revises: 0004

Existing data is carried over: every attempt of every stored segment becomes a row, with the
claim's parsed fields read from its batch's payload. The packed ledger is not read: the claims it
holds are exactly the paid attempts (paid stays paid), which now are the ledger. Nor is
`claim_ids`, dropped too: the claim holding an id is the one with an attempt not rejected.
"""
import datetime as dt
import io

import polars as pl
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    "attempts_claim_pk": ("claim_pk",),
    "attempts_claim_id": ("claim_id",),
    "attempts_batch": ("batch_id", "line"),
    "attempts_provider_date": ("provider_id", "service_date"),
    "attempts_client_date": ("client_prime", "service_date"),
    "attempts_status": ("status",),
}


def _decimal_text(column: str, places: int, strip: bool) -> str:
    """SQL for the exact text of an integer scaled by 10^places, the same on SQLite and PostgreSQL
    (null counts as 0, as in the export): 25000 -> '2.5' (strip) or 7012 -> '70.12'."""
    factor = 10 ** places
    value = f"COALESCE({column}, 0)"
    whole = f"CAST({value} / {factor} AS TEXT)"
    fraction = f"SUBSTR(CAST({factor} + {value} % {factor} AS TEXT), 2)"
    if not strip:
        return f"{whole} || '.' || {fraction}"
    return f"CASE WHEN RTRIM({fraction}, '0') = '' THEN {whole} ELSE {whole} || '.' || RTRIM({fraction}, '0') END"


def view_select(latest: bool) -> str:
    """The views' SELECT: the export's columns (SPEC 3) in its order; reversed_by on the attempt that paid."""
    select = f"""SELECT a.claim_id, a.batch_id, a.line, a.status, a.reasons, a.spa_id,
       {_decimal_text('a.paid_units_s', 4, True)} AS paid_units,
       {_decimal_text('a.paid_cents', 2, False)} AS paid_amount,
       a.conflicts_with, a.carc, a.attempt, a.adjusts,
       CASE WHEN a.status = 'paid' THEN r.reversed_by END AS reversed_by,
       a.provider_id, a.client_prime, a.procedure_code, a.modifier, a.service_date, a.run_id
FROM attempts a LEFT JOIN reversals r ON r.claim_pk = a.claim_pk"""
    if latest:
        select += """
WHERE NOT EXISTS (SELECT 1 FROM attempts later WHERE later.claim_pk = a.claim_pk AND later.attempt > a.attempt)"""
    return select


def create_views() -> None:
    op.execute("CREATE VIEW outcome_attempts AS " + view_select(latest=False))
    op.execute("CREATE VIEW outcomes_latest AS " + view_select(latest=True))


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "attempts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("run_month", sa.Date(), nullable=False),
        sa.Column("run_row", sa.Integer(), nullable=False),
        sa.Column("claim_pk", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.String()),
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("spa_id", sa.String()),
        sa.Column("paid_units_s", sa.BigInteger()),
        sa.Column("paid_cents", sa.BigInteger()),
        sa.Column("conflicts_with", sa.Text(), nullable=False),
        sa.Column("carc", sa.Text(), nullable=False),
        sa.Column("adjusts", sa.String()),
        sa.Column("provider_id", sa.String()),
        sa.Column("client_prime", sa.String()),
        sa.Column("procedure_code", sa.String()),
        sa.Column("modifier", sa.String()),
        sa.Column("service_date", sa.Date()),
        sa.Column("start_min", sa.Integer()),
        sa.Column("end_min", sa.Integer()),
        **({"postgresql_partition_by": "RANGE (run_month)"} if postgres else {}),
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "attempts", list(columns))
    op.create_table(
        "reversals",
        sa.Column("claim_pk", sa.BigInteger(), primary_key=True),
        sa.Column("reversed_by_pk", sa.BigInteger(), nullable=False),
        sa.Column("reversed_by", sa.String()),
        sa.Column("run_id", sa.Integer(), nullable=False),
    )
    create_views()
    _carry_over_segments()
    op.drop_table("paid_months")
    op.drop_table("claim_ids")  # which claim holds an id: read from the attempts (their claim_id index)
    op.drop_table("run_batches")
    op.drop_table("outcome_segments")


def _carry_over_segments() -> None:
    """Every stored attempt as a row: the segment's columns, the claim's parsed fields from its
    batch's payload, the run's month; run_row is the attempt's place in its segment (queue order)."""
    from worker.store import repository as repo  # the product's own reading of payloads

    conn = op.get_bind()
    runs = conn.execute(sa.text("SELECT s.run_id, s.payload, r.started_at FROM outcome_segments s "
                                "JOIN runs r ON r.run_id = s.run_id ORDER BY s.run_id")).all()
    if not runs:
        return
    claims = repo.payloads(conn, parsed=True).select(
        "claim_pk", "batch_id", "line", "claim_id", "provider_id", "client_prime", "procedure_code", "modifier",
        pl.col("service_day").alias("service_date"), "start_min", "end_min")
    every = []
    for run_id, payload, started in runs:
        if isinstance(started, str):  # SQLite hands back the stored text
            started = dt.datetime.fromisoformat(started)
        segment = pl.read_parquet(io.BytesIO(payload))
        rows = segment.with_row_index("run_row").with_columns(
            run_id=pl.lit(run_id, pl.Int64), run_month=pl.lit(started.date().replace(day=1), pl.Date),
            adjusts=pl.lit(None, pl.String),
            **{c: pl.col(c).list.join(";") for c in ("reasons", "conflicts_with", "carc")},
        ).join(claims, on="claim_pk", how="left", maintain_order="left")
        every.append(rows.select("run_id", "run_month", pl.col("run_row").cast(pl.Int64), *repo.ATTEMPT_COLUMNS[1:]))
    # One write for all runs (in run order): on SQLite each bulk write stays attached to the
    # transaction until it ends, and SQLite attaches at most ten (worker/store/bulk.py).
    repo.store_attempts(conn, pl.concat(every))


def downgrade() -> None:
    raise NotImplementedError("0005 turned the stored segments into attempt rows; restore a backup instead")
