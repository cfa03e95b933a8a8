"""Reads and writes of the product's state; every function runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass, replace

import polars as pl
from sqlalchemy import (ARRAY, BigInteger, Connection, String, and_, any_, bindparam, case, delete, exists, func, insert,
                        literal_column, select, update)

from adjudication.claims import CLAIM_COLUMNS, FIELDS_SCHEMA, OPTIONAL_COLUMNS, PARSE_VERSION, as_read, parse_fields
from adjudication.engine import LEDGER_SCHEMA, PROVIDER_SCHEMA, ReferenceFrames
from adjudication.reference import ATTRS, KEYS, SCHEMAS, ReferenceSet
from adjudication.remittance import NET_SCHEMA
from adjudication.run_report import BACKLOG_SCHEMA
from worker.store import chain
from worker.store import schema as t
from worker.store.bulk import insert_frame, read_frame, upsert_frame
from worker.store.records import AuditTrail, Operators, RunRecords, Submitters, now, take_write_lock
from worker.store.records import utc as _utc


# --- reference data -------------------------------------------------------------------------

def reference_set(conn: Connection, loaded: dict[str, pl.DataFrame] | None = None) -> ReferenceSet:
    """The stored reference rows: all of them, or only those a load of `loaded` could conflict
    with. `reference.merge` checks a load's SPAs against the plans and providers they name, its
    plans against the other plans of their clients, and its SPAs against the other SPAs of their
    plans; it never checks enrollments. Reading only those rows keeps a small load on a large
    store small (every stored row was checked when it was loaded)."""
    def rows(table, name, where=None):
        schema = {c: d for c, d in SCHEMAS[name].items() if c != "line"}
        statement = select(*[table.c[c] for c in schema])
        frame = read_frame(conn, statement if where is None else statement.where(where), schema)
        return frame.with_columns(line=pl.lit(None, dtype=pl.Int64))

    if loaded is None:
        return ReferenceSet(rows(t.providers, "providers.csv"), rows(t.plans, "plans.csv"),
                            rows(t.enrollments, "enrollments.csv"), rows(t.spas, "spas.csv"))
    new_spas = loaded.get("spas.csv", ReferenceSet().spas)
    spa_plans = sorted(set(new_spas.get_column("plan_id")))
    # Every plan and SPA of the clients the load touches: a SPA must lie inside its plan, and one
    # client's in-home and residential SPAs (across plans) must not overlap.
    # A reloaded plan may name another client than the stored one: both clients count.
    new_plans = loaded.get("plans.csv", ReferenceSet().plans)
    clients = set(new_plans.get_column("client_prime"))
    clients |= set(conn.execute(select(t.plans.c.client_prime).where(
        _in_values(conn, t.plans.c.plan_id, sorted(set(spa_plans) | set(new_plans.get_column("plan_id"))),
                   "plans"))).scalars())
    plans = rows(t.plans, "plans.csv", _in_values(conn, t.plans.c.client_prime, sorted(clients), "clients"))
    client_plans = sorted(set(plans.get_column("plan_id")) | set(spa_plans))
    return ReferenceSet(
        rows(t.providers, "providers.csv",
             _in_values(conn, t.providers.c.provider_id, sorted(set(new_spas.get_column("provider_id"))), "providers")),
        plans,
        ReferenceSet().enrollments,
        rows(t.spas, "spas.csv", _in_values(conn, t.spas.c.plan_id, client_plans, "spa_plans")),
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


def _store_reference_snapshot(conn: Connection, loaded: dict[str, pl.DataFrame], old: ReferenceFrames | None) -> None:
    """The snapshot after a load: the one before it (`old`) with the loaded rows in place of those
    they replace (as `save_reference` does to the tables), so a small load costs little on a large
    store; built from the tables when there was none."""
    if old is None:
        frames = _reference_from_tables(conn)
    else:
        new = ReferenceSet(**{ATTRS[name]: frame for name, frame in loaded.items()}).frames()

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
    return reference_set(conn).frames()


def save_reference(conn: Connection, loaded: dict[str, pl.DataFrame]) -> None:
    """Store what a load brought: upserts by id, enrollments replaced per client (checked already)."""
    old = _snapshot(conn)
    if old is None and not any(conn.execute(select(column).limit(1)).first()
                               for column in (t.plans.c.plan_id, t.enrollments.c.id)):  # SPAs need plans
        old = ReferenceSet().frames()  # an empty store: the load is the whole reference
    for name, table in (("providers.csv", t.providers), ("plans.csv", t.plans), ("spas.csv", t.spas)):
        if name in loaded:
            upsert_frame(conn, table, loaded[name].drop("line"), KEYS[name])
    if "enrollments.csv" in loaded:
        rows = loaded["enrollments.csv"].drop("line")
        clients = sorted(set(rows.get_column("client_prime")))
        conn.execute(delete(t.enrollments).where(_in_values(conn, t.enrollments.c.client_prime, clients, "clients")))
        insert_frame(conn, t.enrollments, rows)
    _store_reference_snapshot(conn, loaded, old)


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


class StoredBatchUnreadable(Exception):
    """A stored batch's claims cannot be read back (its payload is damaged): names the batch, and
    only the type of the error (its text may carry values of the claims)."""

    def __init__(self, batch_id: str, error: Exception):
        super().__init__(f"stored batch {batch_id} cannot be read back ({type(error).__name__})")
        self.batch_id = batch_id


def payloads(conn: Connection, batch_ids: list[str] | None = None, parsed: bool = False,
             received: bool = False, parsed_at_submit: bool = False) -> pl.DataFrame:
    """The claims of some batches (all when None) with batch_id and its queue seq: as posted
    (PAYLOAD_SCHEMA), or parsed (claim_pk, line and FIELDS_SCHEMA); received: with the batch's
    received date as `received_day` (not read by migrations that predate the column);
    parsed_at_submit: only the batches that keep the fields as this PARSE_VERSION parsed them."""
    received_date = t.batches.c.received_date if received else literal_column("NULL")
    statement = select(t.batches.c.batch_id, t.batches.c.seq, received_date, t.batch_payloads.c.payload).join(
        t.batch_payloads, t.batch_payloads.c.batch_id == t.batches.c.batch_id)
    if batch_ids is not None:
        statement = statement.where(t.batches.c.batch_id.in_(batch_ids))
    read = _parsed_payload if parsed else _posted_payload
    frames = [
        _read_stored(read, batch_id, payload).with_columns(
            batch_id=pl.lit(batch_id, pl.String), batch_seq=pl.lit(seq, pl.Int64), received_day=pl.lit(day, pl.Date))
        for batch_id, seq, day, payload in conn.execute(statement)
        if not parsed_at_submit or _read_stored(lambda blob: _keeps_parsed(_schema(blob)), batch_id, payload)
    ]
    schema = {"claim_pk": pl.Int64, "line": pl.Int64, **FIELDS_SCHEMA} if parsed else PAYLOAD_SCHEMA
    empty = pl.DataFrame(schema={**schema, "batch_id": pl.String, "batch_seq": pl.Int64, "received_day": pl.Date})
    return pl.concat([empty, *frames])


def _read_stored(read, batch_id: str, payload: bytes) -> pl.DataFrame:
    try:
        return read(payload)
    except Exception as error:  # noqa: BLE001 - whatever the damage, the batch is named
        raise StoredBatchUnreadable(batch_id, error) from error


def _posted_payload(payload: bytes) -> pl.DataFrame:
    stored = _schema(payload)
    frame = pl.read_parquet(io.BytesIO(payload), columns=[c for c in PAYLOAD_SCHEMA if c in stored])
    # Batches stored before claim files had the optional columns: they are empty.
    return frame.with_columns(pl.lit(None, pl.String).alias(c) for c in OPTIONAL_COLUMNS if c not in stored).select(
        PAYLOAD_SCHEMA.keys()).cast(PAYLOAD_SCHEMA)


def _schema(payload: bytes) -> dict:
    return pl.read_parquet_schema(io.BytesIO(payload))


def _keeps_parsed(stored: dict) -> bool:
    """Whether a stored batch (its Parquet schema) keeps its fields as this PARSE_VERSION parsed them at submit."""
    return PARSED + "service_day" in stored and all(c in stored for c in OPTIONAL_COLUMNS)


def _parsed_payload(payload: bytes) -> pl.DataFrame:
    stored = _schema(payload)
    if _keeps_parsed(stored):
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
    origin: pl.DataFrame  # claim_pk, batch_id, line, attempt (the number this run's attempt gets)
    batch_ids: list[str]  # fresh batches read
    requeued_pks: list[int]


def queued_claims(conn: Connection) -> Queue:
    """Every claim waiting for adjudication, in adjudication order (batch or re-queue time, line)."""
    fresh_ids = list(conn.execute(select(t.batches.c.batch_id).where(t.batches.c.status == "queued")).scalars())
    fresh = payloads(conn, fresh_ids, parsed=True, received=True).with_columns(seq=pl.col("batch_seq"), attempt=pl.lit(1, pl.Int64))
    again = read_frame(
        conn,
        select(t.requeues.c.claim_pk, t.requeues.c.seq, t.suspended.c.attempt + 1).join(
            t.suspended, t.suspended.c.claim_pk == t.requeues.c.claim_pk),
        {"claim_pk": pl.Int64, "seq": pl.Int64, "attempt": pl.Int64},
    )
    again_batches = list(conn.execute(select(t.suspended.c.batch_id).distinct().join(
        t.requeues, t.requeues.c.claim_pk == t.suspended.c.claim_pk)).scalars())
    requeued = payloads(conn, again_batches, parsed=True, received=True).join(again, on="claim_pk")
    queue = pl.concat([fresh, requeued.select(fresh.columns)])
    if len(fresh_ids) > 1 or requeued.height:  # one batch alone is already in line order
        queue = queue.sort("seq", "batch_seq", "line")
    return Queue(
        fields=queue.select("claim_pk", *FIELDS_SCHEMA, "received_day"),
        origin=queue.select("claim_pk", "batch_id", "line", "attempt"),
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


def _in_values(conn: Connection, column, values: list[str] | list[int], name: str = "values"):
    """`column IN values` for any number of values (texts, or integers for a claim_pk column), as one
    bound parameter (a JSON array on SQLite, an array on PostgreSQL): a nightly queue carries a million
    claim ids."""
    if conn.dialect.name == "postgresql":
        item = BigInteger if isinstance(column.type, BigInteger) else String
        return column == any_(bindparam(name, values, type_=ARRAY(item)))
    return column.in_(select(literal_column("value")).select_from(
        func.json_each(bindparam(name, json.dumps(values), type_=String))))


# --- state a run reads ------------------------------------------------------------------------

def queue_clients(queue: pl.DataFrame) -> list[str]:
    """The clients a queue (parsed fields) touches."""
    return queue.get_column("client_prime").drop_nulls().unique().to_list()


def ledger_for(conn: Connection, queue: pl.DataFrame, clients: list[str], reference: ReferenceFrames) -> pl.DataFrame:
    """Earlier paid claims that can matter to this run: its clients' paid attempts (not reversed) in
    the months it touches, every one on an SPA of theirs counted over its whole span (unit_period
    total), and the paying attempts (not reversed) of the claims its replacements and voids name, by
    claim id, of any month. Read through the indexes on (client_prime, service_date) and claim_id, in
    the order they were paid."""
    schema = {**LEDGER_SCHEMA, "run_id": pl.Int64, "run_row": pl.Int64}
    a, r = t.attempts.c, t.reversals.c
    columns = (a.claim_pk, a.claim_id, a.client_prime, a.service_date, a.provider_id, a.procedure_code, a.modifier,
               a.start_min, a.end_min, a.paid_units_s, a.spa_id, a.run_id, a.run_row)
    paid = (a.status == "paid", ~exists().where(r.claim_pk == a.claim_pk))
    named = queue.get_column("original_claim_id").drop_nulls().unique().to_list()
    originals = (read_frame(conn, select(*columns).where(_in_values(conn, a.claim_id, named, "originals"), *paid),
                            schema) if named else pl.DataFrame(schema=schema))
    days = queue.get_column("service_day").drop_nulls()
    if days.len() == 0:
        return originals.sort("run_id", "run_row").select(LEDGER_SCHEMA.keys())
    first = days.min().replace(day=1)
    end = (days.max().replace(day=28) + dt.timedelta(days=4)).replace(day=1)  # the day after the last month
    total = reference.spas.filter((pl.col("unit_period") == "total") & pl.col("client_prime").is_in(clients))
    total_clients = total.get_column("client_prime").unique().to_list()
    wanted = _in_values(conn, a.client_prime, clients, "clients")
    if total_clients:
        wanted = wanted & (a.service_date.between(first, end - dt.timedelta(days=1))
                           | _in_values(conn, a.client_prime, total_clients, "total_clients"))
    else:
        wanted = wanted & a.service_date.between(first, end - dt.timedelta(days=1))
    rows = read_frame(conn, select(*columns).where(wanted, *paid), schema)
    in_window = (pl.col("service_day") >= first) & (pl.col("service_day") < end)
    rows = rows.filter(in_window | pl.col("spa_id").is_in(total.get_column("spa_id").implode()))
    # The order claims were paid in: conflicts are listed in that order.
    return pl.concat([rows, originals]).unique("claim_pk", keep="first").sort("run_id", "run_row").select(
        LEDGER_SCHEMA.keys())


def holders_for(conn: Connection, queue: pl.DataFrame) -> pl.DataFrame:
    """Which stored claim holds each claim id the queue carries."""
    return claim_holders(conn, queue.get_column("claim_id").drop_nulls().unique().to_list())


def claim_holders(conn: Connection, claim_ids: list[str]) -> pl.DataFrame:
    """claim_id, holder_pk: the claim holding each of these ids, the first with the id that was not
    rejected (SPEC 4: a later one is rejected as a duplicate, and a claim once not rejected never is).
    Read from the attempts through their claim_id index."""
    schema = {"claim_id": pl.String, "holder_pk": pl.Int64}
    a = t.attempts.c
    if not claim_ids or not conn.execute(select(a.claim_pk).limit(1)).first():
        return pl.DataFrame(schema=schema)
    statement = select(a.claim_id, a.claim_pk).where(
        _in_values(conn, a.claim_id, claim_ids, "claim_ids"), a.status != "rejected")
    return read_frame(conn, statement, schema).unique("claim_id", keep="first")


def waivers_for(conn: Connection) -> pl.DataFrame:
    schema = {"claim_pk": pl.Int64, "code": pl.String}
    statement = select(t.waivers.c.claim_pk, t.waivers.c.code).join(t.requeues, t.requeues.c.claim_pk == t.waivers.c.claim_pk)
    return read_frame(conn, statement, schema)


# --- what a run writes -------------------------------------------------------------------------

# The attempts table's columns a run computes (run_id and run_month are added when it is written).
ATTEMPT_COLUMNS = tuple(c.name for c in t.attempts.columns if c.name not in ("run_id", "run_month"))


@dataclass(frozen=True)
class RunState:
    """What a run stores besides its claim ids, computed before the write: its attempts as rows of
    the attempts table, the reversals its replacements and voids made, the claims left suspended."""

    attempts: pl.DataFrame  # ATTEMPT_COLUMNS
    reversals: pl.DataFrame  # claim_pk, reversed_by_pk, reversed_by
    suspended: pl.DataFrame  # claim_pk, batch_id, attempt, reasons


def run_state(outcomes: pl.DataFrame, fields: pl.DataFrame, origin: pl.DataFrame,
              reversals: pl.DataFrame | None = None) -> RunState:
    """outcomes: the engine's (OUTCOME_SCHEMA, `adjusts` when it has it), row for row with the queue's
    parsed fields and origin (claim_pk, batch_id, line, attempt). No connection needed."""
    adjusts = pl.col("adjusts") if "adjusts" in outcomes.columns else pl.lit(None, pl.String)
    rows = outcomes.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("run_row"),
        "claim_pk", "status", "spa_id", "paid_units_s", "paid_cents",
        *[pl.col(c).list.join(";") for c in ("reasons", "conflicts_with", "carc")],
        adjusts.alias("adjusts"),
    ).hstack(origin.select("attempt", "batch_id", "line")).hstack(fields.select(
        "claim_id", "provider_id", "client_prime", "procedure_code", "modifier",
        pl.col("service_day").alias("service_date"), "start_min", "end_min"))
    if reversals is None or reversals.height == 0:
        reversed_rows = pl.DataFrame(schema={"claim_pk": pl.Int64, "reversed_by_pk": pl.Int64, "reversed_by": pl.String})
    else:
        reversed_rows = reversals.select("claim_pk", reversed_by_pk=pl.col("reversed_by").cast(pl.Int64)).join(
            fields.select(reversed_by_pk="claim_pk", reversed_by="claim_id"), on="reversed_by_pk", how="left")
    return RunState(
        attempts=rows.select(ATTEMPT_COLUMNS),
        reversals=reversed_rows,
        suspended=rows.filter(pl.col("status") == "suspended").select("claim_pk", "batch_id", "attempt", "reasons"),
    )


def store_run(conn: Connection, run_id: int, started: dt.datetime, state: RunState) -> None:
    insert_frame(conn, t.suspended, state.suspended.with_columns(run_id=pl.lit(run_id, pl.Int64)))
    insert_frame(conn, t.reversals, state.reversals.with_columns(run_id=pl.lit(run_id, pl.Int64)))
    store_attempts(conn, state.attempts.with_columns(run_id=pl.lit(run_id, pl.Int64),
                                                     run_month=pl.lit(started.date().replace(day=1), pl.Date)))


def store_attempts(conn: Connection, rows: pl.DataFrame) -> None:
    """Append attempt rows (every column of the table).

    Maintaining the indexes row by row costs several times the insert; building an index from sorted
    rows costs a fraction. So where the rows go into an empty table, the indexes are built after the
    insert: on SQLite when `attempts` is empty (a new database), on PostgreSQL for each run month's
    partition, which the first run of the month creates as a plain table, fills with COPY, indexes and
    attaches (the partition's indexes then become those of the partitioned table). Later runs of the
    month COPY into the indexed partition."""
    if rows.height == 0:
        return
    if conn.dialect.name != "postgresql":
        empty = conn.execute(select(t.attempts.c.claim_pk).limit(1)).first() is None
        if empty:
            for index in t.attempts.indexes:  # checkfirst: migration 0005 writes before 0011 adds one
                index.drop(conn, checkfirst=True)
        insert_frame(conn, t.attempts, rows)
        if empty:
            for index in t.attempts.indexes:
                index.create(conn)
        # Statistics from a sample of each index (milliseconds): without them the planner may read a
        # provider's suspended claims through the status index, which grows with the history.
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE attempts")
        return
    for (month,), part in rows.partition_by("run_month", as_dict=True, maintain_order=True).items():
        _store_month(conn, month, part)


def _store_month(conn: Connection, month: dt.date, rows: pl.DataFrame) -> None:
    from sqlalchemy import table as table_clause

    name = f"attempts_{month:%Y_%m}"
    bounds = f"FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
    if conn.exec_driver_sql(f"SELECT to_regclass('{name}')").scalar() is not None:
        insert_frame(conn, table_clause(name), rows)
        return
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE attempts INCLUDING DEFAULTS)")
    insert_frame(conn, table_clause(name), rows)
    # Room to sort a month's index keys in memory (the server's default, 64 MB, spills to disk).
    conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
    for index in t.attempts.indexes:
        columns = ", ".join(c.name for c in index.columns)
        options = index.dialect_options["postgresql"]
        using = f" USING {options['using']}" if options["using"] else ""
        partial = f" WHERE {options['where'].text}" if options["where"] is not None else ""
        conn.exec_driver_sql(
            f"CREATE INDEX {name}_{index.name.removeprefix('attempts_')} ON {name}{using} ({columns}){partial}")
    conn.exec_driver_sql(f"ALTER TABLE attempts ATTACH PARTITION {name} FOR VALUES {bounds}")
    # The planner's statistics now, not at autovacuum's next pass; from a small sample (6,000 rows
    # instead of 30,000: a tenth of the time), enough to choose between the indexes.
    conn.exec_driver_sql("SET LOCAL default_statistics_target = 20")
    conn.exec_driver_sql(f"ANALYZE {name}")


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


# --- reading outcomes --------------------------------------------------------------------------

# The export's columns (SPEC 3), as the views name them.
EXPORT_COLUMNS = t.VIEW_COLUMNS
EXPORT_SCHEMA = {c: (pl.Int64 if c in ("line", "attempt") else pl.Date if c == "service_date" else pl.String)
                 for c in EXPORT_COLUMNS}


@dataclass(frozen=True)
class OutcomeFilter:
    """What `outcomes` selects; every field narrows through an index of attempts."""

    batch: str | None = None
    claim_ids: tuple[str, ...] = ()
    provider: str | None = None
    client: str | None = None
    status: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    history: bool = False
    run_id: int | None = None  # the attempts one run made (with history)


def outcome_rows(conn: Connection, chosen: OutcomeFilter) -> pl.DataFrame:
    """Rows of the view outcome_attempts (history) or outcomes_latest, in adjudication order
    (batches in submission order, lines, attempts): EXPORT_SCHEMA."""
    view = t.outcome_attempts if chosen.history else t.outcomes_latest
    v = view.c
    conditions = []
    if chosen.batch:
        conditions.append(v.batch_id == chosen.batch)
    if chosen.claim_ids:
        conditions.append(_in_values(conn, v.claim_id, list(chosen.claim_ids), "claim_ids"))
    if chosen.provider:
        conditions.append(v.provider_id == chosen.provider)
    if chosen.client:
        conditions.append(v.client_prime == chosen.client)
    if chosen.status and (chosen.batch or chosen.claim_ids or chosen.provider or chosen.client):
        # A filter on the rows of one batch, claim, provider or client: `|| ''` keeps SQLite's planner
        # (whose sampled statistics may rate the status index better) on that narrower index, whose
        # rows grow with the answer, where the status index's grow with the history.
        conditions.append(v.status.op("||")(literal_column("''")) == chosen.status)
    elif chosen.status:
        conditions.append(v.status == chosen.status)
        if chosen.status != "paid":  # lets SQLite's planner see that the partial status index applies
            conditions.append(v.status != literal_column("'paid'"))
    if chosen.date_from:
        conditions.append(v.service_date >= chosen.date_from)
    if chosen.date_to:
        conditions.append(v.service_date <= chosen.date_to)
    if chosen.run_id is not None:
        conditions.append(v.run_id == chosen.run_id)
    statement = (select(*[v[c] for c in EXPORT_COLUMNS]).join(t.batches, t.batches.c.batch_id == v.batch_id)
                 .where(and_(True, *conditions)).order_by(t.batches.c.seq, v.line, v.attempt))
    return read_frame(conn, statement, EXPORT_SCHEMA)


def latest_status(conn: Connection, claim_pk: int) -> str | None:
    """The status of a claim's latest attempt (None before its first)."""
    a = t.attempts.c
    return conn.execute(select(a.status).where(a.claim_pk == claim_pk).order_by(a.attempt.desc()).limit(1)).scalar()


def batch_outcomes(conn: Connection, batch_id: str, claim_pks: pl.Series) -> pl.DataFrame:
    """The latest attempt of each adjudicated claim of one batch (its claims `claim_pks`): claim_pk,
    status, reasons.

    The batch's attempts are read as one index range, and each claim's latest kept here: the rows
    read are the batch's, however long the history (no per-row probe for a later attempt in an index
    that grows with it). The range is of claim_pk when the batch's claim ids are consecutive (every
    batch since submits take the lock), else of the batch index."""
    a = t.attempts.c
    schema = {"claim_pk": pl.Int64, "attempt": pl.Int64, "status": pl.String, "reasons": pl.String}
    if claim_pks.len() == 0:
        return pl.DataFrame(schema=schema).drop("attempt")
    first, last = int(claim_pks.min()), int(claim_pks.max())
    consecutive = last - first + 1 == claim_pks.n_unique()
    rows = read_frame(conn, select(a.claim_pk, a.attempt, a.status, a.reasons).where(
        a.claim_pk.between(first, last) if consecutive else a.batch_id == batch_id), schema)
    return rows.sort("claim_pk", "attempt").unique("claim_pk", keep="last", maintain_order=True).drop("attempt")


# --- the repository the service layer talks to -------------------------------------------------

class Repository:
    """Every read and write of the use cases, on one connection (one transaction): the service layer
    holds no SQL. The module functions above do the bulk work; this names the use cases' questions.
    The small tables are behind `operators`, `submitters`, `trail` (the audit) and `runs`
    (worker.store.records)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.operators = Operators(conn)
        self.submitters = Submitters(conn)
        self.trail = AuditTrail(conn)
        self.runs = RunRecords(conn)

    # writers that must be alone take the lock row first (SQLite and PostgreSQL serialize on it)
    def lock(self, holder: str) -> None:
        """Take the lock row's database lock for this transaction. `holder` (who is writing) is for the
        reader of the code: the row's holder and since are the run lease (worker.runs), left as they are."""
        take_write_lock(self.conn)

    # reference
    def reference_set(self, loaded: dict[str, pl.DataFrame]) -> ReferenceSet:
        return reference_set(self.conn, loaded)

    def save_reference(self, loaded: dict[str, pl.DataFrame]) -> None:
        save_reference(self.conn, loaded)

    def reference_frames(self, clients: list[str]) -> ReferenceFrames:
        return reference_frames(self.conn, clients)

    # batches
    def batch_by_hash(self, content_hash: str) -> dict | None:
        b = t.batches.c
        row = self.conn.execute(select(b.batch_id, b.claims, b.intake_rejected, b.status)
                                .where(b.content_hash == content_hash)).first()
        return None if row is None else dict(row._mapping)

    def batch(self, batch_id: str) -> dict | None:
        row = self.conn.execute(select(t.batches).where(t.batches.c.batch_id == batch_id)).first()
        return None if row is None else dict(row._mapping)

    def add_batch(self, batch_id: str, content_hash: str, file_name: str, file_format: str, claims: pl.DataFrame,
                  fields: pl.DataFrame, intake_rejected: int, **batch_row) -> None:
        """A new queued batch: its queue event, row and payload (claims get the next claim_pks).

        batch_row: further columns of the batch's row (submitter, received_date)."""
        seq = new_queue_event(self.conn, "batch")
        first_pk = next_claim_pk(self.conn)
        self.conn.execute(insert(t.batches).values(
            batch_id=batch_id, content_hash=content_hash, file_name=file_name, file_format=file_format,
            submitted_at=now(), seq=seq, status="queued", claims=claims.height, intake_rejected=intake_rejected,
            first_pk=first_pk, **batch_row))
        store_payload(self.conn, batch_id, claims.with_columns(
            claim_pk=pl.int_range(first_pk, first_pk + claims.height, dtype=pl.Int64)), fields)

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self.conn.execute(update(t.batches).where(t.batches.c.batch_id == batch_id).values(status=status))

    def payloads(self, batch_ids: list[str]) -> pl.DataFrame:
        return payloads(self.conn, batch_ids)

    # runs
    def queued_claims(self) -> Queue:
        return queued_claims(self.conn)

    def ledger_for(self, queue: pl.DataFrame, clients: list[str], reference: ReferenceFrames) -> pl.DataFrame:
        return ledger_for(self.conn, queue, clients, reference)

    def holders_for(self, queue: pl.DataFrame) -> pl.DataFrame:
        return holders_for(self.conn, queue)

    def waivers_for(self) -> pl.DataFrame:
        return waivers_for(self.conn)

    def add_run(self, started: dt.datetime, claims: int, paid: int, suspended: int, rejected: int,
                paid_cents: int) -> int:
        return self.runs.add(started, "done", finished=False, claims=claims, paid=paid, suspended=suspended,
                             rejected=rejected, paid_cents=paid_cents)

    def store_run(self, run_id: int, started: dt.datetime, snapshot: Queue, state: RunState, voids: int = 0) -> int:
        """Store the run's state and finish its record; returns the amount it reversed (cents): what
        the originals it reversed had been paid."""
        finish_queue(self.conn, snapshot)
        store_run(self.conn, run_id, started, state)
        a, r = t.attempts.c, t.reversals.c
        reversed_cents = self.conn.execute(
            select(func.coalesce(func.sum(a.paid_cents), 0)).join(t.reversals, r.claim_pk == a.claim_pk)
            .where(r.run_id == run_id, a.status == "paid")).scalar_one() if state.reversals.height else 0
        self.conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
            finished_at=now(), voids=voids, reversed_cents=int(reversed_cents)))
        return int(reversed_cents)

    # outcomes
    def outcome_rows(self, chosen: OutcomeFilter) -> pl.DataFrame:
        return outcome_rows(self.conn, chosen)

    def batch_outcomes(self, batch_id: str, claim_pks: pl.Series) -> pl.DataFrame:
        return batch_outcomes(self.conn, batch_id, claim_pks)

    def latest_status(self, claim_pk: int) -> str | None:
        return latest_status(self.conn, claim_pk)

    # suspended claims, re-queues and waivers
    def suspended_claims(self, claim_pks: list[int] | None = None) -> pl.DataFrame:
        """The claims waiting suspended (claim_pk, batch_id, reasons) with the fields of their latest
        attempt that re-queue selectors name (claim_id, provider_id, client_prime, service_date)."""
        s, a = t.suspended.c, t.attempts.c
        statement = select(s.claim_pk, s.batch_id, s.reasons, a.claim_id, a.provider_id, a.client_prime,
                           a.service_date).join(t.attempts, (a.claim_pk == s.claim_pk) & (a.attempt == s.attempt))
        if claim_pks is not None:
            statement = statement.where(_in_values(self.conn, s.claim_pk, claim_pks, "claim_pks"))
        return read_frame(self.conn, statement, SUSPENDED_SCHEMA)

    def holders(self, claim_ids: list[str]) -> dict[str, int]:
        """claim_id -> the claim_pk holding it, for the ids held."""
        return dict(claim_holders(self.conn, claim_ids).iter_rows())

    def enqueue(self, claim_pks: list[int], kind: str) -> None:
        """Put claims in the queue at a new place in the order (a claim queued already moves there)."""
        seq = new_queue_event(self.conn, kind)
        for chunk in chunks(claim_pks):
            self.conn.execute(delete(t.requeues).where(t.requeues.c.claim_pk.in_(chunk)))
            self.conn.execute(insert(t.requeues), [{"claim_pk": pk, "seq": seq} for pk in chunk])

    def add_waiver(self, claim_pk: int, code: str, operator: str, note: str) -> bool:
        """Waive `code` for a claim; False (nothing stored) when it is waived already."""
        w = t.waivers.c
        if self.conn.execute(select(w.id).where(w.claim_pk == claim_pk, w.code == code)).first():
            return False
        self.conn.execute(insert(t.waivers).values(claim_pk=claim_pk, code=code, operator=operator, note=note,
                                                   at=now()))
        return True

    # operators and audit
    def audit(self, operator: str, action: str, target: str, note: str) -> None:
        """Append one entry to the hash-chained audit trail (worker/store/chain.py)."""
        self.audit_many(operator, action, [(target, note)])

    def audit_many(self, operator: str, action: str, entries: list[tuple[str, str]]) -> None:
        """One audit entry per (target, note), in one statement: a run's remittances are thousands."""
        chain.append_many(self.trail, operator, action, entries)

    # what a run decided (remittances, the run report)
    def run_row(self, run_id: int) -> dict | None:
        return run_row(self.conn, run_id)

    def previous_run_id(self, run_id: int) -> int | None:
        return previous_run_id(self.conn, run_id)

    def provider_names(self) -> pl.DataFrame:
        return provider_names(self.conn)

    def run_decisions(self, run_id: int) -> pl.DataFrame:
        return run_decisions(self.conn, run_id)

    def run_reversals(self, run_id: int) -> pl.DataFrame:
        return run_reversals(self.conn, run_id)

    def provider_nets_before(self, run_id: int) -> pl.DataFrame:
        return provider_nets_before(self.conn, run_id)

    def suspended_after(self, run_id: int) -> pl.DataFrame:
        return suspended_after(self.conn, run_id)


SUSPENDED_SCHEMA = {"claim_pk": pl.Int64, "batch_id": pl.String, "reasons": pl.String, "claim_id": pl.String,
                    "provider_id": pl.String, "client_prime": pl.String, "service_date": pl.Date}


# --- what a run decided, for remittances and the run report ------------------------------------
# The narrow contract remittances and reports are built on (worker/remittances.py): one row per
# claim a run decided (its attempt of that run, from the attempt rows), and one per original it
# reversed (the reversals rows). Units and billed rates, which attempts do not carry, come from the
# claims as parsed at submit.

DECISION_SCHEMA = {
    "claim_id": pl.String, "batch_id": pl.String, "line": pl.Int64,
    "status": pl.String,  # paid | suspended | rejected | void
    "reasons": pl.List(pl.String), "carc": pl.List(pl.String), "spa_id": pl.String,
    "paid_units_s": pl.Int64, "paid_cents": pl.Int64,  # units x10^4, cents; 0 unless paid
    "billed_rate_s": pl.Int64, "units_s": pl.Int64,  # x10^4; billed rate null when not billed
    "provider_id": pl.String, "client_prime": pl.String, "procedure_code": pl.String, "modifier": pl.String,
    "service_date": pl.Date,
    "adjusts": pl.String,  # original_claim_id of an accepted replacement or void; null otherwise
    "first_suspended": pl.Datetime("us", "UTC"),  # start of the run of the claim's first suspended attempt
}

REVERSAL_SCHEMA = {
    "claim_id": pl.String,  # the original, paid earlier, reversed in this run
    "reversed_by": pl.String,  # the replacement or void that reversed it
    "provider_id": pl.String, "client_prime": pl.String, "procedure_code": pl.String, "modifier": pl.String,
    "service_date": pl.Date,
    "paid_units_s": pl.Int64, "paid_cents": pl.Int64,  # the original's payment, taken back
    "billed_rate_s": pl.Int64, "units_s": pl.Int64,
}
_ATTEMPT_FIELDS = {"claim_pk": pl.Int64, "batch_id": pl.String, "claim_id": pl.String, "line": pl.Int64,
                   "status": pl.String, "reasons": pl.String, "carc": pl.String, "spa_id": pl.String,
                   "paid_units_s": pl.Int64, "paid_cents": pl.Int64, "adjusts": pl.String,
                   "provider_id": pl.String, "client_prime": pl.String, "procedure_code": pl.String,
                   "modifier": pl.String, "service_date": pl.Date}
# What only the attempt knows. A run's other columns are its claims' fields, which run_state copied
# from the claims as parsed at submit: run_decisions takes them from there (_claims_of), so a
# million-claim run is read as 8 columns instead of 16 (about half the time on SQLite, whose driver
# makes a Python object of every value). Not from a batch kept under another PARSE_VERSION: it is
# parsed again when read, perhaps not as the run read it; the attempts' own copies are read then.
_DECIDED_FIELDS = {"claim_pk": pl.Int64, "status": pl.String, "reasons": pl.String, "carc": pl.String,
                   "spa_id": pl.String, "paid_units_s": pl.Int64, "paid_cents": pl.Int64, "adjusts": pl.String}


def run_row(conn: Connection, run_id: int) -> dict | None:
    """The stored row of a run (None when there is no such run, as for an id no run id can be: the
    column is a 32-bit integer, and a bigger number typed on a command line or in a path must not
    reach the driver, which refuses it with an overflow)."""
    if not 0 < run_id < 2**31:
        return None
    row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
    return dict(row._mapping) if row else None


def previous_run_id(conn: Connection, run_id: int) -> int | None:
    """The run before this one that stored outcomes (failed and dry runs stored none)."""
    return conn.execute(select(func.max(t.runs.c.run_id)).where(t.runs.c.run_id < run_id,
                                                                t.runs.c.status == "done")).scalar()


def provider_names(conn: Connection) -> pl.DataFrame:
    return read_frame(conn, select(t.providers.c.provider_id, t.providers.c.name),
                      {"provider_id": pl.String, "name": pl.String})


def _claims_of(conn: Connection, claim_pks: pl.Series, batch_ids: list[str], columns: list[str],
               parsed_at_submit: bool = False) -> pl.DataFrame | None:
    """`columns` of the claims `claim_pks` names (all in batches `batch_ids`), as parsed and aligned
    with claim_pks: any of batch_id, line, the parsed fields (claims.FIELDS_SCHEMA), and
    service_date (the parsed day, as attempts store it) and billed_rate_s (the parsed rate).
    parsed_at_submit: None when a batch does not keep its fields as this PARSE_VERSION parsed them."""
    claims = payloads(conn, batch_ids, parsed=True, parsed_at_submit=parsed_at_submit).sort("claim_pk")
    if parsed_at_submit and claims.get_column("batch_id").n_unique() < len(set(batch_ids)):
        return None
    # Each batch's claims are in claim_pk order: each row's claim is found by binary search (a hash
    # join of a million rows costs several times more).
    at = claims.get_column("claim_pk").search_sorted(claim_pks).clip(0, max(claims.height - 1, 0))
    if claims.height == 0 or not claims.get_column("claim_pk").gather(at).equals(claim_pks, check_names=False):
        raise AssertionError("attempts name claims their batches do not hold")
    return claims.select(pl.col("service_day").alias("service_date"), pl.col("rate_s").alias("billed_rate_s"),
                         pl.exclude("service_date", "rate_s")).select(pl.col(columns).gather(at))


def _batches_of(conn: Connection, claim_pks: pl.Series) -> list[str]:
    """The batches holding these claims (a batch holds claim_pks first_pk .. first_pk + claims - 1),
    found in the batches table, not by reading the attempts again."""
    # A batch of no claims (one migration 0003 carried over) shares its first_pk with the next one.
    batches = read_frame(conn, select(t.batches.c.first_pk, t.batches.c.batch_id).where(t.batches.c.claims > 0),
                         {"first_pk": pl.Int64, "batch_id": pl.String}).sort("first_pk")
    at = (batches.get_column("first_pk").search_sorted(claim_pks.unique(), side="right") - 1).clip(0).unique()
    return batches.get_column("batch_id").gather(at).to_list()


def attempts_of_run(run_id: int, started: dt.datetime) -> tuple:
    """The conditions selecting one run's attempts, read through the run index (attempts_run).

    The run's rows carry the month it started in (UTC); the months either side as well, in case a
    database wrote it in another time zone. On PostgreSQL only those partitions are read."""
    a = t.attempts.c
    month = _utc(started).astimezone(dt.timezone.utc).date().replace(day=1)
    return (a.run_id == run_id, a.run_month >= (month - dt.timedelta(days=1)).replace(day=1),
            a.run_month <= _next_month(month))


def run_decisions(conn: Connection, run_id: int) -> pl.DataFrame:
    """Every claim the run decided (its attempt of that run), in adjudication order: DECISION_SCHEMA."""
    a = t.attempts.c
    started = conn.execute(select(t.runs.c.started_at).where(t.runs.c.run_id == run_id)).scalar()
    if started is None:
        return pl.DataFrame(schema=DECISION_SCHEMA)
    of_run = attempts_of_run(run_id, started)
    decided = read_frame(conn, select(*[a[c] for c in _DECIDED_FIELDS]).where(*of_run).order_by(a.run_row),
                         _DECIDED_FIELDS)
    if decided.height == 0:
        return pl.DataFrame(schema=DECISION_SCHEMA)
    claim_pks, batch_ids = decided.get_column("claim_pk"), _batches_of(conn, decided.get_column("claim_pk"))
    claims = _claims_of(conn, claim_pks, batch_ids, [c for c in DECISION_SCHEMA if c not in decided.columns
                                                     and c != "first_suspended"], parsed_at_submit=True)
    # Units and billed rates, which attempts do not carry, come from the batch whatever its version.
    if claims is None:  # a batch kept under another PARSE_VERSION: the attempts' own copies
        copies = {c: d for c, d in _ATTEMPT_FIELDS.items() if c not in decided.columns}
        claims = read_frame(conn, select(*[a[c] for c in copies]).where(*of_run).order_by(a.run_row),
                            copies).hstack(_claims_of(conn, claim_pks, batch_ids, ["units_s", "billed_rate_s"]))
    decided = decided.hstack(claims)
    again = decided.filter(pl.col("status") == "suspended").get_column("claim_pk").to_list()
    first = _first_suspended(conn, run_id, again)
    decided = decided.join(first, on="claim_pk", how="left", maintain_order="left")
    split = [pl.when(pl.col(c) == "").then(pl.lit([], pl.List(pl.String))).otherwise(pl.col(c).str.split(";"))
             .alias(c) for c in ("reasons", "carc")]
    return decided.with_columns(
        *split, pl.col("paid_units_s", "paid_cents").fill_null(0),
        first_suspended=pl.when(pl.col("status") == "suspended").then(
            pl.coalesce(pl.col("first_suspended"), pl.lit(_utc(started), pl.Datetime("us", "UTC")))),
    ).select(DECISION_SCHEMA.keys()).cast(DECISION_SCHEMA)


def _first_suspended(conn: Connection, run_id: int, claim_pks: list[int]) -> pl.DataFrame:
    """claim_pk -> start of the earliest run before `run_id` that suspended it, for these claims."""
    schema = {"claim_pk": pl.Int64, "first_suspended": pl.Datetime("us", "UTC")}
    if not claim_pks:
        return pl.DataFrame(schema=schema)
    a = t.attempts.c
    statement = (select(a.claim_pk, func.min(t.runs.c.started_at))
                 .join(t.runs, t.runs.c.run_id == a.run_id)
                 .where(a.run_id < run_id, a.status == "suspended",
                        _in_values(conn, a.claim_pk, claim_pks, "claim_pks"))
                 .group_by(a.claim_pk))
    rows = [(pk, _utc(started) if isinstance(started, dt.datetime) else
             _utc(dt.datetime.fromisoformat(str(started)))) for pk, started in conn.execute(statement)]
    return pl.DataFrame(rows, schema=schema, orient="row")


def run_reversals(conn: Connection, run_id: int) -> pl.DataFrame:
    """Every original the run reversed (REVERSAL_SCHEMA): its paying attempt, taken back."""
    a, r = t.attempts.c, t.reversals.c
    fields = {c: d for c, d in _ATTEMPT_FIELDS.items() if c not in ("adjusts",)}
    statement = (select(*[a[c] for c in fields], r.reversed_by)
                 .join(t.reversals, r.claim_pk == a.claim_pk)
                 .where(r.run_id == run_id, a.status == "paid").order_by(r.reversed_by_pk))
    reversed_ = read_frame(conn, statement, {**fields, "reversed_by": pl.String})
    if reversed_.height == 0:
        return pl.DataFrame(schema=REVERSAL_SCHEMA)
    billing = _claims_of(conn, reversed_.get_column("claim_pk"), reversed_.get_column("batch_id").unique().to_list(),
                         ["units_s", "billed_rate_s"])
    return reversed_.hstack(billing).select(REVERSAL_SCHEMA.keys()).cast(REVERSAL_SCHEMA)


def suspended_after(conn: Connection, run_id: int) -> pl.DataFrame:
    """The claims left waiting suspended once run `run_id` was done (BACKLOG_SCHEMA): those whose
    latest attempt of the runs up to it suspended them, with their reasons and the start of the
    first run that suspended them. Read through the partial status index (the attempts that did
    not pay) and the claim_pk index: it grows with the claims ever suspended, not with the history."""
    a = t.attempts.c
    suspended = read_frame(conn, select(a.claim_pk, a.attempt, a.reasons).where(
        a.status == "suspended", a.status != literal_column("'paid'"), a.run_id <= run_id),
        {"claim_pk": pl.Int64, "attempt": pl.Int64, "reasons": pl.String})
    if suspended.height == 0:
        return pl.DataFrame(schema=BACKLOG_SCHEMA)
    claim_pks = suspended.get_column("claim_pk").unique().to_list()
    latest = read_frame(conn, select(a.claim_pk, func.max(a.attempt)).where(
        _in_values(conn, a.claim_pk, claim_pks, "claim_pks"), a.run_id <= run_id).group_by(a.claim_pk),
        {"claim_pk": pl.Int64, "attempt": pl.Int64})
    waiting = suspended.join(latest, on=["claim_pk", "attempt"])
    first = _first_suspended(conn, run_id + 1, waiting.get_column("claim_pk").to_list())  # runs up to run_id
    return (waiting.join(first, on="claim_pk").sort("claim_pk")
            .select("claim_pk", pl.col("reasons").str.split(";"), "first_suspended").cast(BACKLOG_SCHEMA))


def provider_nets_before(conn: Connection, run_id: int) -> pl.DataFrame:
    """What each run before `run_id` paid a provider minus what it took back (NET_SCHEMA), sorted
    by provider and run, for the providers some earlier run took a payment back from: no other
    provider can have had a negative net, so no other can carry a balance forward. Both reads go
    by index (reversals are few; a provider's attempts by attempts_provider_date), never through
    every paid attempt."""
    a, r = t.attempts.c, t.reversals.c
    taken_back = read_frame(conn, select(r.claim_pk, r.run_id).where(r.run_id < run_id),
                            {"claim_pk": pl.Int64, "run_id": pl.Int64})
    if taken_back.height == 0:
        return pl.DataFrame(schema=NET_SCHEMA)
    originals = read_frame(conn, select(a.claim_pk, a.provider_id, a.paid_cents).where(
        _in_values(conn, a.claim_pk, taken_back.get_column("claim_pk").to_list(), "claim_pks"),
        a.status == "paid", a.provider_id.is_not(None)),
        {"claim_pk": pl.Int64, "provider_id": pl.String, "paid_cents": pl.Int64})
    taken = taken_back.join(originals, on="claim_pk").group_by("run_id", "provider_id").agg(
        reversed_cents=pl.col("paid_cents").sum())
    if taken.height == 0:
        return pl.DataFrame(schema=NET_SCHEMA)
    providers = sorted(set(taken.get_column("provider_id").to_list()))
    paid_cents = func.sum(case((a.status == "paid", a.paid_cents), else_=0))  # no status index: by provider
    paid = read_frame(conn, select(a.run_id, a.provider_id, paid_cents)
                      .where(a.run_id < run_id, _in_values(conn, a.provider_id, providers))
                      .group_by(a.run_id, a.provider_id),
                      {"run_id": pl.Int64, "provider_id": pl.String, "paid_cents": pl.Int64})
    return (paid.join(taken, on=["run_id", "provider_id"], how="full", coalesce=True)
            .select("run_id", "provider_id", net_cents=pl.col("paid_cents").fill_null(0)
                    - pl.col("reversed_cents").fill_null(0))
            .sort("provider_id", "run_id").cast(NET_SCHEMA))
