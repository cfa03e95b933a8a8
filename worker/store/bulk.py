"""Moving polars frames in and out of the database fast: COPY on PostgreSQL, on SQLite an Arrow
bulk load (ADBC) into a scratch file beside the database that one INSERT ... SELECT copies inside
the caller's transaction."""

from __future__ import annotations

import datetime as dt
import glob
import io
import os
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Connection, Select, Table

from worker.store.database import STAGE_PREFIX, sqlite_file


# PostgreSQL's COPY is fed a slice at a time: polars writes the CSV of one while the last is sent.
SLICE_ROWS = 100_000


def insert_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    """Insert every row of `frame` (columns named as the table's) inside the caller's transaction."""
    if frame.height == 0:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table.name, frame)
        return
    columns = ", ".join(frame.columns)
    with _staged(conn, frame) as parts:
        for part in parts:  # in the frame's order (the order an autoincrement key is given in)
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {part} "
                                 f"ORDER BY rowid")


def upsert_frame(conn: Connection, table: Table, frame: pl.DataFrame, key: str) -> None:
    """Insert the rows of `frame`, updating every column of a stored row with the same `key`."""
    if frame.height == 0:
        return
    columns = ", ".join(frame.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in frame.columns if c != key)
    if conn.dialect.name == "postgresql":
        # COPY into a scratch table, then one statement: the upsert costs no per-row round trip.
        staged = f"staged_{table.name}"
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {staged} (LIKE {table.name} INCLUDING DEFAULTS)")
        _copy(conn, staged, frame)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {staged} "
                             f"ON CONFLICT ({key}) DO UPDATE SET {updates}")
        conn.exec_driver_sql(f"DROP TABLE {staged}")
        return
    with _staged(conn, frame) as parts:
        for part in parts:
            # "WHERE true": SQLite's grammar needs it to tell the upsert's ON from a join's.
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {part} WHERE true "
                                 f"ORDER BY rowid ON CONFLICT ({key}) DO UPDATE SET {updates}")


# A frame of this many rows or more is loaded as two halves at once, each into its own scratch file
# (the driver works without holding Python's lock: about half the time on two cores).
SPLIT_ROWS = 200_000


@contextmanager
def _staged(conn: Connection, frame: pl.DataFrame) -> Iterator[list[str]]:
    """SQLite: `frame` as tables of scratch databases attached to `conn`; yields their qualified
    names, whose rows in turn (each in rowid order) are the frame's.

    Binding a million rows of twenty columns value by value through Python's sqlite3 takes about
    twice as long as the ADBC driver's bulk load from Arrow (in C) plus SQLite copying the rows from
    file to file. The scratch files lie next to the database (same volume, same protection: they hold
    client data), are written without journal or sync (nothing in them needs to survive) and are
    removed before this returns; the rows are in the caller's transaction, committed or rolled back
    with it. A file left by a process that was killed is removed by the next bulk write. The driver
    writes dates as ISO texts and booleans as 0/1, the way SQLAlchemy reads them back from SQLite (no
    frame written in bulk holds a time of day: the driver's form of one differs from SQLAlchemy's).

    Each file stays attached until the transaction ends, and SQLite attaches at most ten databases to
    a connection: a transaction makes at most five bulk writes of SPLIT_ROWS rows or more, ten of
    fewer (a run makes three, a reference load four, migration 0005 one)."""
    halves = 2 if frame.height >= SPLIT_ROWS else 1
    size = -(-frame.height // halves)
    parts = [frame.slice(i * size, size) for i in range(halves)]
    paths = _scratch_paths(conn, len(parts))
    aliases = [f"{STAGE_PREFIX}{uuid.uuid4().hex[:16]}" for _ in parts]
    try:
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(_load, parts, paths))
        for path, alias in zip(paths, aliases):
            conn.exec_driver_sql(f"ATTACH DATABASE ? AS {alias}", (str(path),))
        yield [f"{alias}.frame" for alias in aliases]
    finally:
        for path in paths:
            path.unlink(missing_ok=True)  # an attached file stays readable until it is detached


def _load(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` as the table `frame` of a new SQLite file, through the ADBC driver."""
    import adbc_driver_sqlite.dbapi as adbc  # imported here: only bulk writes to SQLite need it

    with adbc.connect(str(path), autocommit=True) as scratch:
        with scratch.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=OFF")
            cursor.execute("PRAGMA synchronous=OFF")
        # A column of nulls only (polars' Null type) has no Arrow form the driver takes.
        frame.with_columns(pl.col(pl.Null).cast(pl.String)).write_database("frame", scratch, engine="adbc")


def _scratch_paths(conn: Connection, count: int) -> list[Path]:
    """`count` new scratch files `<database>-stage-<pid>-<random>` beside the database file (in the
    temporary directory for an in-memory database), after removing those of processes no longer running."""
    database = sqlite_file(conn.engine) or Path(tempfile.gettempdir()) / "adjudication-memory"
    for stale in database.parent.glob(f"{glob.escape(database.name)}-stage-*"):
        pid = stale.name.removeprefix(f"{database.name}-stage-").split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)
    return [database.with_name(f"{database.name}-stage-{os.getpid()}-{uuid.uuid4().hex}") for _ in range(count)]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _copy(conn: Connection, table: str, frame: pl.DataFrame) -> None:
    cursor = conn.connection.driver_connection.cursor()
    try:
        # The queued writer sends each slice from a thread while polars writes the next one.
        with cursor.copy(
            f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
            writer=QueuedLibpqWriter(cursor),
        ) as copy:
            for part in frame.iter_slices(SLICE_ROWS):
                buffer = io.BytesIO()
                part.write_csv(buffer, include_header=False, null_value="\\N", quote_style="non_numeric")
                copy.write(buffer.getbuffer())
    finally:
        cursor.close()


def read_frame(conn: Connection, statement: Select, schema: dict) -> pl.DataFrame:
    """Run a select and return its rows as a frame with the given schema (column order = select's).

    Rows come straight from the driver's cursor: building SQLAlchemy Row objects for a million
    claims costs more than the query. PostgreSQL sends them as CSV (COPY ... TO STDOUT), which
    polars parses without a Python object per row, where _copy_out can.
    """
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.params
    sql = str(compiled)
    if conn.dialect.name == "postgresql" and _copy_out_reads(conn, params, schema):
        return _copy_out(conn, sql, params, schema)
    if conn.dialect.name == "sqlite":
        positional = compiled.positiontup or []
        args = tuple(params[name] for name in positional)
    else:
        args = params
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, args)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    text_dates = conn.dialect.name == "sqlite"
    loaded = {c: (pl.String if text_dates and dtype == pl.Date else dtype) for c, dtype in schema.items()}
    frame = pl.DataFrame(rows, schema=loaded, orient="row")
    if text_dates:
        frame = frame.with_columns([pl.col(c).str.to_date("%Y-%m-%d") for c, d in schema.items() if d == pl.Date])
    return frame


# The types a PostgreSQL CSV text gives polars unambiguously (other types go through the cursor).
_CSV_TYPES = (pl.String, pl.Int64, pl.Int32, pl.Date)


def _copy_out_reads(conn: Connection, params: dict, schema: dict) -> bool:
    """Whether _copy_out can read this select: columns of _CSV_TYPES; parameters that are numbers or
    dates only, because COPY takes no bound parameters: psycopg writes them into the statement's
    text, which the server logs when the statement fails (ids and names stay bound parameters);
    and a session that writes UTF-8 and ISO dates, which is what polars reads."""
    info = conn.connection.driver_connection.info
    return (all(d in _CSV_TYPES for d in schema.values())
            and all(isinstance(v, (int, dt.date)) for v in params.values())
            and info.encoding == "utf-8" and (info.parameter_status("DateStyle") or "").startswith("ISO"))


def _copy_out(conn: Connection, sql: str, params: dict, schema: dict) -> pl.DataFrame:
    """The rows of a select, written by PostgreSQL as CSV and read by polars. Every value is quoted
    (FORCE_QUOTE: a text is never taken for anything else, a byte-order mark at its start is kept);
    a NULL is an empty field, unquoted, which polars reads back as null (a row of one NULL column is
    an empty line, which polars keeps as a null row); tests/test_bulk.py."""
    buffer = io.BytesIO()
    cursor = conn.connection.driver_connection.cursor()
    try:
        # Without parameters psycopg leaves the text as it is: SQLAlchemy's %% must become % here.
        statement = f"COPY ({sql if params else sql % ()}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)"
        with cursor.copy(statement, params or None) as copy:
            for data in copy:
                buffer.write(data)
    finally:
        cursor.close()
    if buffer.tell() == 0:
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    return pl.read_csv(buffer, has_header=False, schema=schema)
