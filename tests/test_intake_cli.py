"""Claim intake through the command line: refusals (exit 1, one line, nothing stored, earlier outcomes
untouched), acknowledgements, formula-safe CSV exports, and one outcome for one claim set in CSV,
JSON Lines and Parquet.

Most checks run the real `adjudicate` program in a subprocess (the conftest `Cli`). Where a check is
repeated over the whole corpus, it calls `worker.cli.main` in-process with the same argv: the same
function the `adjudicate` script runs (argument parsing, error mapping, exit codes), without paying
the program's start-up once per file.
"""

from __future__ import annotations

import datetime as dt

import csv
import io
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from conftest import FIXTURES, STAFF_ENV, Cli, Result, add_staff
from hostile.make_corpus import MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES, REFUSALS
from worker import service
from worker.store.database import make_engine

HOSTILE = Path(__file__).parent / "hostile"
HEADER = "claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,units,billed_rate"
LIMITS_ENV = {"ADJUDICATION_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
              "ADJUDICATION_MAX_DECOMPRESSED_BYTES": str(MAX_DECOMPRESSED_BYTES)}


def prepared(tmp_path: Path, reference: Path = FIXTURES / "worked_example") -> tuple[Cli, Path]:
    """A database with the schema and reference data (set up in-process: it is not what is tested)."""
    path = tmp_path / "test.db"
    engine = make_engine(f"sqlite:///{path}")
    service.upgrade_schema(engine)
    service.load_reference(engine, reference)
    add_staff(engine)
    engine.dispose()
    return Cli(f"sqlite:///{path}", tmp_path), path


def snapshot(path: Path) -> dict[str, list[str]]:
    """Every stored row of every table."""
    with sqlite3.connect(path) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "batches" in tables and "attempts" in tables
        return {table: sorted(map(repr, conn.execute(f'SELECT * FROM "{table}"'))) for table in tables}


@dataclass
class InProcess:
    """`adjudicate ARGS` through worker.cli.main, in this process."""

    db: str
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture

    def __call__(self, *args, env: dict | None = None) -> Result:
        from worker.cli import main

        with self.monkeypatch.context() as patch:
            patch.setattr(sys, "argv", ["adjudicate", "--db", self.db, *map(str, args)])
            for key, value in {**STAFF_ENV, **(env or {})}.items():
                patch.setenv(key, value)
            try:
                main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


def one_line_error(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 1, result
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    return lines[0]


def test_every_refused_file_exits_1_stores_nothing_and_leaves_outcomes_unchanged(tmp_path, monkeypatch, capsys):
    cli, path = prepared(tmp_path)
    adjudicate = InProcess(cli.db, monkeypatch, capsys)
    adjudicate("submit", FIXTURES / "worked_example" / "claims.csv")
    adjudicate("run")
    outcomes_before = adjudicate("outcomes", "--history", "--format", "json").out
    before = snapshot(path)
    for name, reason in REFUSALS.items():
        result = adjudicate("submit", HOSTILE / "refused" / name, env=LIMITS_ENV)
        assert reason in one_line_error(result), name
        assert result.out == ""
        assert snapshot(path) == before, f"{name} changed the store"
    # In a real process, with the limit set from the environment.
    result = cli("submit", HOSTILE / "refused" / "bomb.csv.gz", ok=False, env=LIMITS_ENV)
    assert REFUSALS["bomb.csv.gz"] in one_line_error(result)
    assert snapshot(path) == before
    assert json.loads(adjudicate("outcomes", "--history", "--format", "json").out) == json.loads(outcomes_before)
    assert adjudicate("run").out.startswith("run -: 0 claims")


def test_acknowledgement_and_formula_safe_exports(tmp_path, monkeypatch, capsys):
    cli, _ = prepared(tmp_path)
    adjudicate = InProcess(cli.db, monkeypatch, capsys)
    claims = tmp_path / "agency.csv"
    claims.write_text("\n".join([
        HEADER,
        "=SUM(A1),xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,",   # paid
        "-2+3,xyz0000a,P1,,OR526,NA,2026-03-02,12:00,14:00,2,",       # suspended: overlaps =SUM(A1)
        "@cmd,xyz0000a,P1,,OR526,NA,2026-03-32,09:00,13:00,4,",       # rejected: service_date
        "+1,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,12:00,4,x",        # rejected: units and billed_rate
        "\tTAB,xyz0000a,P3,,OR526,ZE,2026-03-02,10:00,12:00,2,",      # paid
        "=SUM(A1),xyz0000a,P1,,OR526,NA,2026-03-04,09:00,13:00,4,",   # rejected by the run: DUPLICATE_CLAIM_ID
    ]) + "\n", encoding="utf-8")
    batch = adjudicate("submit", claims).out.strip()

    # Before the run: the record checks are known; duplicate ids are not yet.
    rows = cli("ack", batch, "--format", "csv").rows()
    assert rows[0] == {"kind": "batch", "batch_id": batch, "file_name": "agency.csv",
                       "received_date": dt.date.today().isoformat(), "status": "queued",
                       "claims": "6", "accepted": "4", "rejected": "2", "line": "", "claim_id": "", "field": "",
                       "reason": "", "carc": "", "detail": "", "value": ""}
    assert [(r["kind"], r["line"], r["claim_id"], r["field"], r["reason"], r["carc"]) for r in rows[1:]] == [
        ("rejected", "4", "'@cmd", "service_date", "INVALID_RECORD", "16"),
        ("rejected", "5", "'+1", "units", "INVALID_RECORD", "16"),
        ("rejected", "5", "'+1", "billed_rate", "INVALID_RECORD", "16"),
    ]
    assert rows[1]["detail"] == "not a date YYYY-MM-DD from 1900-01-01 to 2099-12-31" and rows[1]["value"] == "2026-03-32"
    assert "differ from the billed time span of 3 hours" in rows[2]["detail"]

    assert "6 claims, 2 paid, 1 suspended, 3 rejected" in adjudicate("run").out

    # After the run: the outcomes' rejections, DUPLICATE_CLAIM_ID included. JSON keeps values as posted.
    document = json.loads(adjudicate("ack", batch, "--format", "json").out)
    assert (document["status"], document["claims"], document["accepted"], document["rejected"]) == \
        ("adjudicated", 6, 3, 3)
    assert "note" not in document
    assert [(r["line"], r["claim_id"], r["field"], r["reason"], r["carc"]) for r in document["rejections"]] == [
        (4, "@cmd", "service_date", "INVALID_RECORD", "16"),
        (5, "+1", "units", "INVALID_RECORD", "16"),
        (5, "+1", "billed_rate", "INVALID_RECORD", "16"),
        (7, "=SUM(A1)", "claim_id", "DUPLICATE_CLAIM_ID", "18"),
    ]

    # Every CSV the product writes: a cell starting =, +, -, @, tab or carriage return is not a formula.
    outcomes = cli("outcomes", "--format", "csv").rows()
    # (Outcomes carry claim ids as the run read them, trimmed: the one posted as tab + TAB is TAB.)
    assert [r["claim_id"] for r in outcomes] == ["'=SUM(A1)", "'-2+3", "'@cmd", "'+1", "TAB", "'=SUM(A1)"]
    assert outcomes[1]["conflicts_with"] == "'=SUM(A1)" and outcomes[1]["status"] == "suspended"
    assert outcomes[0]["paid_amount"] == "70.12" and outcomes[2]["reasons"] == "INVALID_RECORD:service_date"
    assert adjudicate("requeue", "--claim=-2+3", "--note", "=HYPERLINK(\"http://x\")").code == 0
    assert adjudicate("audit", "--format", "csv", "--output", tmp_path / "audit.csv").code == 0
    text = (tmp_path / "audit.csv").read_bytes().decode("utf-8")
    audit = list(csv.DictReader(io.StringIO(text, newline="")))
    requeued = next(r for r in audit if r["action"] == "requeue")
    assert requeued["operator"] == "ann" and requeued["note"] == "'=HYPERLINK(\"http://x\")"
    assert requeued["target"].startswith("claims=-2+3")  # does not start with a formula character: as is

    unknown = adjudicate("ack", "B0000")
    assert one_line_error(unknown) == "error: no batch B0000"


FORMAT_CLAIMS = [
    # claim_id, provider, modifier, date, start, end, units, billed_rate
    ("WX-1", "P1", "NA", "2026-03-02", "09:00", "13:00", "4", ""),
    ("WX-2", "P3", "ZE", "2026-03-02", "10:00", "12:00", "2", ""),
    ("WX-3", "P1", "NA", "2026-03-02", "12:00", "14:00", "2", ""),
    ("WX-4", "G1", "NA", "2026-03-02", "15:00", "17:00", "2", ""),
    ("WX-5", "G1", "ZE", "2026-03-02", "15:00", "17:00", "2", ""),
    ("WX-6", "P1", "NA", "2026-03-02", "13:00", "15:00", "2", ""),
    ("X-7", "P1", "NA", "2026-03-03", "09:00", "11:30", "2.5", "10.00"),  # paid at the lower billed rate
    ("X-8", "P1", "NA", "2026-03-04", "9am", "11:00", "2", ""),           # INVALID_RECORD:start_time
    ("X-9", "P1", "NA", "2026-03-05", "09:00", "11:00", "3", ""),         # INVALID_RECORD:units
    ("WX-1", "P1", "NA", "2026-03-06", "09:00", "10:00", "1", ""),        # DUPLICATE_CLAIM_ID
    ("X-10", "P1", "NA", "2026-03-07", "", "", "1", ""),                  # times required for OR526
    ("X-11", "P3", "NA", "2026-03-08", "09:00", "10:00", "1", "99999"),   # NO_ACTIVE_SPA
]


def _format_reference(folder: Path, tags: list[str]) -> Path:
    """The worked example's plan, enrollment and SPAs once per client (one client per file format)."""
    folder.mkdir()
    (folder / "providers.csv").write_bytes((FIXTURES / "worked_example" / "providers.csv").read_bytes())
    plans = ["plan_id,client_prime,start_date,end_date,status,monthly_hours"]
    enrollments = ["client_prime,cme_id,start_date,end_date"]
    spas = ["spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,end_date,units,"
            "unit_period,rate,status"]
    for tag in tags:
        plans.append(f"POC-{tag},cl{tag}0a,2026-01-01,2026-12-31,accepted,300")
        enrollments.append(f"cl{tag}0a,CME01,2026-01-01,2026-12-31")
        for spa, provider, modifier, units, rate in (("A", "P1", "NA", 250, "17.53"), ("B", "P3", "ZE", 50, "17.53"),
                                                     ("C", "G1", "NA", 100, "28.10"), ("D", "G1", "ZE", 20, "28.10")):
            spas.append(f"{spa}-{tag},POC-{tag},{provider},SE49,OR526,{modifier},2026-01-01,2026-12-31,{units},month,"
                        f"{rate},accepted")
    for name, lines in (("plans.csv", plans), ("enrollments.csv", enrollments), ("spas.csv", spas)):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_same_claims_in_csv_json_lines_and_parquet_give_the_same_outcomes(tmp_path, monkeypatch, capsys):
    tags = ["csv", "jsonl", "parquet"]
    cli, _ = prepared(tmp_path, _format_reference(tmp_path / "reference", tags))
    adjudicate = InProcess(cli.db, monkeypatch, capsys)
    columns = HEADER.split(",")

    def frame(tag: str) -> pl.DataFrame:
        return pl.DataFrame([[f"{tag}:{c}", f"cl{tag}0a", p, "", "OR526", m, d, s, e, u, r]
                             for c, p, m, d, s, e, u, r in FORMAT_CLAIMS], schema=columns, orient="row")

    frame("csv").write_csv(tmp_path / "claims.csv")
    with open(tmp_path / "claims.jsonl", "w") as out:  # numbers as JSON numbers, empty as null
        for row in frame("jsonl").to_dicts():
            row = {k: (None if v == "" else v) for k, v in row.items()}
            row["units"] = json.loads(row["units"])
            row["billed_rate"] = None if row["billed_rate"] is None else json.loads(row["billed_rate"])
            out.write(json.dumps(row) + "\n")
    frame("parquet").with_columns(  # typed columns, as a data pipeline writes them
        service_date=pl.col("service_date").str.to_date(), units=pl.col("units").cast(pl.Float64),
        billed_rate=pl.col("billed_rate").replace("", None).cast(pl.Decimal(10, 2)),
    ).write_parquet(tmp_path / "claims.parquet")
    for tag in tags:
        assert adjudicate("submit", tmp_path / f"claims.{tag}").code == 0
    assert "36 claims, 15 paid, 9 suspended, 12 rejected" in adjudicate("run").out
    outcomes = pl.DataFrame(cli("outcomes", "--format", "csv").rows()).with_columns(pl.col("line").cast(pl.Int64))

    def normalised(tag: str) -> list[dict]:
        rows = outcomes.filter(pl.col("claim_id").str.starts_with(f"{tag}:")).drop("batch_id").to_dicts()
        for row in rows:
            row["claim_id"] = row["claim_id"].split(":", 1)[1]
            row["conflicts_with"] = ";".join(c.split(":", 1)[1] for c in row["conflicts_with"].split(";") if c)
            row["spa_id"] = row["spa_id"].rsplit("-", 1)[0]
            del row["client_prime"]  # each format's claims are of a client of its own
            row["line"] += tag == "jsonl"  # JSON Lines has no header line: its claims start on line 1
        return rows

    expected = normalised("csv")
    assert [(r["claim_id"], r["status"], r["reasons"], r["paid_amount"]) for r in expected] == [
        ("WX-1", "paid", "", "70.12"),
        ("WX-2", "paid", "", "35.06"),
        ("WX-3", "suspended", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "0.00"),
        ("WX-4", "paid", "", "56.20"),
        ("WX-5", "suspended", "OVERLAP_SAME_PROVIDER", "0.00"),
        ("WX-6", "paid", "", "35.06"),
        ("X-7", "paid", "", "25.00"),
        ("X-8", "rejected", "INVALID_RECORD:start_time", "0.00"),
        ("X-9", "rejected", "INVALID_RECORD:units", "0.00"),
        ("WX-1", "rejected", "DUPLICATE_CLAIM_ID", "0.00"),
        ("X-10", "rejected", "INVALID_RECORD:start_time;INVALID_RECORD:end_time", "0.00"),
        ("X-11", "suspended", "NO_ACTIVE_SPA", "0.00"),
    ]
    assert normalised("jsonl") == expected
    assert normalised("parquet") == expected


def test_ack_and_watch_have_help(tmp_path, monkeypatch, capsys):
    adjudicate = InProcess(f"sqlite:///{tmp_path / 'x.db'}", monkeypatch, capsys)
    watch = adjudicate("watch", "--help")
    assert watch.code == 0 and "--once" in watch.out and "--interval" in watch.out and "--settle" in watch.out
    ack = adjudicate("ack", "--help")
    assert ack.code == 0 and "--format" in ack.out


def test_the_same_claims_plain_or_gzip_compressed_are_one_batch(tmp_path, monkeypatch, capsys):
    import gzip
    import hashlib

    from adjudication.claim_file import read_claim_file
    from adjudication.rules import default_rules

    cli, path = prepared(tmp_path)
    adjudicate = InProcess(cli.db, monkeypatch, capsys)
    plain = (FIXTURES / "worked_example" / "claims.csv").read_bytes()
    first = adjudicate("submit", FIXTURES / "worked_example" / "claims.csv")
    batch = first.out.strip()
    # Compressed at two moments (the gzip header carries a time), and compressed as two members.
    for mtime, name in ((1, "a.csv.gz"), (2, "b.csv.gz")):
        (tmp_path / name).write_bytes(gzip.compress(plain, mtime=mtime))
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(plain[:100], mtime=3) + gzip.compress(plain[100:], mtime=4))
    for name in ("a.csv.gz", "b.csv.gz", "c.csv.gz"):
        again = adjudicate("submit", tmp_path / name)
        assert (again.out.strip(), again.err.strip()) == (batch, "already submitted: nothing changed"), name
    assert sqlite3.connect(path).execute("SELECT count(*) FROM batches").fetchone() == (1,)

    # A gzip file queued by an earlier version was named by its compressed bytes: posting the same
    # bytes again still finds that batch.
    old = gzip.compress(plain.replace(b"WX-", b"OLD-"), mtime=5)
    (tmp_path / "old.csv.gz").write_bytes(old)
    engine = make_engine(cli.db)
    stored = service._store_batch(engine, "old.csv.gz", hashlib.sha256(old).hexdigest(),
                                  read_claim_file("old.csv.gz", old), default_rules(), service._quiet)
    engine.dispose()
    again = adjudicate("submit", tmp_path / "old.csv.gz")
    assert (again.out.strip(), again.err.strip()) == (stored.batch_id, "already submitted: nothing changed")
