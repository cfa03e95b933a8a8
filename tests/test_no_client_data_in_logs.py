"""Nothing from a file's rows in any log line or message: files whose every cell (and, where a
header should be, every name) is a client prime number go through submit, run, ack's refusals and
the drop folder with logging on (-v); no prime appears in anything the commands print but the
exports asked for."""

from __future__ import annotations

import io
import itertools
import json
import re

import polars as pl


COLUMNS = ["claim_id", "client_prime", "provider_id", "staff_id", "procedure_code", "modifier", "service_date",
           "start_time", "end_time", "units", "billed_rate"]
PRIME = re.compile(r"[a-z]{3}[0-9]{4}[a-z]")
_primes = (f"qz{chr(97 + n % 26)}{n:04d}{chr(97 + n // 26 % 26)}" for n in itertools.count())


def primes(count: int) -> list[str]:
    return [next(_primes) for _ in range(count)]


def test_client_prime_numbers_never_reach_a_log_or_a_message(ready, tmp_path):
    files = {}
    # No header: the first row of primes is where the column names should be.
    files["headerless.csv"] = "\n".join(",".join(primes(11)) for _ in range(3)) + "\n"
    # A header row of primes next to good names, and rows of primes under a good header.
    files["mixed_header.csv"] = ",".join(COLUMNS[:6] + primes(5)) + "\n" + ",".join(primes(11)) + "\n"
    files["all_cells.csv"] = ",".join(COLUMNS) + "\n" + "\n".join(",".join(primes(11)) for _ in range(4)) + "\n"
    files["keys.jsonl"] = json.dumps(dict(zip(primes(11), primes(11)))) + "\n"
    files["values.jsonl"] = "\n".join(json.dumps(dict(zip(COLUMNS, primes(11)))) for _ in range(3)) + "\n"
    files["duplicate.csv"] = ",".join([*COLUMNS, "qqq9999q", "qqq9999q"]) + "\n" + ",".join(primes(13)) + "\n"
    files["long.csv"] = ",".join(COLUMNS) + "\n" + ",".join(primes(10) + ["qqq" + "1" * 300 + "q"]) + "\n"
    parquet = io.BytesIO()
    pl.DataFrame({name: [value] for name, value in zip(primes(11), primes(11))}).write_parquet(parquet)
    seen: list[str] = []

    def run(*args, ok=False, show_out=True):
        result = ready("-v", *args, ok=ok)
        seen.append(result.err)
        if show_out:
            seen.append(result.out)
        return result

    for name, text in files.items():
        (tmp_path / name).write_text(text)
        run("submit", tmp_path / name)
    (tmp_path / "columns.parquet").write_bytes(parquet.getvalue())
    run("submit", tmp_path / "columns.parquet")
    run("run", ok=True)
    # The drop folder, and its acknowledgements' refusal texts.
    drop = tmp_path / "drop"
    drop.mkdir()
    for name, text in files.items():
        (drop / name.replace(".", "_drop.")).write_text(text)
    run("watch", drop, "--once", "--settle", "0", ok=True)
    for ack in (drop / "rejected").glob("*.ack.json"):
        seen.append(json.loads(ack.read_text())["error"])
    # Exports hold claim data on purpose; their messages do not.
    run("outcomes", "--format", "json", ok=True, show_out=False)
    run("requeue", "--client", "qwj0000b", "--note", "n", ok=True)
    text = "\n".join(seen)
    assert "refused" in text and "INFO" in text  # logging was on, refusals were printed
    assert PRIME.findall(text) == [], PRIME.findall(text)[:5]


def test_a_database_error_is_told_by_kind_and_code_never_by_the_value_it_refused(db_url):
    """The command line's last resort for a database error (worker.errors.database_error): the
    drivers' texts quote the refused value; the line printed does not."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from worker.errors import database_error
    from worker.store.database import make_engine

    engine = make_engine(db_url)
    value = primes(1)[0]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE held (id TEXT PRIMARY KEY, n INTEGER)"))
        conn.execute(text("INSERT INTO held VALUES (:v, 1)"), {"v": value})
    postgres = engine.dialect.name == "postgresql"
    refused = {"INSERT INTO held VALUES (:v, 2)":  # the same key again (PostgreSQL's text quotes it)
               "UniqueViolation (23505) on constraint held_pkey" if postgres
               else "IntegrityError (SQLITE_CONSTRAINT_PRIMARYKEY)"}
    if postgres:  # not a number: quoted too
        refused["INSERT INTO held VALUES ('x', CAST(:v AS INTEGER))"] = "InvalidTextRepresentation (22P02)"
    for statement, expected in refused.items():
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(text(statement), {"v": value})
        assert value in str(caught.value) or not postgres  # the driver's text holds it
        assert database_error(caught.value) == expected
        assert database_error(caught.value.orig) == expected  # the driver's own error, as bulk paths raise it
    assert database_error(ValueError(value)) is None  # not a database error: the caller tells it its way
    engine.dispose()
