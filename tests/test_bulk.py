"""worker/store/bulk.py: frames written with insert_frame come back from read_frame as they were.

PostgreSQL moves them as CSV both ways (COPY FROM and COPY TO), SQLite through its driver; either
way a NULL must stay NULL and an empty text must stay empty, whatever the texts hold (separators,
quotes, line breaks, the CSV null marker itself), and the rows keep the select's order.
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Column, Date, Integer, MetaData, String, Table, literal_column, select

from worker.store.bulk import insert_frame, read_frame
from worker.store.database import make_engine

metadata = MetaData()
scratch = Table("bulk_scratch", metadata, Column("n", Integer, nullable=False), Column("big", BigInteger),
                Column("text", String), Column("other", String), Column("day", Date))
SCHEMA = {"n": pl.Int32, "big": pl.Int64, "text": pl.String, "other": pl.String, "day": pl.Date}

# Texts a claim file can hold (PostgreSQL refuses NUL), with the ones CSV treats specially made likely.
texts = st.one_of(st.none(), st.sampled_from(["", "\\N", "NULL", ",", '"', '""', "a,b", "x\ny", "\r\n", " ", "é",
                                              "\ufeffx", "12", "2026-01-02", "%s", "%%"]),
                  st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12))
rows = st.lists(st.tuples(st.none() | st.integers(-2**62, 2**62), texts, texts,
                          st.none() | st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31))), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_rows_come_back_as_written(db_url, rows):
    engine = make_engine(db_url)
    frame = pl.DataFrame([(n, *row) for n, row in enumerate(rows)], schema=SCHEMA, orient="row")
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
            insert_frame(conn, scratch, frame)
            # A text column first (a byte-order mark opening the data must stay), a number bound
            # (COPY on PostgreSQL), then a text bound (the driver's cursor).
            columns = [scratch.c.text, *[c for c in scratch.c if c.name != "text"]]
            schema = {c.name: SCHEMA[c.name] for c in columns}
            back = read_frame(conn, select(*columns).where(scratch.c.n >= 1).order_by(scratch.c.n.desc()), schema)
            named = read_frame(conn, select(*columns).where(scratch.c.n >= 1, scratch.c.other != "\x01")
                               .order_by(scratch.c.n.desc()), schema)
    finally:
        engine.dispose()
    expected = frame.filter(pl.col("n") >= 1).reverse().select(list(schema))
    assert back.to_dicts() == expected.to_dicts()
    assert named.to_dicts() == expected.filter(pl.col("other") != "\x01").to_dicts()


def test_a_single_column_of_nulls_keeps_its_rows(db_url):
    """A one-column row that is NULL would be an empty CSV line, which readers skip."""
    engine = make_engine(db_url)
    frame = pl.DataFrame({"n": [1, 2, 3], "big": [None, None, None], "text": [None, "", None],
                          "other": ["a", None, ""], "day": [None, None, None]}, schema=SCHEMA)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            insert_frame(conn, scratch, frame)
            read = {column: read_frame(conn, select(scratch.c[column]).order_by(scratch.c.n), {column: SCHEMA[column]})
                    for column in ("big", "text", "day")}
            # No parameter at all, and a % in the statement (the driver leaves such a text as it is).
            percent = read_frame(conn, select(scratch.c.n, literal_column("'100%'").label("p")).order_by(scratch.c.n),
                                 {"n": pl.Int32, "p": pl.String})
    finally:
        engine.dispose()
    for column, back in read.items():
        assert back.get_column(column).to_list() == frame.get_column(column).to_list()
    assert percent.get_column("p").to_list() == ["100%"] * 3


def test_postgresql_reads_through_copy_only_what_copy_can_carry(pg_url):
    """COPY takes no bound parameters (psycopg writes them into the statement, which the server logs
    when it fails): a select naming ids or names is read through the cursor."""
    import datetime as dt

    from worker.store.bulk import _copy_out_reads

    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert _copy_out_reads(conn, {"run_id": 7, "day": dt.date(2026, 1, 1)}, SCHEMA)
            assert not _copy_out_reads(conn, {"run_id": 7, "claim_id": "C1"}, SCHEMA)
            assert not _copy_out_reads(conn, {"ids": [1, 2]}, SCHEMA)
            assert not _copy_out_reads(conn, {}, {**SCHEMA, "at": pl.Datetime("us", "UTC")})
            conn.exec_driver_sql("SET DateStyle = 'German'")
            assert not _copy_out_reads(conn, {}, SCHEMA)
    finally:
        engine.dispose()


def test_a_text_opening_the_data_keeps_its_byte_order_mark(db_url):
    """A CSV reader drops a byte-order mark at the start of its input: the first value read must
    keep one it holds (a rejected record's claim id can start with one)."""
    engine = make_engine(db_url)
    frame = pl.DataFrame({"n": [1, 2], "big": [5, None], "text": ["\ufeffC1", "\ufeff"], "other": ["", None],
                          "day": [None, dt.date(2026, 1, 2)]}, schema=SCHEMA)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            insert_frame(conn, scratch, frame)
            back = read_frame(conn, select(scratch.c.text, scratch.c.n).where(scratch.c.n >= 1).order_by(scratch.c.n),
                              {"text": pl.String, "n": pl.Int32})
    finally:
        engine.dispose()
    assert back.get_column("text").to_list() == ["\ufeffC1", "\ufeff"]


@pytest.mark.parametrize("halves", [1, 2])
def test_sqlite_bulk_writes_leave_no_scratch_file_and_roll_back_with_the_transaction(tmp_path, monkeypatch, halves):
    """SQLite loads a frame into a scratch file beside the database (a big one as two halves, at
    once) and copies it inside the caller's transaction, in the frame's order: the files are gone
    when insert_frame returns (and one a killed process left is removed), the connection goes back
    to the pool without them attached, and a transaction that fails keeps none of the rows."""
    import subprocess
    import sys

    from worker.store import bulk

    monkeypatch.setattr(bulk, "SPLIT_ROWS", 2 if halves == 2 else bulk.SPLIT_ROWS)
    engine = make_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    frame = pl.DataFrame({"n": [3, 1, 2], "big": [1, None, 3], "text": ["a", None, ""], "other": ["x", "y", "z"],
                          "day": [dt.date(2026, 1, 2), None, dt.date(1900, 1, 1)]}, schema=SCHEMA)
    nulls = pl.DataFrame({"n": [4], "other": [None]})  # polars' Null type: no Arrow form the driver takes
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    left = tmp_path / f"bulk.db-stage-{dead}-0123"  # a killed process's
    live = tmp_path / f"bulk.db-stage-{os.getppid()}-4567"  # a running process's, writing now
    left.write_bytes(b"")
    live.write_bytes(b"")

    def scratch_files() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if "-stage-" in p.name)

    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            insert_frame(conn, scratch, frame)
            assert scratch_files() == [live.name]
            assert sum(row[1].startswith("stage_") for row in conn.exec_driver_sql("PRAGMA database_list")) == halves
            assert [r[0] for r in conn.exec_driver_sql("SELECT n FROM bulk_scratch ORDER BY rowid")] == [3, 1, 2]
            insert_frame(conn, scratch, nulls)
            assert conn.exec_driver_sql("DELETE FROM bulk_scratch WHERE n = 4 AND other IS NULL").rowcount == 1
        with engine.connect() as conn:
            # The pool holds one connection here: the one just returned (and reset).
            assert not any(row[1].startswith("stage_") for row in conn.exec_driver_sql("PRAGMA database_list"))
            assert conn.exec_driver_sql("SELECT count(*) FROM bulk_scratch").scalar() == 3
        try:
            with engine.begin() as conn:
                insert_frame(conn, scratch, frame)
                assert conn.exec_driver_sql("SELECT count(*) FROM bulk_scratch").scalar() == 6
                raise RuntimeError("the run fails after writing")
        except RuntimeError:
            pass
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM bulk_scratch").scalar() == 3
            back = read_frame(conn, select(*scratch.c).order_by(scratch.c.n), SCHEMA)
    finally:
        engine.dispose()
    assert back.to_dicts() == frame.sort("n").to_dicts()
    assert scratch_files() == [live.name]
