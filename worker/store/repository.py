"""Reads and writes of the product's state; every function runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Connection, and_, delete, func, insert, select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adjudication.claims import CLAIM_COLUMNS
from adjudication.decimals import to_scaled
from adjudication.engine import LEDGER_SCHEMA, ReferenceFrames
from adjudication.reference import Enrollment, Located, Plan, Provider, ReferenceSet, Spa
from worker.store import schema as t
from worker.store.bulk import read_frame


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- reference data -------------------------------------------------------------------------

def reference_set(conn: Connection) -> ReferenceSet:
    def rows(table, model):
        return [model.model_validate(dict(r._mapping)) for r in conn.execute(select(table))]

    return ReferenceSet.from_rows(rows(t.providers, Provider), rows(t.plans, Plan), rows(t.enrollments, Enrollment),
                                  rows(t.spas, Spa))


def reference_frames(conn: Connection) -> ReferenceFrames:
    """Reference data as engine frames, read without per-row validation (it was checked on load)."""
    def frame(table, schema):
        return read_frame(conn, select(*[table.c[c] for c in schema]), schema)

    def scaled(column: str) -> pl.Expr:
        return pl.col(column).map_elements(to_scaled, return_dtype=pl.Int64)

    plans = frame(t.plans, {"plan_id": pl.String, "client_prime": pl.String, "start_date": pl.Date,
                            "end_date": pl.Date, "status": pl.String, "monthly_hours": pl.String})
    spas = frame(t.spas, {"spa_id": pl.String, "plan_id": pl.String, "provider_id": pl.String,
                          "procedure_code": pl.String, "modifier": pl.String, "start_date": pl.Date,
                          "end_date": pl.Date, "units": pl.String, "unit_period": pl.String, "rate": pl.String,
                          "status": pl.String})
    return ReferenceFrames(
        plans=plans.with_columns(monthly_hours_s=scaled("monthly_hours")).drop("monthly_hours"),
        enrollments=frame(t.enrollments, {"client_prime": pl.String, "start_date": pl.Date, "end_date": pl.Date}),
        spas=spas.join(plans.select("plan_id", "client_prime"), on="plan_id", how="left").select(
            "spa_id", "plan_id", "client_prime", "provider_id", "procedure_code", "modifier", "start_date",
            "end_date", units_s=scaled("units"), unit_period="unit_period", rate_s=scaled("rate"), status="status"),
    )


def _upsert(conn: Connection, table, rows: list[dict], key: str) -> None:
    if not rows:
        return
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[key], set_={c: statement.excluded[c] for c in rows[0] if c != key}
    )
    conn.execute(statement, rows)


def save_reference(conn: Connection, loaded: dict[str, list[Located]]) -> None:
    """Store what a load brought: upserts by id, enrollments replaced per client (checked already)."""
    def dumped(name):
        return [item.row.model_dump(mode="json") for item in loaded.get(name, [])]

    _upsert(conn, t.providers, dumped("providers.csv"), "provider_id")
    _upsert(conn, t.plans, [{**r, **_dates(r)} for r in dumped("plans.csv")], "plan_id")
    _upsert(conn, t.spas, [{**r, **_dates(r)} for r in dumped("spas.csv")], "spa_id")
    if "enrollments.csv" in loaded:
        rows = [{**r, **_dates(r)} for r in dumped("enrollments.csv")]
        clients = sorted({r["client_prime"] for r in rows})
        conn.execute(delete(t.enrollments).where(t.enrollments.c.client_prime.in_(clients)))
        if rows:
            conn.execute(insert(t.enrollments), rows)


def _dates(row: dict) -> dict:
    return {k: dt.date.fromisoformat(row[k]) for k in ("start_date", "end_date")}


# --- queue ---------------------------------------------------------------------------------

def new_queue_event(conn: Connection, kind: str) -> int:
    return conn.execute(insert(t.queue_events).values(kind=kind, at=now()).returning(t.queue_events.c.seq)).scalar_one()


RAW_SCHEMA = {"claim_pk": pl.Int64, **{c: pl.String for c in CLAIM_COLUMNS}}


def _queued() -> tuple:
    """Selects of the claims waiting for adjudication: fresh claims of queued batches, re-queued ones."""
    fresh = select(t.claims).join(t.batches, t.batches.c.batch_id == t.claims.c.batch_id).where(
        t.batches.c.status == "queued")
    again = select(t.claims).join(t.requeues, t.requeues.c.claim_pk == t.claims.c.claim_pk)
    return fresh, again


@dataclass(frozen=True)
class Queue:
    """A snapshot of the work of one run: claims in adjudication order, and where they came from."""

    claims: pl.DataFrame  # claim_pk + raw claim columns
    batch_ids: list[str]
    requeued_pks: list[int]


def queued_claims(conn: Connection) -> Queue:
    """Every claim waiting for adjudication, in adjudication order (batch or re-queue time, line)."""
    batches = conn.execute(select(t.batches.c.batch_id, t.batches.c.seq).where(t.batches.c.status == "queued")).all()
    frames = []
    payloads = dict(conn.execute(select(t.batch_payloads.c.batch_id, t.batch_payloads.c.payload).where(
        t.batch_payloads.c.batch_id.in_([b.batch_id for b in batches]))).all()) if batches else {}
    raw = [t.claims.c.claim_pk, t.claims.c.line, *[t.claims.c[c] for c in CLAIM_COLUMNS]]
    schema = {"claim_pk": pl.Int64, "line": pl.Int64, **{c: pl.String for c in CLAIM_COLUMNS}}
    for batch_id, seq in batches:
        if batch_id in payloads:
            frame = pl.read_parquet(io.BytesIO(payloads[batch_id])).cast(schema)
        else:  # stored before payloads existed
            frame = read_frame(conn, select(*raw).where(t.claims.c.batch_id == batch_id), schema)
        frames.append(frame.with_columns(seq=pl.lit(seq, pl.Int64), batch_seq=pl.lit(seq, pl.Int64)))
    again = read_frame(
        conn,
        select(*raw, t.requeues.c.seq, t.batches.c.seq)
        .join(t.requeues, t.requeues.c.claim_pk == t.claims.c.claim_pk)
        .join(t.batches, t.batches.c.batch_id == t.claims.c.batch_id),
        {**schema, "seq": pl.Int64, "batch_seq": pl.Int64},
    )
    claims = pl.concat([*frames, again]).sort("seq", "batch_seq", "line").select("claim_pk", *CLAIM_COLUMNS)
    return Queue(claims, [b.batch_id for b in batches], again.get_column("claim_pk").to_list())


def store_payload(conn: Connection, batch_id: str, claims: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    claims.select("claim_pk", "line", *CLAIM_COLUMNS).write_parquet(buffer, compression="lz4")
    conn.execute(insert(t.batch_payloads).values(batch_id=batch_id, payload=buffer.getvalue()))


def next_claim_pk(conn: Connection) -> int:
    """First free claim_pk; callers hold the writer lock, so ranges never collide."""
    return (conn.execute(select(func.max(t.claims.c.claim_pk))).scalar() or 0) + 1


def _queued_values(column: str):
    """The distinct (trimmed) values of one claim column over the queue, as a subquery."""
    fresh, again = _queued()
    value = func.trim(t.claims.c[column])
    return union(fresh.with_only_columns(value), again.with_only_columns(value))


def ledger_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    """Earlier paid claims that can matter to this run: its clients' claims in the months it
    touches, and every claim on an SPA of theirs counted over its whole span (unit_period total)."""
    days = queue.get_column("service_date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).drop_nulls()
    if days.len() == 0:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    first = days.min().replace(day=1)
    last = (days.max().replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    columns = [t.ledger.c[c] for c in LEDGER_SCHEMA]
    day = t.ledger.c.service_day
    clients = _queued_values("client_prime")
    in_window = select(*columns).where(t.ledger.c.client_prime.in_(clients), day >= first, day < last)
    total_spas = select(t.spas.c.spa_id).join(t.plans, t.plans.c.plan_id == t.spas.c.plan_id).where(
        t.spas.c.unit_period == "total", t.plans.c.client_prime.in_(_queued_values("client_prime")))
    outside = select(*columns).where(t.ledger.c.spa_id.in_(total_spas), ~and_(day >= first, day < last))
    return pl.concat([read_frame(conn, in_window, LEDGER_SCHEMA), read_frame(conn, outside, LEDGER_SCHEMA)])


def holders_for(conn: Connection) -> pl.DataFrame:
    """Which stored claim holds each claim id the queue carries."""
    schema = {"claim_id": pl.String, "holder_pk": pl.Int64}
    statement = select(t.claim_ids.c.claim_id, t.claim_ids.c.claim_pk).where(
        t.claim_ids.c.claim_id.in_(_queued_values("claim_id")))
    return read_frame(conn, statement, schema)


def waivers_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    schema = {"claim_pk": pl.Int64, "code": pl.String}
    statement = select(t.waivers.c.claim_pk, t.waivers.c.code).join(t.requeues, t.requeues.c.claim_pk == t.waivers.c.claim_pk)
    return read_frame(conn, statement, schema)


def attempt_numbers(conn: Connection) -> dict[int, int]:
    """Attempts already made by the re-queued claims (fresh claims have none)."""
    statement = (
        select(t.attempts.c.claim_pk, func.max(t.attempts.c.attempt))
        .join(t.requeues, t.requeues.c.claim_pk == t.attempts.c.claim_pk)
        .group_by(t.attempts.c.claim_pk)
    )
    return dict(conn.execute(statement).all())


def finish_queue(conn: Connection, queue: Queue) -> None:
    """Mark exactly the work this run read as done (a batch posted meanwhile waits for the next run)."""
    if queue.batch_ids:
        conn.execute(update(t.batches).where(t.batches.c.batch_id.in_(queue.batch_ids)).values(status="adjudicated"))
    if queue.requeued_pks:
        conn.execute(update(t.attempts).where(and_(t.attempts.c.latest, t.attempts.c.claim_pk.in_(
            queue.requeued_pks))).values(latest=False))
        conn.execute(delete(t.requeues).where(t.requeues.c.claim_pk.in_(queue.requeued_pks)))
