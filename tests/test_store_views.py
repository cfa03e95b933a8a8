"""The views people and reporting tools query (docs/store.md), on SQLite and PostgreSQL: the export's
columns and values, every attempt or the latest, reversals shown and taken out of the paid ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
from sqlalchemy import insert, text

from adjudication.claim_file import Limits
from adjudication.rules import default_rules
from conftest import FIXTURES, ROOT
from worker import service
from worker.store import repository as repo
from worker.store import schema as t

RULES = default_rules()


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def _as_text(rows: list[tuple]) -> list[tuple]:
    """Values as the export writes them (a PostgreSQL date as ISO text, null as '')."""
    return [tuple("" if v is None else str(v) for v in row) for row in rows]


def _worked_example(store) -> None:
    service.load_reference(store, FIXTURES / "worked_example")
    service.submit(store, FIXTURES / "worked_example" / "claims.csv", RULES, Limits())
    service.run(store, RULES)


def test_the_views_are_the_export(store):
    _worked_example(store)
    service.requeue(store, service.Selection(claim_ids=("WX-3",)), "ann", "again")
    service.run(store, RULES)
    columns = ", ".join(t.VIEW_COLUMNS)
    history = _rows(store, f"SELECT {columns} FROM outcome_attempts ORDER BY line, attempt")
    exported = service.outcomes(store, history=True)
    assert exported.columns == list(t.VIEW_COLUMNS)
    assert _as_text(history) == [tuple(str(v) for v in row) for row in exported.rows()]
    assert [r[0] for r in history] == ["WX-1", "WX-2", "WX-3", "WX-3", "WX-4", "WX-5", "WX-6"]
    assert history[0][3:8] == ("paid", "", "A", "4", "70.12")
    assert history[2][3:] == ("suspended", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "A", "0", "0.00", "WX-1",
                              "B20;18", 1, None, None, "P1", "xyz0000a", "OR526", "NA", history[2][-1])
    assert str(history[2][-1]) == "2026-03-02"
    latest = _rows(store, f"SELECT {columns} FROM outcomes_latest ORDER BY line")
    assert [(r[0], r[10]) for r in latest] == [("WX-1", 1), ("WX-2", 1), ("WX-3", 2), ("WX-4", 1), ("WX-5", 1),
                                               ("WX-6", 1)]
    assert _as_text(latest) == [tuple(str(v) for v in row) for row in service.outcomes(store).rows()]
    # The questions an operator asks, in plain SQL.
    assert _rows(store, "SELECT claim_id FROM outcomes_latest WHERE provider_id = 'G1' AND status = 'suspended'") \
        == [("WX-5",)]
    assert _rows(store, "SELECT count(*) FROM outcome_attempts WHERE claim_id = 'WX-3'") == [(2,)]
    assert _rows(store, "SELECT count(*) FROM outcomes_latest WHERE client_prime = 'xyz0000a' "
                        "AND service_date BETWEEN '2026-03-01' AND '2026-03-31'") == [(6,)]


def test_a_reversed_claim_shows_who_reversed_it_and_leaves_the_paid_ledger(store, tmp_path: Path):
    """What the corrections work will write (a reversals row): the views name the reversing claim on
    the attempt that paid, and the next run no longer counts the reversed claim as paid."""
    _worked_example(store)
    with store.begin() as conn:
        wx1 = conn.execute(text("SELECT claim_pk FROM attempts WHERE claim_id = 'WX-1'")).scalar_one()
        conn.execute(insert(t.reversals).values(claim_pk=wx1, reversed_by_pk=999, reversed_by="WX-1R", run_id=1))
    reversed_by = _rows(store, "SELECT claim_id, reversed_by FROM outcome_attempts ORDER BY line")
    assert reversed_by[0] == ("WX-1", "WX-1R") and all(r[1] is None for r in reversed_by[1:])
    # WX-3 (12:00-14:00) collided with WX-1 (09:00-13:00); re-queued now, only WX-6 (13:00-15:00) is left.
    service.requeue(store, service.Selection(claim_ids=("WX-3",)), "ann", "WX-1 was reversed")
    service.run(store, RULES)
    assert service.outcomes(store, claim_ids=("WX-3",)).select("attempt", "conflicts_with").row(0) == (2, "WX-6")


def test_outcome_filters_read_the_rows_they_name(store):
    _worked_example(store)
    with store.connect() as conn:
        chosen = repo.outcome_rows(conn, repo.OutcomeFilter(provider="P1", status="paid"))
        assert chosen.get_column("claim_id").to_list() == ["WX-1", "WX-6"]
        dated = repo.outcome_rows(conn, repo.OutcomeFilter(client="xyz0000a", date_to=dt.date(2026, 3, 1)))
        assert dated.height == 0


def test_every_combination_of_filters_selects_what_filtering_the_whole_view_does(store):
    """Each filter, alone and with the status (which takes another index path on its own), gives
    exactly the rows of the whole view that match, on the latest attempts and on the history."""
    _worked_example(store)
    service.submit(store, FIXTURES / "worked_example" / "corrections.csv", RULES, Limits())
    service.run(store, RULES)
    with store.connect() as conn:
        for history in (False, True):
            everything = repo.outcome_rows(conn, repo.OutcomeFilter(history=history))
            assert everything.height > 0
            batch = everything.get_column("batch_id")[0]
            narrowing = {"provider": ("provider_id", "P1"), "client": ("client_prime", "xyz0000a"),
                         "batch": ("batch_id", batch), "claim_ids": ("claim_id", ("WX-4",)), None: (None, None)}
            for field, (column, value) in narrowing.items():
                for status in (None, "paid", "suspended", "rejected", "void"):
                    chosen = repo.OutcomeFilter(history=history, status=status, **({field: value} if field else {}))
                    expected = everything
                    if column:
                        expected = expected.filter(pl.col(column).is_in(list(value) if isinstance(value, tuple)
                                                                        else [value]))
                    if status:
                        expected = expected.filter(pl.col("status") == status)
                    assert repo.outcome_rows(conn, chosen).equals(expected), (history, field, status)


def test_a_batch_reads_the_latest_attempt_of_each_of_its_claims(store, tmp_path: Path):
    """What `ack` reads for one batch (the latest attempt of each claim, kept in Python) is the view
    outcomes_latest for that batch, also after a claim's second attempt changed its reasons and with
    another batch's claims stored after it; read as the batch's claim_pk range, and read through the
    batch index when the claim ids it is given are not one range (a database older than the submit
    lock may hold such batches)."""
    _worked_example(store)
    service.override(store, "WX-3", "OVERLAP_SAME_PROVIDER", "ann", "approved", RULES)
    service.run(store, RULES)
    later = tmp_path / "later.csv"
    later.write_text((FIXTURES / "worked_example" / "claims.csv").read_text().replace("WX-", "LX-"))
    service.submit(store, later, RULES, Limits())
    service.run(store, RULES)
    with store.connect() as conn:
        batches = conn.execute(text("SELECT batch_id, first_pk, claims FROM batches ORDER BY seq")).all()
        assert len(batches) == 2
        for batch_id, first_pk, claims in batches:
            viewed = _rows(store, "SELECT a.claim_pk, v.status, v.reasons FROM outcomes_latest v JOIN attempts a "
                                  "ON a.claim_id = v.claim_id AND a.attempt = v.attempt AND a.batch_id = v.batch_id "
                                  f"WHERE v.batch_id = '{batch_id}' ORDER BY a.claim_pk")
            own = pl.Series("claim_pk", range(first_pk, first_pk + claims), pl.Int64)
            assert repo.batch_outcomes(conn, batch_id, own).sort("claim_pk").rows() == viewed
            # Not one range (with a gap before one more id): the batch index answers the same.
            scattered = pl.concat([own, pl.Series("claim_pk", [first_pk + claims + 100], pl.Int64)])
            assert repo.batch_outcomes(conn, batch_id, scattered).sort("claim_pk").rows() == viewed
        first_batch, first_pk, claims = batches[0]
        read = repo.batch_outcomes(conn, first_batch, pl.Series(range(first_pk, first_pk + claims), dtype=pl.Int64))
    attempts = _rows(store, "SELECT claim_pk, attempt, reasons FROM attempts WHERE claim_id = 'WX-3' ORDER BY attempt")
    assert [a for _, a, _ in attempts] == [1, 2] and attempts[0][2] != attempts[1][2]
    wx3 = read.filter(pl.col("claim_pk") == attempts[0][0])
    assert wx3.get_column("reasons").to_list() == [attempts[1][2]]


def test_one_run_is_read_through_the_run_index(store):
    """A run's remittance and report read its attempts through attempts_run (migration 0011), not
    the whole history (SQLite) or the month's partition (PostgreSQL): the plan names the index."""
    from sqlalchemy import func, select

    _worked_example(store)
    with store.connect() as conn:
        run_id, started = conn.execute(select(t.runs.c.run_id, t.runs.c.started_at)).one()
        statement = select(t.attempts.c.claim_pk).where(*repo.attempts_of_run(run_id, started))
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a handful of rows: the index must be usable
            plan = " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
        else:
            # A few rows read best by a scan; give the planner what ANALYZE records after a year of
            # nightly runs of a million claims (the statistics are reloaded by ANALYZE sqlite_schema).
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'attempts'")
            conn.exec_driver_sql("INSERT INTO sqlite_stat1 VALUES ('attempts', 'attempts_run', '365000000 1000000'),"
                                 " ('attempts', NULL, '365000000')")
            conn.exec_driver_sql("ANALYZE sqlite_schema")
            plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        assert repo.run_decisions(conn, run_id).height == conn.execute(
            select(func.count()).select_from(t.attempts).where(t.attempts.c.run_id == run_id)).scalar()
    assert "_run" in plan and "attempts" in plan, plan


def _documented_queries() -> list[str]:
    """The example statements of docs/store.md's SQL block, comments left out."""
    block = (ROOT / "docs" / "store.md").read_text().split("```sql\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def test_the_documented_queries_answer_what_the_export_says(store):
    """docs/store.md's examples, run as written on the demo's story (the worked example, then a
    replacement and a void): what they answer is what `outcomes` exports, money that was reversed
    is not counted as paid, and sums are exact cents on both databases."""
    _worked_example(store)
    service.submit(store, FIXTURES / "worked_example" / "corrections.csv", RULES, Limits())
    service.run(store, RULES)
    history = service.outcomes(store, history=True)
    latest = service.outcomes(store)
    standing = latest.filter(status="paid", reversed_by="")
    claim, suspended, march, per_provider, batch, run_two = _documented_queries()

    assert [(r[0], r[10]) for r in _rows(store, claim)] == history.filter(claim_id="WX-3").select(
        "claim_id", pl.col("attempt").cast(pl.Int64)).rows()
    assert _as_text(_rows(store, suspended)) == latest.filter(provider_id="P1", status="suspended").select(
        "claim_id", "service_date", "reasons").rows()
    assert sorted(_rows(store, march)) == sorted(standing.filter(
        pl.col("client_prime") == "xyz0000a", pl.col("service_date").is_between(pl.lit("2026-03-01"), pl.lit("2026-03-31")))
        .select("claim_id", "paid_amount").rows())
    cents = {row["provider_id"]: 0 for row in standing.iter_rows(named=True)}
    for row in standing.iter_rows(named=True):
        cents[row["provider_id"]] += int(Decimal(row["paid_amount"]) * 100)
    assert _rows(store, per_provider) == sorted(cents.items())
    assert cents["P1"] == 7012  # WX-1 only: WX-6 was voided (counting every 'paid' row gives 105.18)
    [submitted] = {row["batch_id"] for row in latest.filter(pl.col("claim_id").is_in(["WX-1"])).iter_rows(named=True)}
    assert f"'{submitted}'" in batch  # the documented batch id is the worked example's
    assert sorted(_rows(store, batch)) == sorted(latest.filter(batch_id=submitted).group_by("status").len().rows())
    assert _rows(store, run_two) == [("WX-7", "paid", "112.40"), ("WX-8", "void", "0.00")]
