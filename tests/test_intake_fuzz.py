"""Fuzzing intake: whatever bytes arrive, the reader refuses them or reads them (nothing else escapes),
and `adjudicate submit` answers with exit 0 and a batch id or exit 1 and one line, never a traceback,
and a batch is stored whole or not at all."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import sqlite3
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.claim_file import ClaimFileError, Limits, read_claim_file
from adjudication.claims import CLAIM_COLUMNS
from conftest import FIXTURES
from test_intake_cli import prepared

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(max_file_bytes=64 * 1024, max_decompressed_bytes=256 * 1024)
LIMITS_ENV = {"ADJUDICATION_MAX_FILE_BYTES": str(LIMITS.max_file_bytes),
              "ADJUDICATION_MAX_DECOMPRESSED_BYTES": str(LIMITS.max_decompressed_bytes)}
SEEDS = sorted([(p.name, p.read_bytes()) for p in (HOSTILE / "accepted").iterdir()]
               + [(p.name, p.read_bytes()) for p in (HOSTILE / "refused").iterdir()]
               + [("claims.csv", (FIXTURES / "worked_example" / "claims.csv").read_bytes())])
NAMES = ["f.csv", "f.jsonl", "f.json", "f.ndjson", "f.parquet", "f.csv.gz", "f.jsonl.gz", "f.parquet.gz", "f.txt"]
# The characters that matter to a CSV or JSON reader, and a few that should not be there.
PALETTE = list('ab1:-.,;"\'{}[]\r\n\t \\') + ["\ufeff", "\x00", "\x1a", "é", "\u2028", "0", "9", "=", "@"]


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A corpus file with a few bytes flipped, inserted, deleted or cut off."""
    name, seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if operation == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif operation == "insert":
            data[where:where] = draw(st.sampled_from([b",", b'"', b"\n", b"\r", b"\x00", b"\xff", b"{", b"PAR1"]))
        elif operation == "delete":
            del data[where:where + draw(st.integers(1, 16))]
        elif operation == "truncate":
            del data[where:]
        else:
            data += data[where:where + 64]
    return draw(st.sampled_from([name, *NAMES])), bytes(data)


@st.composite
def built(draw) -> tuple[str, bytes]:
    """CSV or JSON Lines text assembled from claim-like pieces, in various encodings, maybe gzipped."""
    columns = list(CLAIM_COLUMNS)
    header = draw(st.one_of(st.just(columns), st.permutations(columns),
                            st.lists(st.sampled_from(columns + ["notes", "", " units"]), max_size=13)))
    cell = st.one_of(st.text(alphabet=PALETTE, max_size=6),
                     st.sampled_from(["xyz0000a", "P1", "OR526", "NA", "2026-03-02", "09:00", "24:00", "4", "1.5"]))
    rows = draw(st.lists(st.lists(cell, min_size=max(len(header) - 1, 0), max_size=len(header) + 1), max_size=6))
    if draw(st.booleans()):
        name = "f.csv"
        end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        quote = draw(st.booleans())
        text = end.join(",".join(f'"{c}"' if quote else c for c in line) for line in [header, *rows])
    else:
        name = "f.jsonl"
        text = "\n".join(json.dumps(dict(zip(header, line))) for line in rows)
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])), errors="replace")
    if draw(st.booleans()):
        return name + ".gz", gzip.compress(data)
    return name, data


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@st.composite
def parquet_files(draw) -> tuple[str, bytes]:
    count = draw(st.integers(0, 4))
    cell = st.one_of(st.none(), st.text(alphabet=PALETTE, max_size=5))
    frame = pl.DataFrame({c: draw(st.lists(cell, min_size=count, max_size=count)) for c in CLAIM_COLUMNS},
                         schema={c: pl.String for c in CLAIM_COLUMNS})
    dropped = draw(st.sets(st.sampled_from(CLAIM_COLUMNS), max_size=2))
    return "f.parquet", parquet_bytes(frame.drop(dropped))


FILES = st.one_of(mutated(), built(), parquet_files(),
                  st.tuples(st.sampled_from(NAMES), st.binary(max_size=200)))


def check_read(name: str, data: bytes) -> pl.DataFrame | None:
    """The reader's answer, asserting its promises: a one-line refusal, or well-formed rows."""
    try:
        rows = read_claim_file(name, data, LIMITS).rows
    except ClaimFileError as refusal:
        message = str(refusal)
        assert message.startswith(f"{name}: ") and "\n" not in message and "\r" not in message
        return None
    assert rows.columns == ["line", *CLAIM_COLUMNS]
    assert all(dtype == pl.String for dtype in rows.select(CLAIM_COLUMNS).dtypes)
    lines = rows.get_column("line").to_list()
    assert rows.height > 0 and lines[0] >= 1 and all(a < b for a, b in zip(lines, lines[1:]))
    return rows


@settings(max_examples=400, deadline=None)
@given(FILES)
def test_reader_refuses_or_reads_and_nothing_else_escapes(file):
    check_read(*file)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cli, path = prepared(tmp)
    return cli.db, path, tmp


def adjudicate(db: str, *args: str) -> tuple[int, str, str]:
    """`adjudicate --db DB ARGS` through worker.cli.main, in-process (as in test_intake_cli.py)."""
    from worker.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["adjudicate", "--db", db, *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def stored(path: Path) -> dict[str, tuple[int, int, list[int]]]:
    """batch -> (claims the batch says it has, claim rows stored, their lines)."""
    with sqlite3.connect(path) as conn:
        said = dict(conn.execute("SELECT batch_id, claims FROM batches"))
        lines: dict[str, list[int]] = {b: [] for b in said}
        for batch_id, payload in conn.execute("SELECT batch_id, payload FROM batch_payloads"):
            lines.setdefault(batch_id, []).extend(pl.read_parquet(io.BytesIO(payload)).sort("claim_pk")["line"])
    return {b: (said.get(b, -1), len(lines[b]), lines[b]) for b in lines}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=FILES)
def test_submit_answers_in_one_line_and_never_half_stores_a_batch(store, file):
    db, path, tmp = store
    name, data = file
    target = tmp / "in" / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    before = stored(path)
    with _environment(LIMITS_ENV):
        code, out, err = adjudicate(db, "submit", str(target))
    after = stored(path)
    assert "Traceback" not in err
    for batch_id, (said, count, _) in after.items():
        assert said == count, f"batch {batch_id} says {said} claims but holds {count}"
    expected = check_read(name, data)
    if code == 1:
        assert expected is None
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
        assert after == before
        return
    assert code == 0, err
    assert expected is not None
    batch_id = out.strip()
    assert after[batch_id][2] == expected.get_column("line").to_list()
    assert {b: v for b, v in after.items() if b != batch_id} == {b: v for b, v in before.items() if b != batch_id}


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
