"""Reads and writes of the product's state; every function runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, replace

import polars as pl
from sqlalchemy import ARRAY, Connection, String, any_, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from adjudication.claims import CLAIM_COLUMNS, FIELDS_SCHEMA, OPTIONAL_COLUMNS, PARSE_VERSION, as_read, parse_fields, scaled_number
from adjudication.decimals import to_scaled
from adjudication.engine import LEDGER_SCHEMA, PROVIDER_SCHEMA, ReferenceFrames
from adjudication.ledger_codec import PACKED_SCHEMA, pack, unpack
from adjudication.reference import Enrollment, Located, Plan, Provider, ReferenceSet, Spa
from worker.store import schema as t
from worker.store.bulk import insert_frame, read_frame


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- reference data -------------------------------------------------------------------------

def reference_set(conn: Connection, loaded: dict[str, list[Located]] | None = None) -> ReferenceSet:
    """The stored reference rows: all of them, or only those a load of `loaded` could conflict
    with. `reference.merge` checks a load's SPAs against the plans and providers they name, its
    plans against the other plans of their clients, and its SPAs against the other SPAs of their
    plans; it never checks enrollments. Reading only those rows keeps a small load on a large
    store small (every stored row was checked when it was loaded)."""
    def rows(table, model, where=None):
        statement = select(table) if where is None else select(table).where(where)
        return [model.model_validate(dict(r._mapping)) for r in conn.execute(statement)]

    if loaded is None:
        return ReferenceSet.from_rows(rows(t.providers, Provider), rows(t.plans, Plan),
                                      rows(t.enrollments, Enrollment), rows(t.spas, Spa))
    new_spas = [item.row for item in loaded.get("spas.csv", [])]
    spa_plans = sorted({s.plan_id for s in new_spas})
    # Every plan and SPA of the clients the load touches: a SPA must lie inside its plan, and one
    # client's in-home and residential SPAs (across plans) must not overlap.
    clients = {item.row.client_prime for item in loaded.get("plans.csv", [])}
    clients |= set(conn.execute(select(t.plans.c.client_prime).where(
        _in_values(conn, t.plans.c.plan_id, spa_plans, "plans"))).scalars())
    plans = rows(t.plans, Plan, _in_values(conn, t.plans.c.client_prime, sorted(clients), "clients"))
    client_plans = sorted({p.plan_id for p in plans} | set(spa_plans))
    return ReferenceSet.from_rows(
        rows(t.providers, Provider,
             _in_values(conn, t.providers.c.provider_id, sorted({s.provider_id for s in new_spas}), "providers")),
        plans,
        [],
        rows(t.spas, Spa, _in_values(conn, t.spas.c.plan_id, client_plans, "spa_plans")),
    )


REFERENCE_FRAMES = ("plans", "enrollments", "spas")


def reference_frames(conn: Connection, clients: list[str] | None = None) -> ReferenceFrames:
    """Reference data as the engine reads it (of `clients` only, when given), from the snapshot the
    last load stored: a million-claim run would otherwise spend a good part of its time turning
    reference rows into Python objects."""
    frames = _snapshot(conn) or _reference_from_tables(conn)  # stored before snapshots existed
    providers = read_frame(conn, select(t.providers.c.provider_id, t.providers.c.start_date, t.providers.c.end_date),
                           PROVIDER_SCHEMA)
    if clients is None:
        return replace(frames, providers=providers)
    wanted = pl.Series(clients, dtype=pl.String).implode()
    return ReferenceFrames(**{name: getattr(frames, name).filter(pl.col("client_prime").is_in(wanted))
                              for name in REFERENCE_FRAMES}, providers=providers)


def _snapshot(conn: Connection) -> ReferenceFrames | None:
    stored = dict(conn.execute(select(t.reference_snapshots.c.name, t.reference_snapshots.c.payload)).all())
    if set(stored) != set(REFERENCE_FRAMES):
        return None
    return ReferenceFrames(**{name: pl.read_parquet(io.BytesIO(stored[name])) for name in REFERENCE_FRAMES})


def _store_reference_snapshot(conn: Connection, loaded: dict[str, list[Located]]) -> None:
    """The snapshot after a load: the stored one with the loaded rows in place of those they replace
    (as `save_reference` does to the tables), so a small load costs little on a large store; built
    from the tables when there is none yet."""
    old = _snapshot(conn)
    if old is None:
        frames = _reference_from_tables(conn)
    else:
        new = ReferenceSet.from_rows([], *[[item.row for item in loaded.get(name, [])]
                                           for name in ("plans.csv", "enrollments.csv", "spas.csv")]).frames()

        def replaced(name: str, key: str) -> pl.DataFrame:
            kept = getattr(old, name).filter(~pl.col(key).is_in(getattr(new, name).get_column(key).implode()))
            return pl.concat([kept, getattr(new, name).cast(kept.schema)])

        plans = replaced("plans", "plan_id")
        spas = replaced("spas", "spa_id")
        frames = ReferenceFrames(
            plans=plans,
            enrollments=replaced("enrollments", "client_prime"),
            # A SPA's client is its plan's, which this load may have changed or brought.
            spas=spas.drop("client_prime").join(plans.select("plan_id", "client_prime"), on="plan_id", how="left",
                                                maintain_order="left").select(spas.columns),
        )
    conn.execute(delete(t.reference_snapshots))
    for name in REFERENCE_FRAMES:
        buffer = io.BytesIO()
        getattr(frames, name).write_parquet(buffer, compression="zstd")
        conn.execute(insert(t.reference_snapshots).values(name=name, payload=buffer.getvalue()))


def _reference_from_tables(conn: Connection) -> ReferenceFrames:
    """The reference tables as engine frames, without per-row validation (rows were checked on load)."""
    def frame(table, schema):
        return read_frame(conn, select(*[table.c[c] for c in schema]), schema)

    def scaled(frame: pl.DataFrame, column: str) -> pl.Series:
        """Stored decimal text x10^4: vectorized for plain numbers, exact Decimal parsing for the rest."""
        texts = frame.get_column(column)
        fast = frame.select(scaled_number(column)).to_series()
        odd = fast.is_null() & texts.is_not_null()
        if odd.any():
            fast = fast.scatter(odd.arg_true(), [to_scaled(v) for v in texts.filter(odd)])
        return fast

    plans = frame(t.plans, {"plan_id": pl.String, "client_prime": pl.String, "start_date": pl.Date,
                            "end_date": pl.Date, "status": pl.String, "monthly_hours": pl.String})
    spas = frame(t.spas, {"spa_id": pl.String, "plan_id": pl.String, "provider_id": pl.String,
                          "procedure_code": pl.String, "modifier": pl.String, "start_date": pl.Date,
                          "end_date": pl.Date, "units": pl.String, "unit_period": pl.String, "rate": pl.String,
                          "status": pl.String})
    return ReferenceFrames(
        plans=plans.with_columns(monthly_hours_s=scaled(plans, "monthly_hours")).drop("monthly_hours"),
        enrollments=frame(t.enrollments, {"client_prime": pl.String, "start_date": pl.Date, "end_date": pl.Date}),
        spas=spas.with_columns(units_s=scaled(spas, "units"), rate_s=scaled(spas, "rate"))
        .join(plans.select("plan_id", "client_prime"), on="plan_id", how="left", maintain_order="left")
        .select("spa_id", "plan_id", "client_prime", "provider_id", "procedure_code", "modifier", "start_date",
                "end_date", "units_s", "unit_period", "rate_s", "status"),
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

    _upsert(conn, t.providers, [{**r, **_dates(r)} for r in dumped("providers.csv")], "provider_id")
    _upsert(conn, t.plans, [{**r, **_dates(r)} for r in dumped("plans.csv")], "plan_id")
    _upsert(conn, t.spas, [{**r, **_dates(r)} for r in dumped("spas.csv")], "spa_id")
    if "enrollments.csv" in loaded:
        rows = [{**r, **_dates(r)} for r in dumped("enrollments.csv")]
        clients = sorted({r["client_prime"] for r in rows})
        for chunk in chunks(clients):
            conn.execute(delete(t.enrollments).where(t.enrollments.c.client_prime.in_(chunk)))
        if rows:
            conn.execute(insert(t.enrollments), rows)
    _store_reference_snapshot(conn, loaded)


def _dates(row: dict) -> dict:
    return {k: row[k] and dt.date.fromisoformat(row[k]) for k in ("start_date", "end_date")}


# --- queue ---------------------------------------------------------------------------------

def new_queue_event(conn: Connection, kind: str) -> int:
    return conn.execute(insert(t.queue_events).values(kind=kind, at=now()).returning(t.queue_events.c.seq)).scalar_one()


# A batch's payload: its claims as posted (every column text), and what claims.parse_fields made
# of them at submit (claims.fields_to_keep), as columns named PARSED + field, so a run reads them
# instead of parsing again. A text column with no parsed column is read as posted (claims.as_read).
PAYLOAD_SCHEMA = {"claim_pk": pl.Int64, "line": pl.Int64, **{c: pl.String for c in CLAIM_COLUMNS}}
PARSED = f"parsed{PARSE_VERSION}."


def store_payload(conn: Connection, batch_id: str, claims: pl.DataFrame, fields: pl.DataFrame) -> None:
    """claims: PAYLOAD_SCHEMA; fields: the parsed fields kept (claims.fields_to_keep), row for row."""
    buffer = io.BytesIO()
    claims.select(PAYLOAD_SCHEMA.keys()).hstack(fields.select(pl.all().name.prefix(PARSED))).write_parquet(
        buffer, compression="zstd")
    conn.execute(insert(t.batch_payloads).values(batch_id=batch_id, payload=buffer.getvalue()))


def payloads(conn: Connection, batch_ids: list[str] | None = None, parsed: bool = False) -> pl.DataFrame:
    """The claims of some batches (all when None) with batch_id and its queue seq: as posted
    (PAYLOAD_SCHEMA), or parsed (claim_pk, line and FIELDS_SCHEMA)."""
    statement = select(t.batches.c.batch_id, t.batches.c.seq, t.batches.c.received_date,
                       t.batch_payloads.c.payload).join(
        t.batch_payloads, t.batch_payloads.c.batch_id == t.batches.c.batch_id)
    if batch_ids is not None:
        statement = statement.where(t.batches.c.batch_id.in_(batch_ids))
    read = _parsed_payload if parsed else _posted_payload
    frames = [
        read(payload).with_columns(batch_id=pl.lit(batch_id, pl.String), batch_seq=pl.lit(seq, pl.Int64),
                                   received_day=pl.lit(received, pl.Date))
        for batch_id, seq, received, payload in conn.execute(statement)
    ]
    schema = {"claim_pk": pl.Int64, "line": pl.Int64, **FIELDS_SCHEMA} if parsed else PAYLOAD_SCHEMA
    empty = pl.DataFrame(schema={**schema, "batch_id": pl.String, "batch_seq": pl.Int64, "received_day": pl.Date})
    return pl.concat([empty, *frames])


def _posted_payload(payload: bytes) -> pl.DataFrame:
    stored = pl.read_parquet_schema(io.BytesIO(payload))
    frame = pl.read_parquet(io.BytesIO(payload), columns=[c for c in PAYLOAD_SCHEMA if c in stored])
    # Batches stored before claim files had the optional columns: they are empty.
    return frame.with_columns(pl.lit(None, pl.String).alias(c) for c in OPTIONAL_COLUMNS if c not in stored).select(
        PAYLOAD_SCHEMA.keys()).cast(PAYLOAD_SCHEMA)


def _parsed_payload(payload: bytes) -> pl.DataFrame:
    stored = pl.read_parquet_schema(io.BytesIO(payload))
    if PARSED + "service_day" in stored and all(c in stored for c in OPTIONAL_COLUMNS):
        columns = [PARSED + c if PARSED + c in stored else c for c in FIELDS_SCHEMA]
        frame = pl.read_parquet(io.BytesIO(payload), columns=["claim_pk", "line", *columns]).select(
            "claim_pk", "line",
            *[pl.col(PARSED + c).alias(c) if PARSED + c in stored else as_read(c, pl.col(c).cast(pl.String))
              for c in FIELDS_SCHEMA])
    else:  # stored before submit kept the parsed fields, or by another PARSE_VERSION
        frame = parse_fields(_posted_payload(payload).lazy()).collect()
    return frame.select("claim_pk", "line", *FIELDS_SCHEMA).cast({"claim_pk": pl.Int64, "line": pl.Int64,
                                                                  **FIELDS_SCHEMA})


def next_claim_pk(conn: Connection) -> int:
    """First free claim_pk; callers hold the writer lock, so ranges never collide."""
    return conn.execute(select(func.coalesce(func.max(t.batches.c.first_pk + t.batches.c.claims), 1))).scalar()


@dataclass(frozen=True)
class Queue:
    """A snapshot of the work of one run: claims in adjudication order, and where they came from."""

    fields: pl.DataFrame  # claim_pk + the claims' parsed fields (claims.FIELDS_SCHEMA)
    origin: pl.DataFrame  # claim_pk, batch_id, attempt (the number this run's attempt gets)
    batch_ids: list[str]  # fresh batches read
    requeued_pks: list[int]


def queued_claims(conn: Connection) -> Queue:
    """Every claim waiting for adjudication, in adjudication order (batch or re-queue time, line)."""
    fresh_ids = list(conn.execute(select(t.batches.c.batch_id).where(t.batches.c.status == "queued")).scalars())
    fresh = payloads(conn, fresh_ids, parsed=True).with_columns(seq=pl.col("batch_seq"), attempt=pl.lit(1, pl.Int64))
    again = read_frame(
        conn,
        select(t.requeues.c.claim_pk, t.requeues.c.seq, t.suspended.c.attempt + 1).join(
            t.suspended, t.suspended.c.claim_pk == t.requeues.c.claim_pk),
        {"claim_pk": pl.Int64, "seq": pl.Int64, "attempt": pl.Int64},
    )
    again_batches = list(conn.execute(select(t.suspended.c.batch_id).distinct().join(
        t.requeues, t.requeues.c.claim_pk == t.suspended.c.claim_pk)).scalars())
    requeued = payloads(conn, again_batches, parsed=True).join(again, on="claim_pk")
    queue = pl.concat([fresh, requeued.select(fresh.columns)])
    if len(fresh_ids) > 1 or requeued.height:  # one batch alone is already in line order
        queue = queue.sort("seq", "batch_seq", "line")
    return Queue(
        fields=queue.select("claim_pk", *FIELDS_SCHEMA, "received_day"),
        origin=queue.select("claim_pk", "batch_id", "attempt"),
        batch_ids=fresh_ids,
        requeued_pks=again.get_column("claim_pk").to_list(),
    )


def finish_queue(conn: Connection, queue: Queue) -> None:
    """Mark exactly the work this run read as done (a batch posted meanwhile waits for the next run)."""
    if queue.batch_ids:
        conn.execute(update(t.batches).where(t.batches.c.batch_id.in_(queue.batch_ids)).values(status="adjudicated"))
    for chunk in chunks(queue.requeued_pks):
        conn.execute(delete(t.suspended).where(t.suspended.c.claim_pk.in_(chunk)))
        conn.execute(delete(t.requeues).where(t.requeues.c.claim_pk.in_(chunk)))


def chunks(values: list, size: int = 10_000):
    """Slices of a long list for `IN (...)`: below every driver's limit on bound parameters."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _in_values(conn: Connection, column, values: list[str], name: str = "values"):
    """`column IN values` for any number of values, as one bound parameter (a JSON array on SQLite,
    an array on PostgreSQL): a nightly queue carries a million claim ids."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(name, values, type_=ARRAY(String)))
    return column.in_(select(literal_column("value")).select_from(
        func.json_each(bindparam(name, json.dumps(values), type_=String))))


# --- state a run reads ------------------------------------------------------------------------

def queue_clients(queue: pl.DataFrame) -> list[str]:
    """The clients a queue (parsed fields) touches."""
    return queue.get_column("client_prime").drop_nulls().unique().to_list()


def ledger_for(conn: Connection, queue: pl.DataFrame, clients: list[str], reference: ReferenceFrames) -> pl.DataFrame:
    """Earlier paid claims that can matter to this run: its clients' claims in the months it
    touches, and every claim on an SPA of theirs counted over its whole span (unit_period total)."""
    days = queue.get_column("service_day").drop_nulls()
    if days.len() == 0 or not conn.execute(select(t.paid_months.c.run_id).limit(1)).first():
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    first = days.min().replace(day=1)
    end = (days.max().replace(day=28) + dt.timedelta(days=4)).replace(day=1)  # the day after the last month
    total = reference.spas.filter((pl.col("unit_period") == "total") & pl.col("client_prime").is_in(clients))
    c = t.paid_months.c
    statement = select(c.client_prime, c.month, c.claims).where(
        _in_values(conn, c.client_prime, clients, "clients"),
        (c.month >= first) & (c.month < end)
        | _in_values(conn, c.client_prime, total.get_column("client_prime").unique().to_list(), "total_clients"),
    ).order_by(c.run_id)  # the order claims were paid in: conflicts are listed in that order
    rows = unpack(read_frame(conn, statement, PACKED_SCHEMA))
    in_window = (pl.col("service_day") >= first) & (pl.col("service_day") < end)
    return rows.filter(in_window | pl.col("spa_id").is_in(total.get_column("spa_id").implode()))


def holders_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    """Which stored claim holds each claim id the queue carries."""
    schema = {"claim_id": pl.String, "holder_pk": pl.Int64}
    if not conn.execute(select(t.claim_ids.c.claim_id).limit(1)).first():
        return pl.DataFrame(schema=schema)
    ids = queue.get_column("claim_id").drop_nulls().unique().to_list()
    statement = select(t.claim_ids.c.claim_id, t.claim_ids.c.claim_pk).where(
        _in_values(conn, t.claim_ids.c.claim_id, ids, "claim_ids"))
    return read_frame(conn, statement, schema)


def waivers_for(conn: Connection) -> pl.DataFrame:
    schema = {"claim_pk": pl.Int64, "code": pl.String}
    statement = select(t.waivers.c.claim_pk, t.waivers.c.code).join(t.requeues, t.requeues.c.claim_pk == t.waivers.c.claim_pk)
    return read_frame(conn, statement, schema)


# --- what a run writes -------------------------------------------------------------------------

SEGMENT_SCHEMA = {
    "claim_pk": pl.Int64, "attempt": pl.Int64, "status": pl.String, "reasons": pl.List(pl.String),
    "carc": pl.List(pl.String), "spa_id": pl.String, "paid_units_s": pl.Int64, "paid_cents": pl.Int64,
    "conflicts_with": pl.List(pl.String),
}


def store_holders(conn: Connection, new_holders: pl.DataFrame) -> None:
    """The claim ids a run's claims now hold (claim_id, claim_pk), in key order: the index grows at
    its end. (Claim files mostly come in claim id order already; sorting them is skipped.)"""
    if not new_holders.get_column("claim_id").is_sorted():
        new_holders = new_holders.sort("claim_id")
    insert_frame(conn, t.claim_ids, new_holders)


@dataclass(frozen=True)
class RunState:
    """What a run stores besides its claim ids, computed before the write: the attempts as one
    Parquet segment, the ledger rows of the claims it paid packed per client and month, and the
    claims left suspended."""

    segment: bytes
    packed: pl.DataFrame  # PACKED_SCHEMA
    suspended: pl.DataFrame  # claim_pk, batch_id, attempt, reasons
    batch_ids: list[str]  # the batches whose claims the run decided


def run_state(attempts: pl.DataFrame, newly_paid: pl.DataFrame) -> RunState:
    """attempts: SEGMENT_SCHEMA + batch_id; newly_paid: LEDGER_SCHEMA. No connection needed."""
    buffer = io.BytesIO()
    attempts.select(SEGMENT_SCHEMA.keys()).write_parquet(buffer, compression="zstd")
    return RunState(
        segment=buffer.getvalue(),
        packed=pack(newly_paid),
        suspended=attempts.filter(pl.col("status") == "suspended").select(
            "claim_pk", "batch_id", "attempt", reasons=pl.col("reasons").list.join(";")),
        batch_ids=attempts.get_column("batch_id").unique().sort().to_list(),
    )


def store_run(conn: Connection, run_id: int, state: RunState) -> None:
    insert_frame(conn, t.suspended, state.suspended.with_columns(run_id=pl.lit(run_id, pl.Int64)))
    if state.batch_ids:
        conn.execute(insert(t.run_batches), [{"run_id": run_id, "batch_id": b} for b in state.batch_ids])
    insert_frame(conn, t.paid_months, state.packed.with_columns(run_id=pl.lit(run_id, pl.Int64)))
    conn.execute(insert(t.outcome_segments).values(run_id=run_id, payload=state.segment))


def segments(conn: Connection, batch_id: str | None = None) -> pl.DataFrame:
    """Every attempt stored (SEGMENT_SCHEMA + run_id), or those of the runs that decided a batch's claims."""
    statement = select(t.outcome_segments.c.run_id, t.outcome_segments.c.payload)
    if batch_id is not None:
        statement = statement.where(t.outcome_segments.c.run_id.in_(
            select(t.run_batches.c.run_id).where(t.run_batches.c.batch_id == batch_id)))
    frames = [pl.read_parquet(io.BytesIO(payload)).cast(SEGMENT_SCHEMA).with_columns(run_id=pl.lit(run_id, pl.Int64))
              for run_id, payload in conn.execute(statement)]
    return pl.concat([pl.DataFrame(schema={**SEGMENT_SCHEMA, "run_id": pl.Int64}), *frames])


def latest(attempts: pl.DataFrame) -> pl.DataFrame:
    """The current outcome of each claim: its last attempt."""
    return attempts.sort("claim_pk", "attempt").unique("claim_pk", keep="last", maintain_order=True)
