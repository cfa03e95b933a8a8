"""No claim stops a night: values no run can compute with are refused or rejected at submit, and a
run that fails anyway names the batch and claim it failed on (through the command line, but for the
last, where the failure has to be injected into the engine call)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from adjudication.engine import decide
from adjudication.rules import default_rules
from conftest import FIXTURES, add_staff
from worker import service
from worker.poison import RunFailed

CLAIMS = FIXTURES / "worked_example" / "claims.csv"
HEADER = "claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,units,billed_rate"
COLUMNS = HEADER.split(",")


def one_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


def test_dates_and_ids_no_run_can_use_are_rejected_at_submit_and_every_run_goes_on(ready, tmp_path):
    ready("submit", CLAIMS)
    assert "4 paid" in ready("run").out  # a paid ledger: later runs read it by month
    rows = ["Q1,xyz0000a,P1,,OR526,NA,0000-03-09,09:00,13:00,4,",
            "Q2,xyz0000a,P1,,OR526,NA,9999-12-31,09:00,13:00,4,",
            "Q3,xyz0000a,P1,,OR526,NA,1899-12-31,09:00,13:00,4,",
            "Q4\u0430,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,13:00,4,",  # a Cyrillic letter in the id
            f"{'Q' * 65},xyz0000a,P1,,OR526,NA,2026-03-03,09:00,13:00,4,",
            f"Q6,xyz0000a,P1,{'S' * 65},OR526,NA,2026-03-03,09:00,13:00,4,",
            "Q7,xyz0000a,P1,,OR526,NA,2025-12-31,09:00,13:00,4,"]  # in range, not in the future; no plan then
    batch = ready("submit", (tmp_path / "bad.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n") and
                  tmp_path / "bad.csv").out.strip()
    assert "7 claims, 0 paid, 1 suspended, 6 rejected" in ready("run").out
    document = json.loads(ready("ack", batch, "--format", "json").out)
    assert [(r["line"], r["field"]) for r in document["rejections"]] == [
        (2, "service_date"), (3, "service_date"), (4, "service_date"), (5, "claim_id"), (6, "claim_id"),
        (7, "staff_id")]
    assert document["rejections"][0]["detail"] == "not a date YYYY-MM-DD from 1900-01-01 to 2099-12-31"
    assert document["rejections"][3]["detail"] == "not an id: 1 to 64 printable ASCII characters"
    ready("submit", (tmp_path / "next.csv").write_text(CLAIMS.read_text().replace("WX-", "NX-")) and
          tmp_path / "next.csv")
    assert "6 claims" in ready("run").out  # the next night runs


def test_values_no_claim_has_refuse_the_file_in_one_line(ready, tmp_path):
    big = tmp_path / "big.csv"
    with big.open("w") as out:
        out.write(HEADER + "\nWX-1,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,\n")
        out.write("X" * 10_000_000 + ",xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,\n")
    assert one_line(ready("submit", big, ok=False)) == (
        "error: big.csv: line 3: the claim_id value is 10000000 bytes long, over the limit of 256 bytes for a "
        "claim field")
    huge_units = tmp_path / "units.jsonl"
    row = dict(zip(COLUMNS, ["WX-1", "xyz0000a", "P1", None, "OR526", "NA", "2026-03-02", "09:00", "13:00", "4",
                             None]))
    huge_units.write_text(json.dumps(row) + "\n" + json.dumps({**row, "units": "1" * 100_000}) + "\n")
    assert "line 2: the units value is 100000 bytes long" in one_line(ready("submit", huge_units, ok=False))
    as_object = tmp_path / "object.jsonl"
    as_object.write_text(json.dumps({**row, "claim_id": {"id": "WX-1"}}) + "\n")
    assert one_line(ready("submit", as_object, ok=False)) == (
        "error: object.jsonl: line 1: column claim_id holds an object, not a single value")
    as_array = tmp_path / "array.jsonl"
    as_array.write_text(json.dumps({**row, "units": [4]}) + "\n")
    assert "column units holds an array" in one_line(ready("submit", as_array, ok=False))
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"claim_id": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert one_line(ready("submit", nested, ok=False)) == (
        "error: nested.jsonl: line 1 is nested too deeply (a claim is one flat JSON object per line)")
    assert ready("run").out.startswith("run -: 0 claims")  # nothing was stored


def test_a_run_that_fails_anyway_names_the_batch_and_the_claim(tmp_path):
    from worker.store.database import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    service.upgrade_schema(engine)
    add_staff(engine)
    service.load_reference(engine, FIXTURES / "worked_example")
    rules = default_rules()
    first = service.submit(engine, CLAIMS, rules, service.Limits()).batch_id
    second_file = tmp_path / "second.csv"
    second_file.write_text(CLAIMS.read_text().replace("WX-", "NX-"))
    second = service.submit(engine, second_file, rules, service.Limits()).batch_id

    def failing(checked, *rest):
        """A claim the engine cannot decide (as `0000-03-09` once was): NX-4 makes it raise."""
        if checked.claims.get_column("claim_id").is_in(["NX-4"]).any():
            raise ValueError("year 0 is out of range")
        return decide(checked, *rest)

    with pytest.raises(RunFailed) as failed:
        service.run(engine, rules, decider=failing)
    assert str(failed.value) == (
        f"run failed on batch {second}, claim NX-4 (ValueError); nothing was stored and the claims stay queued: "
        f"withdraw the batch (adjudicate withdraw {second}) and post it corrected, then run again")
    service.withdraw(engine, second, "ann", "poison")
    assert service.run(engine, rules, decider=failing).claims == 6
    assert first != second


def test_losing_the_broker_mid_run_is_no_claims_doing(tmp_path):
    """BrokerUnavailable (a ShardsFailed) is raised as it is: no part of the queue is decided again to
    find a claim to blame (each try would wait out the outage again), and the run is recorded failed."""
    from worker import runs
    from worker.distributed import BrokerUnavailable
    from worker.store.database import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    service.upgrade_schema(engine)
    service.load_reference(engine, FIXTURES / "worked_example")
    rules = default_rules()
    service.submit(engine, CLAIMS, rules, service.Limits())
    calls = []

    def lost(*_args):
        calls.append(1)
        raise BrokerUnavailable("lost the broker for more than 30 s")

    with pytest.raises(BrokerUnavailable):
        service.run(engine, rules, decider=lost)
    assert calls == [1]
    [record] = runs.list_runs(engine).to_dicts()
    assert (record["status"], record["failure"]) == ("failed", "lost the broker for more than 30 s")


def failed_run(result) -> str:
    """The one line of a run that failed on something no refusal covers (exit 70)."""
    lines = result.err.strip().splitlines()
    assert result.code == 70 and len(lines) == 1 and lines[0].startswith("error: internal: run failed while "), result
    assert "Traceback" not in result.err
    return lines[0].removeprefix("error: internal: ")


def stored(db) -> tuple:
    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT holder FROM run_lock").fetchall(),
                conn.execute("SELECT status FROM batches ORDER BY seq").fetchall(),
                conn.execute("SELECT count(*) FROM attempts").fetchone(),
                conn.execute("SELECT count(*) FROM suspended").fetchone())


def test_a_run_failing_on_a_damaged_stored_batch_names_it_and_is_recorded_as_failed(ready, tmp_path):
    """A stored batch whose claims cannot be read back (its payload damaged in the database): the
    run fails while reading the queue naming that batch, exit 70 on one line, recorded as failed,
    nothing stored, the run lock free; withdrawn, the other batches run."""
    db = tmp_path / "test.db"
    damaged = ready("submit", CLAIMS).out.strip()
    (tmp_path / "next.csv").write_text(CLAIMS.read_text().replace("WX-", "NX-"))
    ready("submit", tmp_path / "next.csv")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE batch_payloads SET payload = X'00' WHERE batch_id = ?", (damaged,))
    line = failed_run(ready("run", ok=False))
    assert line == (f"run failed while reading the queue: stored batch {damaged} cannot be read back "
                    f"(ComputeError); nothing was stored and the claims stay queued: withdraw the batch "
                    f"(adjudicate withdraw {damaged}) to let the others run")
    runs = ready("runs", "--format", "csv").rows()
    assert [(r["status"], r["failure"]) for r in runs] == [("failed", line)]
    assert stored(db) == ([(None,)], [("queued",), ("queued",)], (0,), (0,))
    ready("withdraw", damaged, "--note", "damaged in the database")
    assert "6 claims" in ready("run").out


def test_a_run_failing_while_storing_is_recorded_as_failed_and_stores_nothing(ready, tmp_path):
    """Rows that contradict what the run stores (a suspended row for each queued claim, written behind
    the product's back): the run fails while storing, exit 70 on one line naming the step and the
    error's type only, recorded as failed, nothing of it stored, the run lock free."""
    db = tmp_path / "test.db"
    batch = ready("submit", CLAIMS).out.strip()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO suspended (claim_pk, batch_id, attempt, run_id, reasons) "
                     "SELECT value, ?, 1, 99, 'DAMAGE' FROM json_each('[1, 2, 3, 4, 5, 6]')", (batch,))
    line = failed_run(ready("run", ok=False))
    assert line == ("run failed while storing 6 outcomes (IntegrityError); nothing was stored and the claims stay "
                    "queued (the traceback is logged at --log-level debug)")
    assert [(r["status"], r["failure"]) for r in ready("runs", "--format", "csv").rows()] == [("failed", line)]
    assert stored(db) == ([(None,)], [("queued",)], (0,), (6,))
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM suspended WHERE reasons = 'DAMAGE'")
    assert "6 claims, 4 paid" in ready("run").out


def test_an_internal_error_shows_its_type_never_the_stored_values_it_quotes(ready, tmp_path):
    """A stored row damaged behind the product's back (a client prime number where a date belongs):
    the export fails as an internal error, exit 70 on one line with the error's type only; the value
    its text quotes reaches neither the line nor stdout."""
    ready("submit", CLAIMS)
    ready("run")
    with sqlite3.connect(tmp_path / "test.db") as conn:
        conn.execute("UPDATE attempts SET service_date = 'zqx9876b' WHERE claim_id = 'WX-1'")
    failed = ready("outcomes", ok=False)
    assert failed.code == 70 and failed.err.strip().splitlines() == [
        "error: internal: InvalidOperationError (the traceback is logged at --log-level debug)"]
    assert "zqx9876b" not in failed.out + failed.err
