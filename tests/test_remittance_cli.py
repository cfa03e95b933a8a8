"""Remittances and the run report through the real command line, on SQLite and PostgreSQL; their
totals against the runs and the outcomes on random data; the HTML opened in headless Chromium."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.claim_file import Limits
from adjudication.rules import default_rules
from conftest import FIXTURES, Cli
from remit_helpers import PAYER, balances, validate_835
from scenarios import batches, reference_sets
from test_store_properties import _fresh, _write_csv
from worker import remittances, service
from worker.store import repository as repo

CLAIMS = FIXTURES / "worked_example" / "claims.csv"
RULES = default_rules()


@pytest.fixture
def dbcli(db_url, tmp_path) -> Cli:
    """The command line on a worked-example database, SQLite or PostgreSQL, run 1 done, operator ann."""
    cli = Cli(db_url, tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    cli("submit", CLAIMS)
    assert "6 claims, 4 paid, 2 suspended, 0 rejected, amount paid 196.44" in cli("run").out
    return cli


def test_remittances_of_the_worked_example(dbcli, tmp_path):
    out = tmp_path / "remit"
    assert "3 remittances" in dbcli("remittance", "1", "--format", "x12", "--operator", "ann", "--output", out).out
    files = sorted(p.name for p in out.iterdir())
    assert files == ["run-1-provider-G1.835", "run-1-provider-P1.835", "run-1-provider-P3.835"]
    figures = {}
    for name in files:
        text = (out / name).read_text()
        assert validate_835(text) == [], name
        figures[name] = balances(text)
    assert sum(f["bpr02"] for f in figures.values()) == Decimal("196.44")
    assert sum(Decimal(r["paid_amount"]) for r in dbcli("outcomes").rows()) == Decimal("196.44")
    p1 = figures["run-1-provider-P1.835"]
    assert [c["id"] for c in p1["claims"]] == ["WX-1", "WX-6"] and p1["trace"] == "1-P1"  # WX-3 is pending

    dbcli("remittance", "1", "--format", "csv", "--operator", "ann", "--output", out)
    with (out / "run-1-provider-P1.csv").open() as handle:
        p1_rows = list(csv.DictReader(handle))
    assert [(r["section"], r["claim_id"]) for r in p1_rows][:3] == [("payment", "WX-1"), ("payment", "WX-6"),
                                                                     ("pending", "WX-3")]
    assert p1_rows[2]["reasons"] == "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER" and p1_rows[2]["carc"] == "B20;18"
    assert [r["paid_amount"] for r in p1_rows if r["section"] == "net"] == ["105.18"]

    assert "1 remittance written" in dbcli("remittance", "1", "--format", "html", "--provider", "G1", "--operator", "ann",
                                    "--output", tmp_path / "one").out
    page = (tmp_path / "one" / "run-1-provider-G1.html").read_text()
    assert "WX-4" in page and "WX-5" in page and '<b id="net">56.20</b>' in page

    trail = dbcli("audit", "--format", "json").out
    entries = [e for e in json.loads(trail) if e["action"] == "remittance"]
    assert len(entries) == 7 and all(e["operator"] == "ann" for e in entries)
    assert "run=1 provider=G1 format=html" in [e["target"] for e in entries]


def test_a_provider_whose_ids_an_835_cannot_hold_gets_none_and_the_others_theirs(dbcli, tmp_path):
    """Intake takes claim ids of up to 64 characters; CLP01 holds 38. That provider's 835 is not
    written (the command warns, exit 4); the other providers' are, valid and audited."""
    long_id = "L" * 39
    claims = tmp_path / "long.csv"
    claims.write_text(CLAIMS.read_text().splitlines()[0] + "\n"
                      f"{long_id},xyz0000a,P1,,OR526,NA,2026-03-09,09:00,13:00,4,\n"
                      "SHORT-1,xyz0000a,P3,,OR526,ZE,2026-03-09,10:00,12:00,2,\n")
    dbcli("submit", claims)
    assert "2 claims, 2 paid" in dbcli("run").out
    out = tmp_path / "remit"
    partly = dbcli("remittance", "2", "--format", "x12", "--operator", "ann", "--output", out, ok=False)
    assert partly.code == 4 and partly.out.strip() == f"1 remittance written to {out}"
    assert partly.err.strip() == ("warning: no 835 for provider P1: an id is longer than the 835 allows (CLP01 "
                                  "(claim_id over 38 characters)); their csv and html remittances carry every claim")
    assert long_id not in partly.err
    assert sorted(p.name for p in out.iterdir()) == ["run-2-provider-P3.835"]
    assert validate_835((out / "run-2-provider-P3.835").read_text()) == []
    entries = [e["target"] for e in json.loads(dbcli("audit", "--format", "json").out) if e["action"] == "remittance"]
    assert entries == ["run=2 provider=P3 format=x12"]
    dbcli("remittance", "2", "--format", "csv", "--operator", "ann", "--output", out)  # carries every claim
    with (out / "run-2-provider-P1.csv").open() as handle:
        assert [r["claim_id"] for r in csv.DictReader(handle) if r["section"] == "payment"] == [long_id]


CORRECTION_HEADER = ("claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,"
                     "end_time,units,billed_rate,frequency,original_claim_id\n")


def test_a_negative_balance_is_carried_forward_and_recovered_in_the_next_runs(dbcli, tmp_path):
    """Run 2 voids both of P1's payments of run 1 (a net of -105.18): its 835 pays 0 and carries
    the balance forward; run 3 pays P1 17.53, all recovered; run 4 pays 140.24, of which the 87.65
    still owed is recovered. Producing run 3's remittances again after run 4 gives the same bytes."""
    def submit_and_run(name: str, rows: list[str]) -> str:
        (tmp_path / name).write_text(CORRECTION_HEADER + "\n".join(rows) + "\n")
        dbcli("submit", tmp_path / name)
        return dbcli("run").out

    assert "amount reversed 105.18" in submit_and_run("voids.csv", ["V1,xyz0000a,P1,,,,,,,,,8,WX-1",
                                                                  "V6,xyz0000a,P1,,,,,,,,,8,WX-6"])
    submit_and_run("small.csv", ["N1,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,10:00,1,,,"])
    out = tmp_path / "remit"

    def remit(run: int, fmt: str) -> Path:
        dbcli("remittance", str(run), "--format", fmt, "--provider", "P1", "--operator", "ann", "--output", out)
        return out / f"run-{run}-provider-P1.{ {'x12': '835'}.get(fmt, fmt) }"

    second = remit(2, "x12").read_text()
    assert validate_835(second) == []
    assert "PLB*P1*20261231*FB:2-P1*-105.18~" in second and balances(second)["bpr02"] == 0
    third = remit(3, "x12").read_text()
    assert validate_835(third) == []
    figures = balances(third)
    assert (figures["net"], figures["plb"], figures["bpr02"]) == (Decimal("17.53"), Decimal("17.53"), 0)
    assert "PLB*P1*20261231*FB:2-P1*17.53~" in third

    submit_and_run("big.csv", ["N2,xyz0000a,P1,,OR526,NA,2026-03-04,09:00,17:00,8,,,"])
    fourth = remit(4, "x12").read_text()
    assert validate_835(fourth) == []
    figures = balances(fourth)
    assert (figures["net"], figures["plb"], figures["bpr02"]) == (Decimal("140.24"), Decimal("87.65"),
                                                                  Decimal("52.59"))
    assert "PLB*P1*20261231*FB:2-P1*87.65~" in fourth and "BPR*I*52.59*C*CHK" in fourth
    assert remit(3, "x12").read_text() == third  # the balance comes from the runs before, in order

    with remit(4, "csv").open() as handle:
        rows = [(r["section"], r["adjusts"], r["paid_amount"]) for r in csv.DictReader(handle)][-5:]
    assert rows == [("total_paid", "", "140.24"), ("total_reversed", "", "0.00"), ("net", "", "140.24"),
                    ("balance_forward_recovered", "2-P1", "-87.65"), ("amount_paid", "", "52.59")]
    with remit(2, "csv").open() as handle:
        rows = [(r["section"], r["adjusts"], r["paid_amount"]) for r in csv.DictReader(handle)][-2:]
    assert rows == [("balance_forward", "2-P1", "105.18"), ("amount_paid", "", "0.00")]
    page = remit(4, "html").read_text()
    assert '<b id="balance-recovered">87.65</b>' in page and '<b id="amount-paid">52.59</b>' in page
    assert "<td>balance forward recovered</td><td>2-P1</td>" in page
    # The run report says what P1 is sent, as the 835s do.
    for run, figures in ((2, ("0.00", "105.18", "0.00")), (3, ("0.00", "0.00", "17.53")), (4, ("52.59", "0.00", "87.65"))):
        report = json.loads(dbcli("report", str(run), "--format", "json", "--operator", "ann").out)
        [p1] = [r for r in report["by_provider"] if r["provider_id"] == "P1"]
        assert (p1["amount_issued"], p1["balance_carried_forward"], p1["balance_recovered"]) == figures
    page = dbcli("report", "4", "--format", "html", "--operator", "ann").out
    assert '<b id="amount-issued">52.59</b>' in page and '<b id="amount-net">140.24</b>' in page
    trail = [e["target"] for e in json.loads(dbcli("audit", "--format", "json").out) if e["action"] == "remittance"]
    assert sorted(trail) == sorted(f"run={r} provider=P1 format={f}" for r, f in (
        (2, "x12"), (3, "x12"), (4, "x12"), (3, "x12"), (4, "csv"), (2, "csv"), (4, "html")))


def test_remittance_and_report_refusals(dbcli, tmp_path):
    for args, message in (
        (("remittance", "1", "--format", "x12", "--operator", ""), "name the acting operator"),
        (("remittance", "1", "--format", "x12", "--operator", "bob"), "operator bob is not registered"),
        (("remittance", "9", "--format", "x12", "--operator", "ann"), "no run 9"),
        (("remittance", "1", "--format", "x12", "--provider", "P9", "--operator", "ann"), "decided no claim of provider P9"),
        (("report", "1", "--format", "json", "--operator", "bob"), "operator bob is not registered"),
        (("report", "2", "--format", "json", "--operator", "ann"), "no run 2"),
        (("report", "9" * 23, "--format", "json", "--operator", "ann"), f"no run {'9' * 23}"),
        (("remittance", "9" * 20, "--format", "csv", "--operator", "ann"), f"no run {'9' * 20}"),
        (("report", "0", "--format", "json", "--operator", "ann"), "no run 0"),
    ):
        result = dbcli(*args, "--output", tmp_path / "x", ok=False) if args[0] == "remittance" else dbcli(*args, ok=False)
        assert result.code == 1 and result.err.startswith("error: ") and message in result.err, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    # --output names a folder: a file there (or on the way) is refused before anything is written or audited.
    def remittances_audited() -> int:
        return sum(e["action"] == "remittance" for e in json.loads(dbcli("audit", "--format", "json").out))

    audited = remittances_audited()
    (tmp_path / "a-file").write_text("kept")
    for output, why in ((tmp_path / "a-file", "is a file, not a folder"),
                        (tmp_path / "a-file" / "sub", f"{tmp_path / 'a-file'} is a file, not a folder")):
        refused = dbcli("remittance", "1", "--format", "csv", "--operator", "ann", "--output", output, ok=False)
        assert (refused.code, refused.err.strip()) == (1, f"error: --output {output}: {why}")
    assert (tmp_path / "a-file").read_text() == "kept" and remittances_audited() == audited
    long_receiver = dbcli("remittance", "1", "--format", "x12", "--operator", "ann", "--output", tmp_path / "x",
                          ok=False, env={"ADJUDICATION_REMIT_RECEIVER_ID": "R" * 16})
    assert long_receiver.code == 1 and "ADJUDICATION_REMIT_RECEIVER_ID is longer than the 835's 15" in long_receiver.err
    assert "3 remittances" in dbcli("remittance", "1", "--format", "csv", "--operator", "ann", "--output", tmp_path / "y",
                                    env={"ADJUDICATION_REMIT_RECEIVER_ID": "R" * 16}).out  # other commands run on
    # A run that only suspended a provider's claim: no 835 (it carries payments and reversals), and why.
    dbcli("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "again")
    assert "0 paid, 1 suspended" in dbcli("run").out
    nothing = dbcli("remittance", "2", "--format", "x12", "--provider", "P1", "--operator", "ann", "--output", tmp_path / "z")
    assert nothing.out.strip() == f"0 remittances written to {tmp_path / 'z'}"
    assert nothing.err.strip() == ("note: run 2 paid and reversed no claim of provider P1 (an 835 carries payments and "
                                   "reversals only); its pending and rejected claims are in --format csv or html")
    assert "1 remittance written" in dbcli("remittance", "2", "--format", "csv", "--provider", "P1", "--operator", "ann",
                                           "--output", tmp_path / "z").out


def test_report_of_a_second_run_compares_with_the_first(dbcli):
    dbcli("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "recheck")
    assert "1 claims, 0 paid, 1 suspended" in dbcli("run").out
    report = json.loads(dbcli("report", "2", "--format", "json", "--operator", "ann").out)
    assert report["run"]["claims"] == 1 and report["run"]["suspended"] == 1 and report["run"]["amount_paid"] == "0.00"
    assert report["previous"]["run_id"] == 1 and report["previous"]["amount_paid"] == "196.44"
    assert report["previous"]["difference"]["amount_paid"] == "-196.44"
    assert report["previous"]["difference"]["claims"] == -5
    assert report["suspended_by_reason"] == [{"code": "OVERLAP_DUPLICATE", "claims": 1},
                                            {"code": "OVERLAP_SAME_PROVIDER", "claims": 1}]
    assert sum(b["claims"] for b in report["suspended_by_age"]) == 1
    # The work queue the run left: WX-3 (suspended again) and WX-5 (suspended by run 1, waiting since).
    waiting = {"claims": 2, "by_reason": [{"code": "OVERLAP_SAME_PROVIDER", "claims": 2},
                                          {"code": "OVERLAP_DUPLICATE", "claims": 1}],
               "by_age": [{"age": "0-30 days", "claims": 2}] + [{"age": a, "claims": 0} for a in (
                   "31-60 days", "61-90 days", "91-180 days", "over 180 days")]}
    assert report["waiting_suspended"] == waiting
    # Ages count from the first run that suspended a claim: with run 2 started 31 days after run 1,
    # WX-3 (suspended by both) is as old as WX-5. (Run 2's start moved, not run 1's: a run's attempts
    # are found by the month it started in, give or take one.)
    from sqlalchemy import text, update

    from worker.store import schema as t
    from worker.store.database import make_engine

    engine = make_engine(dbcli.db)
    with engine.begin() as conn:
        started = conn.execute(text("SELECT started_at FROM runs WHERE run_id = 1")).scalar_one()
        started = started if isinstance(started, dt.datetime) else dt.datetime.fromisoformat(str(started))
        conn.execute(update(t.runs).where(t.runs.c.run_id == 2).values(started_at=started + dt.timedelta(days=31)))
    engine.dispose()
    aged = json.loads(dbcli("report", "2", "--format", "json", "--operator", "ann").out)["waiting_suspended"]["by_age"]
    assert [b["claims"] for b in aged] == [0, 2, 0, 0, 0]  # both in 31-60 days
    # WX-5 waived and paid by run 3: it leaves the queue of run 3, not the queue runs 1 and 2 left.
    dbcli("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "ann", "--note", "2:1 approved")
    assert "1 claims, 1 paid" in dbcli("run").out
    third = json.loads(dbcli("report", "3", "--format", "json", "--operator", "ann").out)["waiting_suspended"]
    assert (third["claims"], third["by_reason"]) == (1, [{"code": "OVERLAP_DUPLICATE", "claims": 1},
                                                         {"code": "OVERLAP_SAME_PROVIDER", "claims": 1}])
    for run in ("1", "2"):
        assert json.loads(dbcli("report", run, "--format", "json", "--operator", "ann").out)["waiting_suspended"][
            "claims"] == 2
    first = json.loads(dbcli("report", "1", "--format", "json", "--operator", "ann").out)
    assert first["previous"] is None and first["run"]["amount_paid"] == "196.44"
    assert {(r["provider_id"], r["amount_paid"]) for r in first["by_provider"]} == {
        ("P1", "105.18"), ("G1", "56.20"), ("P3", "35.06")}
    assert {(r["procedure_code"], r["modifier"], r["paid"]) for r in first["by_procedure"]} == {
        ("OR526", "NA", 3), ("OR526", "ZE", 1)}
    # An amount is named as one: no key names cents while holding a decimal text.
    rows = [*first["by_provider"], *first["by_procedure"], *first["reversals"]["claims"], first["run"]]
    assert not [key for row in rows for key, value in row.items() if key.endswith("_cents")]
    assert [e["target"] for e in json.loads(dbcli("audit", "--format", "json").out)
            if e["action"] == "report"] == [f"run={r} format=json" for r in (2, 2, 3, 1, 2, 1)]


# --- the numbers agree, on random runs -------------------------------------------------------------

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reference=reference_sets(), groups=batches(), requeue_after=st.lists(st.booleans(), min_size=3, max_size=3))
def test_remittances_add_up_to_the_runs_and_the_outcomes(store, tmp_path, reference, groups, requeue_after):
    """For every run: the 835s' nets (BPR02 + PLB) add up to what the run paid minus what it
    reversed (the runs table, `runs` and run_reversals), and the outcomes' paid amounts grow by
    what the run paid; the report and the CSV say the same. Over the runs, the BPR02s add up to
    paid minus reversed plus the balances providers still owe (negative nets not recovered yet)."""
    from worker import runs

    _fresh(store, reference)  # reset_store registers the test operators (conftest.add_staff) again
    history_paid = Decimal(0)
    bpr02_total = net_total = Decimal(0)
    owed: dict[str, Decimal] = {}  # provider -> balance still owed: max(0, owed - net) run after run
    for index, group in enumerate(groups):
        # scenarios.batches: replacements and voids of paid, suspended, rejected, reversed and unknown claims
        service.submit(store, _write_csv(tmp_path / f"b{index}.csv", group), RULES, Limits(),
                       received=group[0].get("received_date"))
        if requeue_after[index]:
            service.requeue(store, service.Selection(reason="OVERLAP_DUPLICATE"), "ann", "again")
        summary = service.run(store, RULES)
        if summary.run_id is None:
            continue
        with store.connect() as conn:
            run_row = repo.run_row(conn, summary.run_id)
            reversed_cents = int(repo.run_reversals(conn, summary.run_id).get_column("paid_cents").sum() or 0)
        assert run_row["reversed_cents"] == reversed_cents == summary.reversed_cents
        out = tmp_path / f"run-{summary.run_id}"
        names = remittances.remittances(store, summary.run_id, "x12", "ann", PAYER, out).names
        nets = [balances((out / name).read_text()) for name in names]
        assert sum((n["bpr02"] + n["plb"] for n in nets), Decimal(0)) * 100 == run_row["paid_cents"] - reversed_cents
        assert len({n["trace"] for n in nets}) == len(nets)
        for n in nets:
            provider = n["trace"].split("-", 1)[1]
            owed[provider] = max(Decimal(0), owed.get(provider, Decimal(0)) - n["net"])
            bpr02_total += n["bpr02"]
            net_total += n["net"]
        assert bpr02_total == net_total + sum(owed.values(), Decimal(0))
        listed = runs.list_runs(store).filter(pl.col("run_id") == summary.run_id).row(0, named=True)
        assert (listed["paid_cents"], listed["reversed_cents"], listed["paid"]) == (
            run_row["paid_cents"], reversed_cents, run_row["paid"])
        now_paid = sum((Decimal(a) for a in service.outcomes(store, history=True).get_column("paid_amount")), Decimal(0))
        assert (now_paid - history_paid) * 100 == run_row["paid_cents"]
        history_paid = now_paid
        report = json.loads(remittances.report(store, summary.run_id, "json", "ann"))
        assert report["run"]["net"] == f"{Decimal(run_row['paid_cents'] - reversed_cents) / 100:.2f}"
        assert (report["run"]["paid"], report["run"]["suspended"], report["run"]["rejected"]) == (
            run_row["paid"], run_row["suspended"], run_row["rejected"])
        # The amount each provider is sent is its 835's BPR02; the work queue left is the claims whose
        # latest outcome is suspended.
        issued = {r["provider_id"]: Decimal(r["amount_issued"]) for r in report["by_provider"]}
        assert {n["trace"].split("-", 1)[1]: n["bpr02"] for n in nets} == {
            p: v for p, v in issued.items() if p in {n["trace"].split("-", 1)[1] for n in nets}}
        assert Decimal(report["run"]["amount_issued"]) == sum((n["bpr02"] for n in nets), Decimal(0))
        assert report["waiting_suspended"]["claims"] == service.outcomes(store, status="suspended").height == sum(
            b["claims"] for b in report["waiting_suspended"]["by_age"])
        names = remittances.remittances(store, summary.run_id, "csv", "ann", PAYER, out).names
        csv_rows = [row for name in names for row in csv.DictReader((out / name).open())]
        assert sum(Decimal(r["paid_amount"]) for r in csv_rows if r["section"] == "net") * 100 == (
            run_row["paid_cents"] - reversed_cents)
        # What each provider is paid: its 835's BPR02 (amount_paid where balances moved, else net).
        paid_by_csv = {}
        for r in csv_rows:
            if r["section"] in ("net", "amount_paid"):
                paid_by_csv[r["provider_id"]] = max(Decimal(0), Decimal(r["paid_amount"]))
        assert {n["trace"].split("-", 1)[1]: n["bpr02"] for n in nets} == {
            p: v for p, v in paid_by_csv.items() if p in {n["trace"].split("-", 1)[1] for n in nets}}
        assert {r["section"] for r in csv_rows} <= {"payment", "reversal", "pending", "rejected", "total_paid",
                                                   "total_reversed", "net", "balance_forward",
                                                   "balance_forward_recovered", "amount_paid"}


# --- opened in a browser ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]
# What Chromium itself asks for at start-up (time, updates, accounts), never the page: the host
# resolver rule above sends those nowhere as well.
CHROMIUM_OWN = re.compile(r"^https?://([a-z0-9.-]+\.)?(google\.com|googleapis\.com|gstatic\.com|~notfound)(/|$)")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (CI=true: .ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def open_in_chromium(page: Path, work: Path) -> tuple[str, Path, list[str]]:
    """The page's DOM as Chromium rendered it, a screenshot, and every URL Chromium requested."""
    browser = chromium()
    shot, net_log = work / f"{page.stem}.png", work / f"{page.stem}.netlog.json"
    common = [browser, *CHROMIUM_FLAGS, f"--log-net-log={net_log}"]
    dom = subprocess.run([*common, f"--user-data-dir={work / 'profile-dom'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    subprocess.run([*common, f"--user-data-dir={work / 'profile-shot'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    requested = re.findall(r'"url":"([^"]+)"', net_log.read_text())
    return dom, shot, requested


class Page(HTMLParser):
    """Text by element id, the charts' bars, and every attribute that could fetch something."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.charts: list[list[float]] = []
        self.fetching: list[str] = []
        self._current: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "svg":
            self.charts.append([])
        if tag == "rect" and self.charts:
            self.charts[-1].append(float(attributes.get("width") or 0))
        if tag in ("script", "link", "iframe", "img", "object", "embed"):
            self.fetching.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "xlink:href", "action", "data") or "url(" in (value or ""):
                self.fetching.append(f"{tag} {name}={value}")
        self._current = attributes.get("id")

    def handle_data(self, data):
        if self._current:
            self.by_id[self._current] = self.by_id.get(self._current, "") + data.strip()

    def handle_endtag(self, tag):
        self._current = None


def test_report_and_remittance_render_offline_in_chromium(tmp_path):
    cli = Cli(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    cli("submit", CLAIMS)
    summary = cli("run").out
    cli("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "recheck")
    cli("run")
    cli("report", "1", "--format", "html", "--operator", "ann", "--output", tmp_path / "report.html")
    cli("remittance", "1", "--format", "html", "--provider", "P1", "--operator", "ann", "--output", tmp_path)
    report = json.loads(cli("report", "1", "--format", "json", "--operator", "ann").out)

    dom, shot, requested = open_in_chromium(tmp_path / "report.html", tmp_path)
    page = Page()
    page.feed(dom)
    numbers = re.search(r"(\d+) claims, (\d+) paid, (\d+) suspended, (\d+) rejected, amount paid ([\d.]+)", summary)
    assert (page.by_id["total-claims"], page.by_id["total-paid"], page.by_id["total-suspended"],
            page.by_id["total-rejected"], page.by_id["amount-paid"]) == numbers.groups()
    assert page.by_id["amount-paid"] == report["run"]["amount_paid"]
    assert len(page.charts) >= 5 and all(any(width > 0 for width in bars) for bars in page.charts), page.charts
    assert page.fetching == []
    assert [url for url in requested if not url.startswith("file://") and not CHROMIUM_OWN.match(url)] == []
    assert [url for url in requested if url.startswith("file://")] in ([], [(tmp_path / "report.html").as_uri()])
    assert shot.stat().st_size > 20_000  # a page with charts, not a blank one

    dom, shot, requested = open_in_chromium(tmp_path / "run-1-provider-P1.html", tmp_path)
    page = Page()
    page.feed(dom)
    assert (page.by_id["total-paid"], page.by_id["net"], page.by_id["count-pending"]) == ("105.18", "105.18", "1")
    assert "WX-1" in dom and "WX-6" in dom and "OVERLAP_SAME_PROVIDER" in dom
    assert page.fetching == []
    assert [url for url in requested if not url.startswith("file://") and not CHROMIUM_OWN.match(url)] == []
    assert shot.stat().st_size > 10_000


def test_a_run_is_read_back_as_its_attempts_hold_it_when_its_batch_was_kept_by_another_parse(dbcli, tmp_path):
    """run_decisions takes a claim's fields from its batch as parsed at submit, which is what the
    run copied into the attempts; a batch kept by another PARSE_VERSION is parsed again when read,
    perhaps differently, so then the attempts' own copies are read. Here the batch is rewritten as
    an older version kept it (no parsed fields) with one posted provider id changed: the remittance
    still names the provider the attempt holds."""
    import io

    from sqlalchemy import select, update

    from worker.store import schema as t
    from worker.store.database import make_engine

    engine = make_engine(dbcli.db)
    try:
        with engine.begin() as conn:
            before = repo.run_decisions(conn, 1)
            batch_id, payload = conn.execute(select(t.batch_payloads.c.batch_id, t.batch_payloads.c.payload)).one()
            stored = pl.read_parquet(io.BytesIO(payload))
            older = stored.select(pl.exclude(f"^{repo.PARSED.replace('.', '[.]')}.*$")).with_columns(
                provider_id=pl.when(pl.col("provider_id") == "P1").then(pl.lit("PX")).otherwise(pl.col("provider_id")))
            assert older.width < stored.width and (older.get_column("provider_id") == "PX").any()
            kept = io.BytesIO()
            older.write_parquet(kept)
            conn.execute(update(t.batch_payloads).where(t.batch_payloads.c.batch_id == batch_id)
                         .values(payload=kept.getvalue()))
        with engine.connect() as conn:
            after = repo.run_decisions(conn, 1)
            reparsed = repo.payloads(conn, [batch_id], parsed=True)
    finally:
        engine.dispose()
    assert (reparsed.get_column("provider_id") == "PX").any()  # a parse now would say PX
    assert after.equals(before) and (after.get_column("provider_id") == "P1").any()
    out = tmp_path / "again"
    dbcli("remittance", "1", "--format", "x12", "--operator", "ann", "--output", out)
    assert (out / "run-1-provider-P1.835").exists() and not (out / "run-1-provider-PX.835").exists()
