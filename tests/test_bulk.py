"""worker/store/bulk.py: frames written with insert_frame come back from read_frame as they were.

PostgreSQL moves them as CSV both ways (COPY FROM and COPY TO), SQLite through its driver; either
way a NULL must stay NULL and an empty text must stay empty, whatever the texts hold (separators,
quotes, line breaks, the CSV null marker itself), and the rows keep the select's order.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Column, Date, Integer, MetaData, String, Table, select

from worker.store.bulk import insert_frame, read_frame
from worker.store.database import make_engine

metadata = MetaData()
scratch = Table("bulk_scratch", metadata, Column("n", Integer, nullable=False), Column("big", BigInteger),
                Column("text", String), Column("other", String), Column("day", Date))
SCHEMA = {"n": pl.Int32, "big": pl.Int64, "text": pl.String, "other": pl.String, "day": pl.Date}

# Texts a claim file can hold (PostgreSQL refuses NUL), with the ones CSV treats specially made likely.
texts = st.one_of(st.none(), st.sampled_from(["", "\\N", "NULL", ",", '"', '""', "a,b", "x\ny", "\r\n", " ", "é"]),
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
            back = read_frame(conn, select(*scratch.c).order_by(scratch.c.n.desc()), SCHEMA)
    finally:
        engine.dispose()
    assert back.to_dicts() == frame.reverse().to_dicts()


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
    finally:
        engine.dispose()
    for column, back in read.items():
        assert back.get_column(column).to_list() == frame.get_column(column).to_list()
