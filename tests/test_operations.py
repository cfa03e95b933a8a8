"""Operating the nightly run, through the real command line: run records, the run lock, dry runs,
exit codes, metrics, logs, and the small things an operator runs into."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADJUDICATE, FIXTURES, Cli

EXAMPLE = FIXTURES / "worked_example"
CLAIMS = EXAMPLE / "claims.csv"
HEADER = "claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,units,billed_rate\n"
CROWDED = {"ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY": "5"}  # the worked example's six claims share a day


def runs_of(cli: Cli) -> list[dict]:
    return list(csv.DictReader(io.StringIO(cli("runs", "--format", "csv").out)))


def metrics(path: Path) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text file, by (name, sorted labels)."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_a_failed_run_is_recorded_and_its_work_rolled_back(ready):
    batch = ready("submit", CLAIMS).out.strip()
    failed = ready("run", ok=False, env=CROWDED)
    assert failed.code == 1 and len(failed.err.strip().splitlines()) == 1
    assert ready("outcomes").rows() == []  # nothing of it stored: the claims stay queued
    [record] = runs_of(ready)
    assert record["status"] == "failed" and record["started"] and record["finished"]
    assert record["failure"].startswith(f"run refused: {batch} holds more than 5 claims")
    assert "xyz0000a" not in record["failure"]
    assert "6 claims, 4 paid, 2 suspended" in ready("run").out
    assert ready("run", "--dry-run").out.startswith("dry run 3: 0 claims")
    listed = runs_of(ready)
    assert [(r["run_id"], r["status"]) for r in listed] == [("3", "dry-run"), ("2", "done"), ("1", "failed")]
    assert listed[1]["claims"] == "6" and listed[1]["amount_paid"] == "196.44" and listed[1]["voids"] == "0"
    assert listed[1]["amount_reversed"] == "0.00" and listed[1]["failure"] == ""
    as_json = json.loads(ready("runs", "--format", "json").out)
    assert as_json[1]["amount_paid"] == 196.44 and as_json[1]["paid"] == 4 and as_json[2]["status"] == "failed"
    table = ready("runs").out
    assert "Runs (newest first)" in table and "dry-run" in table and "196.44" in table and "failed" in table
    # Neither has a report or remittances: refused in one line, not an empty page.
    for run_id, said in (("3", "run 3 was a dry run: it stored nothing to report"),
                         ("1", "run 1 failed: it stored nothing to report")):
        for command in (("report", run_id, "--format", "json"), ("remittance", run_id, "--format", "csv")):
            refused = ready(*command, "--operator", "ann", ok=False)
            assert refused.code == 1 and refused.err.strip().startswith(f"error: {said}"), command


def test_a_run_waiting_for_the_lock_says_who_holds_it_and_gives_up_with_exit_5(ready):
    from worker import runs
    from worker.store.database import make_engine

    ready("submit", CLAIMS)
    engine = make_engine(ready.db)
    with runs.run_lock(engine, "run", 0):  # held by this (live) test process
        blocked = ready("run", ok=False, env={"ADJUDICATION_LOCK_WAIT_SECONDS": "1.5"})
    assert blocked.code == 5
    holder = f"run pid {os.getpid()} on {socket.gethostname()}"
    assert f"waiting for the run lock: held by {holder} since 20" in blocked.err
    assert f"error: gave up waiting for the run lock after 1.5 s: held by {holder}" in blocked.err
    assert ready("outcomes").rows() == []
    [record] = runs_of(ready)
    assert record["status"] == "failed" and "gave up waiting for the run lock" in record["failure"]
    # Released: the next run goes ahead.
    assert "6 claims, 4 paid" in ready("run", env={"ADJUDICATION_LOCK_WAIT_SECONDS": "0"}).out
    engine.dispose()


def test_a_lock_left_by_a_process_that_is_gone_is_taken_over(ready):
    from sqlalchemy import update

    from worker.store import schema as t
    from worker.store.database import make_engine

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    engine = make_engine(ready.db)
    dead = f"run pid {gone.stdout.strip()} on {socket.gethostname()}"

    def left_by(holder: str, since: dt.datetime) -> None:
        with engine.begin() as conn:
            conn.execute(update(t.run_lock).values(holder=holder, since=since))

    left_by(dead, dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.timezone.utc))
    ready("submit", CLAIMS)
    done = ready("run", env={"ADJUDICATION_LOCK_WAIT_SECONDS": "0"})
    assert "run 2: 6 claims" in done.out and "which is gone: taken over" in done.err
    # The run that was killed stored nothing and recorded nothing: its record says what became of it.
    killed, night = runs_of(ready)[1], runs_of(ready)[0]
    assert (night["run_id"], night["status"], killed["run_id"], killed["status"], killed["started"]) == (
        "2", "done", "1", "failed", "2026-03-01 02:00:00")
    assert killed["failure"].startswith(f"did not finish: {dead} went away while it ran (found by run pid ")
    # A holder that finished (its run has a record) and then died before freeing the lease, and a dry
    # run's holder: taken over, and no failed night recorded.
    for holder, since in ((dead, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)),
                          ("dry " + dead, dt.datetime.now(dt.timezone.utc))):
        left_by(holder, since)
        assert "run -: 0 claims" in ready("run", env={"ADJUDICATION_LOCK_WAIT_SECONDS": "0"}).out
    assert [r["status"] for r in runs_of(ready)] == ["done", "failed"]
    engine.dispose()


def test_a_dry_run_stores_nothing_and_decides_what_the_real_run_then_decides(ready, tmp_path):
    batch = ready("submit", CLAIMS).out.strip()
    ready("operators", "add", "night.ops", "--role", "operator", "--operator", "root", "--note", "nightly jobs")
    dry = ready("run", "--dry-run", "--output", tmp_path / "dry.csv", "--operator", "night.ops")
    assert dry.out.strip() == "dry run 1: 6 claims, 4 paid, 2 suspended, 0 rejected, amount paid 196.44, amount reversed 0.00 (nothing stored)"
    assert ready("outcomes").rows() == []  # nothing stored: still queued
    assert json.loads(ready("ack", batch, "--format", "json").out)["status"] == "queued"
    trail = json.loads(ready("audit", "--format", "json").out)
    assert [(r["operator"], r["action"]) for r in trail if r["action"] == "run.dry-run"] == [("night.ops", "run.dry-run")]
    assert "run 2: 6 claims" in ready("run").out
    assert (tmp_path / "dry.csv").read_text() == ready("outcomes").out
    # A second night: an override re-queues WX-5; the dry run's outcome is the real run's attempt.
    ready("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "ann", "--note", "approved")
    ready("run", "--dry-run", "--format", "json", "--output", tmp_path / "dry.json")
    ready("run")
    would = json.loads((tmp_path / "dry.json").read_text())
    real = json.loads(ready("outcomes", "--history", "--format", "json").out)
    assert would == [r for r in real if r["attempt"] == 2] and would[0]["status"] == "paid"
    assert [r["status"] for r in runs_of(ready)] == ["done", "dry-run", "done", "dry-run"]
    usage = ready("run", "--output", tmp_path / "x.csv", ok=False)
    assert usage.code == 2 and "--dry-run" in usage.err


def test_exit_codes(ready, tmp_path):
    assert ready("--version").out.startswith("adjudicate ")
    usage = ready("run", "--no-such-option", ok=False)
    assert usage.code == 2 and "Usage: adjudicate run" in usage.err and "internal" not in usage.err
    assert ready("nosuch", ok=False).code == 2
    refused = ready("submit", tmp_path / "missing.csv", ok=False)
    assert refused.code == 1 and refused.err.startswith("error: ")
    # 3: the database is unreachable (nothing listens on that port).
    down = Cli("postgresql://postgres@127.0.0.1:1/none", tmp_path)("run", ok=False)
    assert down.code == 3 and down.err.startswith("error: unavailable: database unreachable")
    assert len(down.err.strip().splitlines()) == 1
    # 4: the run completed, and rejected more than the configured share.
    rows = "".join(f"R{i},xyz0000a,P1,,OR526,NA,2026-03-3{i},09:00,13:00,4,\n" for i in range(2, 6))  # bad dates
    (tmp_path / "bad.csv").write_text(HEADER + "R1,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,\n" + rows)
    ready("submit", tmp_path / "bad.csv")
    warned = ready("run", ok=False, env={"ADJUDICATION_FAIL_REJECTED_PERCENT": "50"})
    assert warned.code == 4 and "5 claims, 1 paid, 0 suspended, 4 rejected" in warned.out
    assert "warning: run 1 rejected 4 of 5 claims (80.0%), more than ADJUDICATION_FAIL_REJECTED_PERCENT=50" in warned.err
    assert len(ready("outcomes").rows()) == 5  # stored: the warning does not undo the run
    assert runs_of(ready)[0]["status"] == "done"
    ready("submit", CLAIMS)
    assert ready("run", env={"ADJUDICATION_FAIL_REJECTED_PERCENT": "50"}).code == 0  # off by default; under the share


def test_the_database_must_exist_and_be_at_this_versions_schema(tmp_path):
    from worker.store.database import make_engine, upgrade

    env = {k: v for k, v in os.environ.items() if k != "ADJUDICATION_DATABASE_URL"}
    folder = tmp_path / "new folder"
    folder.mkdir()
    for command in (["run"], ["serve", "--port", "1"]):  # serve: before it listens, not a 500 per request
        missing = subprocess.run([str(ADJUDICATE), *command], capture_output=True, text=True, cwd=folder, env=env,
                                 timeout=60)
        assert missing.returncode == 3, command
        assert f"no database at {folder / 'adjudication.db'}; run `adjudicate db upgrade`" in missing.stderr
        assert list(folder.iterdir()) == []  # nothing created
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old, "0004")
    old.dispose()
    stale = Cli(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)("run", ok=False)
    assert stale.code == 3 and "is at schema revision 0004" in stale.err and "run `adjudicate db upgrade`" in stale.err
    Cli(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)("db", "upgrade")
    assert Cli(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)("run").out.startswith("run -: 0 claims")


def test_each_run_writes_the_metrics_file(ready, tmp_path):
    prom = tmp_path / "textfile" / "adjudication.prom"
    env = {"ADJUDICATION_METRICS_FILE": str(prom)}
    ready("submit", CLAIMS)
    ready("run", ok=False, env={**env, **CROWDED})
    m = metrics(prom)
    assert m[("adjudication_runs_total", (("status", "failed"),))] == 1
    assert m[("adjudication_last_run_success", ())] == 0
    assert m[("adjudication_queue_claims", (("kind", "batch"),))] == 6
    assert m[("adjudication_queue_batches", ())] == 1
    assert ("adjudication_last_success_timestamp_seconds", ()) not in m
    before = time.time()
    ready("run", env=env)
    m = metrics(prom)
    assert m[("adjudication_claims_adjudicated_total", (("status", "paid"),))] == 4
    assert m[("adjudication_claims_adjudicated_total", (("status", "suspended"),))] == 2
    assert m[("adjudication_suspended_claims", (("reason", "OVERLAP_SAME_PROVIDER"),))] == 2
    assert m[("adjudication_suspended_claims", (("reason", "OVERLAP_DUPLICATE"),))] == 1
    assert m[("adjudication_queue_claims", (("kind", "batch"),))] == 0
    assert m[("adjudication_last_run_success", ())] == 1
    assert m[("adjudication_last_success_timestamp_seconds", ())] >= before - 1
    assert 0 <= m[("adjudication_last_run_duration_seconds", (("status", "done"),))] < 60
    # The same figures for a /metrics endpoint.
    from worker import metrics as product_metrics
    from worker.store.database import make_engine

    engine = make_engine(ready.db)
    body, content_type = product_metrics.render(engine)
    engine.dispose()
    assert content_type.startswith("text/plain") and b'adjudication_claims_adjudicated_total{status="paid"} 4.0' in body


def test_json_logs_at_debug_level_carry_fields_and_no_client_data(cli):
    done = cli("--log-level", "debug", "demo", env={"ADJUDICATION_LOG_FORMAT": "json"})
    lines = done.err.strip().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    runs = [r for r in records if r.get("event") == "run.done"]
    assert [(r["claims"], r["paid"], r["suspended"], r["rejected"], r["paid_cents"]) for r in runs] == [
        (6, 4, 2, 0, 19644), (2, 1, 0, 0, 11240)]
    assert all(r["level"] in ("debug", "info", "warning") and r["logger"].startswith("adjudication") for r in records)
    secrets = set()
    for name, columns in (("claims.csv", ("client_prime",)), ("corrections.csv", ("client_prime",)), ("plans.csv", ("client_prime",)),
                          ("enrollments.csv", ("client_prime",)), ("providers.csv", ("name",))):
        for row in csv.DictReader((EXAMPLE / name).open()):
            secrets.update(row[c] for c in columns)
    assert secrets and not any(secret in line for secret in secrets for line in lines)
    text = cli("--log-level", "info", "demo").err
    assert "run 1 finished event=run.done run_id=1 claims=6 paid=4 suspended=2 rejected=0 paid_cents=19644" in text
    assert cli("--log-level", "loud", "demo", ok=False).code == 2


def test_requeue_refuses_a_date_that_is_not_one(ready):
    bad = ready("requeue", "--from", "2026-13-45", "--operator", "a", "--note", "n", ok=False)
    assert bad.code == 1 and bad.err.strip() == "error: --from 2026-13-45: not a date YYYY-MM-DD"
    assert "not a date" in ready("requeue", "--to", "20260301", "--operator", "a", "--note", "n", ok=False).err


def test_a_date_range_that_holds_no_date_is_refused(ready):
    ready("submit", CLAIMS)
    ready("run")
    expected = "error: --from 2026-03-31 is after --to 2026-03-01: no service date is in that range"
    for command in (("outcomes", "--format", "csv"), ("requeue", "--note", "n")):
        bad = ready(*command, "--from", "2026-03-31", "--to", "2026-03-01", "--operator", "ann", ok=False)
        assert (bad.code, bad.err.strip(), bad.out) == (1, expected, ""), command
    one_day = ready("outcomes", "--format", "csv", "--from", "2026-03-02", "--to", "2026-03-02", "--operator", "ann")
    assert len(one_day.out.strip().splitlines()) > 1


def test_outcomes_as_json_have_numbers_and_arrays(ready):
    ready("submit", CLAIMS)
    ready("run")
    rows = json.loads(ready("outcomes", "--format", "json").out)
    wx3 = next(r for r in rows if r["claim_id"] == "WX-3")
    assert wx3["reasons"] == ["OVERLAP_DUPLICATE", "OVERLAP_SAME_PROVIDER"] and wx3["carc"] == ["B20", "18"]
    assert wx3["conflicts_with"] == ["WX-1"] and wx3["paid_amount"] == 0 and wx3["line"] == 4
    wx1 = rows[0]
    assert wx1["paid_amount"] == 70.12 and wx1["paid_units"] == 4 and wx1["reasons"] == [] and wx1["attempt"] == 1
    lines = [json.loads(line) for line in ready("outcomes", "--format", "jsonl").out.splitlines()]
    assert lines == rows


def test_a_long_run_without_a_terminal_prints_progress_lines(ready):
    ready("submit", CLAIMS)
    done = ready("run", env={"ADJUDICATION_PROGRESS_INTERVAL_SECONDS": "0"})
    steps = [line for line in done.err.splitlines() if line.startswith("progress: run: ")]
    assert [s.split(" (")[1].split(",")[0] for s in steps] == ["0/5", "1/5", "2/5", "3/5", "4/5", "5/5"]
    assert "reading the queue" in steps[0] and "deciding 6 claims" in steps[3] and "committing" in steps[-1]
    assert "progress" not in ready("run").err  # a short command says nothing


def test_watch_once_says_how_many_files_it_left(ready, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "fresh.csv").write_text(CLAIMS.read_text())  # just written: inside the settle time
    (drop / "upload.csv.part").write_text("claim_id\n")
    (drop / ".DS_Store").write_text("")
    swept = ready("watch", drop, "--once", "--settle", "60")
    assert "left 2 files still being written (changed within the last 60 s, or named as unfinished)" in swept.err
    assert (drop / "fresh.csv").exists()
    again = ready("watch", drop, "--once", "--settle", "0")
    assert "accepted fresh.csv" in again.out and "left 1 file still being written" in again.err


@pytest.mark.parametrize("name", ["compose.yaml"])
def test_the_compose_file_is_valid(name):
    import yaml

    ops = Path(__file__).resolve().parent.parent / "ops"
    compose = yaml.safe_load((ops / name).read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "worker-1", "worker-2", "beat"} <= set(services)
    for service, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, (service, dependency)
        assert "image" in spec or "build" in spec, service
    assert services["migrate"]["command"][:3] == ["adjudicate", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for worker in ("worker-1", "worker-2", "beat"):
        assert services[worker]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Every command the compose file runs is a command of this program.
    from worker.cli import cli as typer_app

    known = {c.name or c.callback.__name__ for c in typer_app.registered_commands} | {"db"}
    for service, spec in services.items():
        command = spec.get("command")
        if isinstance(command, list) and command and command[0] == "adjudicate":
            sub = next(word for word in command[1:] if not word.startswith("-"))
            assert sub in known, (service, sub)
    environment = services["worker-1"]["environment"]
    assert environment["ADJUDICATION_DATABASE_URL"].startswith("postgresql")
    assert environment["ADJUDICATION_BROKER_URL"].startswith("redis://")


def test_run_records_the_lock_and_dry_runs_on_postgresql(pg_url, tmp_path):
    """The same records on PostgreSQL: a failed run, a waiting run that gives up, a dry run."""
    from worker import runs
    from worker.store.database import make_engine

    pg = Cli(pg_url, tmp_path)
    pg("db", "upgrade")
    pg("reference", "load", EXAMPLE)
    pg("submit", CLAIMS)
    assert pg("run", ok=False, env=CROWDED).code == 1
    engine = make_engine(pg_url)
    with runs.run_lock(engine, "run", 0):
        blocked = pg("run", ok=False, env={"ADJUDICATION_LOCK_WAIT_SECONDS": "1"})
        assert blocked.code == 5 and f"held by run pid {os.getpid()}" in blocked.err
        # Other writers still go ahead while a run holds the lease (they wait only for its transaction).
        pg("operators", "add", "bob", "--role", "operator", "--operator", "root", "--note", "new clerk")
    engine.dispose()
    # The dry run says the number its record gets (its work, rolled back, freed the one it took), and
    # runs are numbered without gaps, as on SQLite.
    assert pg("run", "--dry-run", "--output", tmp_path / "dry.csv").out.startswith("dry run 3: 6 claims")
    assert pg("outcomes").rows() == []
    assert pg("run").out.startswith("run 4: 6 claims")
    assert (tmp_path / "dry.csv").read_text() == pg("outcomes").out
    assert [(r["run_id"], r["status"]) for r in runs_of(pg)] == [
        ("4", "done"), ("3", "dry-run"), ("2", "failed"), ("1", "failed")]


def test_the_progress_bar_advances_through_the_run_on_a_terminal(ready):
    import shutil

    if shutil.which("script") is None:  # util-linux: gives the command a terminal
        pytest.skip("no `script` to run the command on a terminal")
    ready("submit", CLAIMS)
    command = " ".join([str(ADJUDICATE), "--db", ready.db, "run"])
    shown = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, cwd=ready.cwd,
                           env={**os.environ, "TERM": "xterm", "COLUMNS": "120"}, timeout=300).stdout
    for step in ("run: reading the queue", "run: reading the state of 6 claims", "run: checking 6 claims",
                 "run: deciding 6 claims", "run: storing 6 outcomes", "run: committing"):
        assert step in shown, step
    assert "run 1: 6 claims, 4 paid" in shown


def test_unlock_clears_a_lock_whose_holder_is_gone_and_is_audited(ready):
    from sqlalchemy import update

    from worker import runs
    from worker.store import schema as t
    from worker.store.database import make_engine

    assert "the run lock was free" in ready("unlock", "--operator", "ann", "--note", "check").out
    engine = make_engine(ready.db)
    with runs.run_lock(engine, "run", 0):
        live = ready("unlock", "--operator", "ann", "--note", "stuck?", ok=False)
        assert live.code == 1 and "which is running" in live.err
    with engine.begin() as conn:  # a holder on a machine that died an hour ago
        conn.execute(update(t.run_lock).values(
            holder="run pid 77 on node-gone", since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
    engine.dispose()
    ready("submit", CLAIMS)
    assert ready("run", ok=False, env={"ADJUDICATION_LOCK_WAIT_SECONDS": "0"}).code == 5
    cleared = ready("unlock", "--operator", "ann", "--note", "node-gone was replaced at 02:10")
    assert "cleared the run lock held by run pid 77 on node-gone" in cleared.out
    # The run that gave up waiting recorded itself (after the lost run took the lock): the lost one is
    # recorded all the same, started when it took the lock.
    lost, gave_up = runs_of(ready)
    assert gave_up["failure"].startswith("gave up waiting for the run lock") and lost["started"] < gave_up["started"]
    assert (lost["status"], lost["failure"]) == (
        "failed", "did not finish: run pid 77 on node-gone went away while it ran (the run lock cleared by ann)")
    trail = json.loads(ready("audit", "--format", "json").out)
    assert [(r["operator"], r["action"], r["target"]) for r in trail if r["action"] == "run.unlock"] == [
        ("ann", "run.unlock", "holder=run pid 77 on node-gone")]
    assert "6 claims" in ready("run", env={"ADJUDICATION_LOCK_WAIT_SECONDS": "0"}).out


def test_a_failed_runs_record_waits_for_a_storing_run_only_so_long(pg_url, monkeypatch):
    """A run storing its work holds the run numbering until it commits: a run that failed meanwhile
    (say, it found the lease taken) gives up recording after RECORD_WAIT_SECONDS, not after that
    run's whole store phase; once the numbering is free it records as usual."""
    import datetime as dt

    from sqlalchemy import text

    from worker import runs, service
    from worker.store.database import make_engine
    from worker.store.records import RUNS_LOCK_KEY

    from sqlalchemy import create_engine

    from worker.store.database import normalize_url

    service.upgrade_schema(make_engine(pg_url))
    # Without the bound the wait would be endless (the holder is this test): the server gives up at 20 s.
    engine = create_engine(normalize_url(pg_url), connect_args={"options": "-c lock_timeout=20s"})
    monkeypatch.setattr(runs, "RECORD_WAIT_SECONDS", 1.0)
    started = dt.datetime.now(dt.timezone.utc)
    with engine.connect() as storing:  # another run's transaction, between add_run and its commit
        storing.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RUNS_LOCK_KEY})
        began = time.monotonic()
        assert runs.record_failure(engine, started, service.UserError("the lease was taken")) is None
        assert time.monotonic() - began < 10
        storing.rollback()
    assert runs.record_failure(engine, started, service.UserError("the lease was taken")) == 1
    engine.dispose()
