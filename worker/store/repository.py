"""Reads and writes of the product's state; every function runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adjudication.claims import CLAIM_COLUMNS
from adjudication.engine import LEDGER_SCHEMA
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


def queued_claims(conn: Connection) -> pl.DataFrame:
    """Every claim waiting for adjudication, in adjudication order (claim_pk + raw columns)."""
    raw = [t.claims.c.claim_pk, *[t.claims.c[c] for c in CLAIM_COLUMNS]]
    fresh = (
        select(*raw, t.batches.c.seq.label("seq"), t.batches.c.seq.label("batch_seq"), t.claims.c.line)
        .join(t.batches, t.batches.c.batch_id == t.claims.c.batch_id)
        .where(t.batches.c.status == "queued")
    )
    again = (
        select(*raw, t.requeues.c.seq.label("seq"), t.batches.c.seq.label("batch_seq"), t.claims.c.line)
        .join(t.requeues, t.requeues.c.claim_pk == t.claims.c.claim_pk)
        .join(t.batches, t.batches.c.batch_id == t.claims.c.batch_id)
    )
    union = fresh.union_all(again).subquery()
    statement = select(union.c.claim_pk, *[union.c[c] for c in CLAIM_COLUMNS]).order_by(
        union.c.seq, union.c.batch_seq, union.c.line
    )
    return read_frame(conn, statement, RAW_SCHEMA)


def ledger_for(conn: Connection, queue: pl.DataFrame, total_spas: list[str]) -> pl.DataFrame:
    """Earlier paid claims that can matter to this run: its clients' claims in the months it
    touches, and every claim on an SPA counted over its whole span (unit_period total)."""
    days = queue.get_column("service_date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).drop_nulls()
    clients = queue.get_column("client_prime").drop_nulls().str.strip_chars().unique().to_list()
    if days.len() == 0 or not clients:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    first = days.min().replace(day=1)
    last = (days.max().replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    columns = [t.ledger.c[c] for c in LEDGER_SCHEMA]
    day = t.ledger.c.service_day
    frames = [read_frame(conn, select(*columns).where(t.ledger.c.client_prime.in_(chunk), day >= first, day < last),
                         LEDGER_SCHEMA) for chunk in _chunks(clients)]
    frames += [read_frame(conn, select(*columns).where(t.ledger.c.spa_id.in_(chunk), ~and_(day >= first, day < last)),
                          LEDGER_SCHEMA) for chunk in _chunks(total_spas)]
    return pl.concat(frames).unique("claim_pk") if frames else pl.DataFrame(schema=LEDGER_SCHEMA)


def holders_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    ids = queue.get_column("claim_id").drop_nulls().str.strip_chars().unique().to_list()
    schema = {"claim_id": pl.String, "holder_pk": pl.Int64}
    frames = [read_frame(conn, select(t.claim_ids.c.claim_id, t.claim_ids.c.claim_pk)
                         .where(t.claim_ids.c.claim_id.in_(chunk)), schema) for chunk in _chunks(ids)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def waivers_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    schema = {"claim_pk": pl.Int64, "code": pl.String}
    statement = select(t.waivers.c.claim_pk, t.waivers.c.code).join(t.requeues, t.requeues.c.claim_pk == t.waivers.c.claim_pk)
    return read_frame(conn, statement, schema)


def _chunks(values: list, size: int = 30_000):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def attempt_numbers(conn: Connection) -> dict[int, int]:
    """Attempts already made by the re-queued claims (fresh claims have none)."""
    statement = (
        select(t.attempts.c.claim_pk, func.max(t.attempts.c.attempt))
        .join(t.requeues, t.requeues.c.claim_pk == t.attempts.c.claim_pk)
        .group_by(t.attempts.c.claim_pk)
    )
    return dict(conn.execute(statement).all())


def finish_queue(conn: Connection) -> None:
    conn.execute(update(t.batches).where(t.batches.c.status == "queued").values(status="adjudicated"))
    conn.execute(update(t.attempts).where(and_(t.attempts.c.latest, t.attempts.c.claim_pk.in_(
        select(t.requeues.c.claim_pk)))).values(latest=False))
    conn.execute(delete(t.requeues))
