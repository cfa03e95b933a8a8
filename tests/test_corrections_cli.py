"""Received dates, provider enrollment, replacements and voids, and the new reference load rules,
through the real command line (SQLite)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from decimal import Decimal

from conftest import FIXTURES, ROOT
from remit_helpers import balances
from test_cli import write

HEADER = ("claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,"
          "units,billed_rate,frequency,original_claim_id\n")


def test_received_dates_enrollment_and_corrections(ready, tmp_path):
    reference = tmp_path / "ref"
    reference.mkdir()
    write(reference / "providers.csv", "provider_id,name,kind,start_date,end_date\nP3,Provider Three,psw,,2026-03-01\n")
    ready("reference", "load", reference)
    claims = write(tmp_path / "claims.csv", HEADER + "\n".join([
        "K1,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,,,",
        "K2,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,13:00,4,,1,",
        "K3,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,11:00,2,,7,K1",  # replaces K1: 2 hours, not 4
        "K4,xyz0000a,P1,,,,,,,,,8,K2",  # voids K2 (a void needs only five fields)
        "K5,xyz0000a,P1,,,,,,,,,8,K2",  # K2 is reversed already
        "K6,xyz0000a,P3,,OR526,ZE,2026-03-02,10:00,12:00,2,,,",  # P3's enrollment ended on 2026-03-01
        "K7,xyz0000a,P1,,OR526,NA,2026-03-09,09:00,10:00,1,,,",  # after the received date
    ]) + "\n")
    batch = ready("submit", claims, "--received", "2026-03-08").out.strip()
    ack = ready("ack", batch, "--format", "json").out
    assert '"received_date": "2026-03-08"' in ack
    summary = ready("run").out
    assert "7 claims, 3 paid, 1 suspended, 2 rejected, 1 void, amount paid 175.30, amount reversed 140.24" in summary
    [record] = list(csv.DictReader(io.StringIO(ready("runs", "--format", "csv").out)))
    assert (record["voids"], record["amount_paid"], record["amount_reversed"]) == ("1", "175.30", "140.24")
    rows = {r["claim_id"]: r for r in ready("outcomes", "--format", "csv").rows()}
    # The paying attempts name what reversed them; the replacement and the void name what they adjust.
    assert {k: (r["adjusts"], r["reversed_by"]) for k, r in rows.items() if k in ("K1", "K2", "K3", "K4")} == {
        "K1": ("", "K3"), "K2": ("", "K4"), "K3": ("K1", ""), "K4": ("K2", "")}
    got = {k: (r["status"], r["reasons"], r["carc"], r["spa_id"], r["paid_amount"]) for k, r in rows.items()}
    # The 835: the replacement pays, the two originals come back as reversals (CLP02 22); BPR02 nets them.
    ready("remittance", "1", "--format", "x12", "--provider", "P1", "--operator", "ann", "--output", tmp_path / "r")
    figures = balances((tmp_path / "r" / "run-1-provider-P1.835").read_text())
    assert sorted(c["id"] for c in figures["claims"] if c["status"] == "22") == ["K1", "K2"]
    assert figures["bpr02"] + figures["plb"] == Decimal("35.06")  # 175.30 paid - 140.24 reversed
    assert got == {
        "K1": ("paid", "", "", "A", "70.12"),
        "K2": ("paid", "", "", "A", "70.12"),
        "K3": ("paid", "", "", "A", "35.06"),
        "K4": ("void", "", "", "A", "0.00"),
        "K5": ("rejected", "INVALID_ADJUSTMENT", "129", "", "0.00"),
        "K6": ("suspended", "PROVIDER_NOT_ENROLLED", "B7", "B", "0.00"),
        "K7": ("rejected", "FUTURE_SERVICE_DATE", "110", "", "0.00"),
    }

    late = write(tmp_path / "late.csv", HEADER + "L1,xyz0000a,P1,,OR526,NA,2026-03-20,09:00,10:00,1,,,\n")
    ready("submit", late, "--received", "2027-03-21")  # 366 days after the service date
    ready("run")
    rows = {r["claim_id"]: r for r in ready("outcomes", "--format", "csv").rows()}
    assert (rows["L1"]["status"], rows["L1"]["reasons"], rows["L1"]["carc"]) == ("suspended", "TIMELY_FILING", "29")

    # What one run decided, whatever later runs decided: K6 is re-queued and decided again by run 3.
    ready("requeue", "--claim", "K6", "--note", "enrollment checked")
    ready("run")
    of_run = {run: [(r["claim_id"], r["status"], r["attempt"]) for r in ready("outcomes", "--run", run).rows()]
              for run in ("1", "2", "3")}
    assert of_run == {"1": [(k, got[k][0], "1") for k in sorted(got)], "2": [("L1", "suspended", "1")],
                      "3": [("K6", "suspended", "2")]}
    assert ready("outcomes", "--run", "1", "--status", "void").rows()[0]["claim_id"] == "K4"
    for missing in ("4", "0", "99999999999"):
        refused = ready("outcomes", "--run", missing, ok=False)
        assert (refused.code, refused.err.strip()) == (
            1, f"error: no run {missing} that stored outcomes (adjudicate runs lists them)")


def test_a_spa_outside_its_plan_is_refused_by_the_load(cli, tmp_path):
    cli("db", "upgrade")
    folder = tmp_path / "ref"
    shutil.copytree(FIXTURES / "worked_example", folder)
    spas = (folder / "spas.csv").read_text().replace("B,POC1,P3,SE49,OR526,ZE,2026-01-01",
                                                     "B,POC1,P3,SE49,OR526,ZE,2025-12-01")
    write(folder / "spas.csv", spas)
    refused = cli("reference", "load", folder, ok=False)
    assert refused.code == 1
    assert refused.err.strip() == ("error: spas.csv line 3, field start_date: SPA B is not inside the dates of its "
                                   "plan POC1")


def claims_file(folder, name: str, *lines: str):
    return write(folder / name, HEADER + "\n".join(lines) + "\n")


def latest(cli) -> dict[str, dict]:
    return {r["claim_id"]: r for r in cli("outcomes", "--format", "csv").rows()}


def decided(row: dict) -> tuple:
    return row["status"], row["reasons"], row["carc"], row["spa_id"], row["paid_amount"]


def test_a_received_date_after_today_is_taken_with_a_warning(ready, tmp_path):
    """Taken (the SPEC allows any received date), but said: FUTURE_SERVICE_DATE then admits services
    up to that day. Submitting the same content again changes nothing, and warns of nothing."""
    later = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    soon = claims_file(tmp_path, "soon.csv", "S1,xyz0000a,P1,,OR526,NA,2026-03-20,09:00,10:00,1,,,")
    first = ready("submit", soon, "--received", later)
    assert f"warning: the received date {later} is after today" in first.err
    [ack] = [r for r in ready("ack", first.out.strip(), "--format", "csv").rows() if r["kind"] == "batch"]
    assert ack["received_date"] == later
    again = ready("submit", soon, "--received", later)
    assert "warning" not in again.err and "already submitted" in again.err


def test_timely_filing_counts_from_the_received_date_also_on_requeue_and_override_waives_it(ready, tmp_path):
    """365 days before the received date is in time, 366 late; a re-queue keeps the batch's received
    date (today would be in time); an override waiving TIMELY_FILING re-queues the claim, and it pays."""
    late = claims_file(tmp_path, "late.csv", "L1,xyz0000a,P1,,OR526,NA,2026-03-20,09:00,10:00,1,,,",
                       "L2,xyz0000a,P1,,OR526,NA,2026-03-21,09:00,10:00,1,,,")
    batch = ready("submit", late, "--received", "2027-03-21").out.strip()
    [ack] = [r for r in ready("ack", batch, "--format", "csv").rows() if r["kind"] == "batch"]
    assert ack["received_date"] == "2027-03-21"
    assert "2 claims, 1 paid, 1 suspended, 0 rejected, amount paid 17.53" in ready("run").out
    assert decided(latest(ready)["L1"]) == ("suspended", "TIMELY_FILING", "29", "A", "0.00")
    assert decided(latest(ready)["L2"]) == ("paid", "", "", "A", "17.53")
    ready("requeue", "--claim", "L1", "--note", "asked again")
    assert "1 claims, 0 paid, 1 suspended" in ready("run").out
    assert decided(latest(ready)["L1"]) == ("suspended", "TIMELY_FILING", "29", "A", "0.00")
    ready("override", "L1", "--waive", "TIMELY_FILING", "--note", "good cause: the office was closed")
    assert "1 claims, 1 paid, 0 suspended, 0 rejected, amount paid 17.53" in ready("run").out
    history = [(r["claim_id"], r["attempt"], r["status"], r["reasons"])
               for r in ready("outcomes", "--history", "--claim", "L1", "--format", "csv").rows()]
    assert history == [("L1", "1", "suspended", "TIMELY_FILING"), ("L1", "2", "suspended", "TIMELY_FILING"),
                       ("L1", "3", "paid", "")]


def test_provider_enrollment_at_both_boundaries(ready, tmp_path):
    """Enrolled from start_date to end_date, both days included; an unknown provider is not enrolled;
    a reload of the provider open-ended and a re-queue by reason pays the claims it held."""
    reference = tmp_path / "ref"
    reference.mkdir()
    write(reference / "providers.csv", "provider_id,name,kind,start_date,end_date\nP3,Provider Three,psw,2026-03-02,"
                                       "2026-03-04\n")
    ready("reference", "load", reference)
    claims = claims_file(tmp_path, "claims.csv", *[
        f"E{day},xyz0000a,P3,,OR526,ZE,2026-03-0{day},10:00,12:00,2,,," for day in (1, 2, 4, 5)],
        "E9,xyz0000a,P7,,OR526,ZE,2026-03-03,10:00,12:00,2,,,")
    ready("submit", claims, "--received", "2026-03-31")
    ready("run")
    rows = latest(ready)
    assert {k: decided(r) for k, r in rows.items()} == {
        "E1": ("suspended", "PROVIDER_NOT_ENROLLED", "B7", "B", "0.00"),
        "E2": ("paid", "", "", "B", "35.06"),
        "E4": ("paid", "", "", "B", "35.06"),
        "E5": ("suspended", "PROVIDER_NOT_ENROLLED", "B7", "B", "0.00"),
        "E9": ("suspended", "NO_ACTIVE_SPA;PROVIDER_NOT_ENROLLED", "197;B7", "", "0.00"),
    }
    write(reference / "providers.csv", "provider_id,name,kind,start_date,end_date\nP3,Provider Three,psw,,\n")
    ready("reference", "load", reference)
    ready("requeue", "--reason", "PROVIDER_NOT_ENROLLED", "--note", "enrollment corrected")
    assert "3 claims, 2 paid, 1 suspended" in ready("run").out
    assert [latest(ready)[k]["status"] for k in ("E1", "E5", "E9")] == ["paid", "paid", "suspended"]


def test_a_spa_counts_only_under_an_accepted_plan(ready, tmp_path):
    reference = tmp_path / "ref"
    reference.mkdir()
    write(reference / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                                   "POC2,xyz0000a,2026-01-01,2026-12-31,draft,300\n")
    write(reference / "spas.csv", (FIXTURES / "worked_example" / "spas.csv").read_text().splitlines()[0] + "\n"
          "Q,POC2,P3,SE49,OR526,NA,2026-01-01,2026-12-31,100,month,20.00,accepted\n")
    ready("reference", "load", reference)
    ready("submit", claims_file(tmp_path, "claims.csv", "N1,xyz0000a,P3,,OR526,NA,2026-03-02,10:00,12:00,2,,,"),
          "--received", "2026-03-31")
    ready("run")
    assert decided(latest(ready)["N1"]) == ("suspended", "NO_ACTIVE_SPA", "197", "", "0.00")
    # The draft plan accepted (and the one it overlaps closed): the same SPA pays.
    write(reference / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                                   "POC1,xyz0000a,2026-01-01,2026-12-31,closed,300\n"
                                   "POC2,xyz0000a,2026-01-01,2026-12-31,accepted,300\n")
    (reference / "spas.csv").unlink()
    ready("reference", "load", reference)
    ready("requeue", "--claim", "N1", "--note", "plan accepted")
    ready("run")
    assert decided(latest(ready)["N1"]) == ("paid", "", "", "Q", "40.00")


SPAS_HEADER = ("spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,end_date,units,"
               "unit_period,rate,status\n")


def test_in_home_and_residential_spas_may_overlap_only_on_moving_day(ready, tmp_path):
    """A load accepts an in-home SPA ending on the day a residential one starts, and an in-home claim
    of moving day pays; it refuses, naming file, line and field and changing nothing, a two-day
    overlap, a residential SPA ending on the day an in-home one starts, and a SPA past its plan."""
    moving = tmp_path / "moving"
    moving.mkdir()
    write(moving / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                                "POC9,abc0000b,2026-01-01,2026-12-31,accepted,300\n")
    write(moving / "enrollments.csv", "client_prime,cme_id,start_date,end_date\nabc0000b,CME01,2026-01-01,2026-12-31\n")
    write(moving / "spas.csv", SPAS_HEADER + "H,POC9,P1,SE49,OR526,NA,2026-01-01,2026-03-15,250,month,17.53,accepted\n"
                                             "S,POC9,P1,SE50,OR542,,2026-03-15,2026-12-31,31,month,150.00,accepted\n")
    assert "spas.csv: 2 rows" in ready("reference", "load", moving).out

    def refused(spas: str, line: int, field: str, message: str) -> None:
        folder = tmp_path / "refused"
        folder.mkdir(exist_ok=True)
        write(folder / "providers.csv", "provider_id,name,kind\nP8,Provider Eight,psw\n")
        write(folder / "spas.csv", SPAS_HEADER + spas)
        result = ready("reference", "load", folder, ok=False)
        assert result.code == 1 and len(result.err.strip().splitlines()) == 1
        assert result.err.startswith(f"error: spas.csv line {line}, field {field}: {message}"), result.err

    overlap = "accepted in-home and residential SPAs of one client overlap (H)"
    refused("S,POC9,P1,SE50,OR542,,2026-03-14,2026-12-31,31,month,150.00,accepted\n", 2, "start_date", overlap)
    refused("H2,POC9,P1,SE151,OR526,ZE,2026-12-31,2026-12-31,8,day,17.53,accepted\n", 2, "start_date",
            "accepted in-home and residential SPAs of one client overlap (S)")
    refused("X,POC9,P1,SE49,OR526,ZE,2026-06-01,2027-01-31,8,day,17.53,accepted\n", 2, "end_date",
            "SPA X is not inside the dates of its plan POC9")
    claims = claims_file(tmp_path, "claims.csv", "M1,abc0000b,P1,,OR526,NA,2026-03-15,09:00,11:00,2,,,",
                         "M2,abc0000b,P1,,OR526,NA,2026-03-16,09:00,11:00,2,,,",
                         "M3,abc0000b,P8,,OR542,,2026-03-16,,,1,,,")
    ready("submit", claims, "--received", "2026-03-31")
    ready("run")
    assert {k: decided(r) for k, r in latest(ready).items()} == {
        "M1": ("paid", "", "", "H", "35.06"),  # in-home, on moving day
        "M2": ("suspended", "NO_ACTIVE_SPA", "197", "", "0.00"),  # the in-home SPA ended
        "M3": ("suspended", "NO_ACTIVE_SPA;PROVIDER_NOT_ENROLLED", "197;B7", "", "0.00"),  # P8 was not loaded
    }


def test_accepting_a_plan_whose_stored_spas_overlap_in_home_and_residential_is_refused(ready, tmp_path):
    """Under a draft plan overlapping in-home and residential SPAs load (they are not in force); a
    later load of plans.csv alone that accepts the plan is refused, naming it, and changes nothing."""
    draft = tmp_path / "draft"
    draft.mkdir()
    write(draft / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                               "POC9,abc0000b,2026-01-01,2026-12-31,draft,300\n")
    write(draft / "spas.csv", SPAS_HEADER + "H,POC9,P1,SE49,OR526,NA,2026-01-01,2026-06-30,250,month,17.53,accepted\n"
                                            "S,POC9,P1,SE50,OR542,,2026-03-01,2026-12-31,31,month,150.00,accepted\n")
    ready("reference", "load", draft)
    accepting = tmp_path / "accepting"
    accepting.mkdir()
    write(accepting / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                                   "POC9,abc0000b,2026-01-01,2026-12-31,accepted,300\n")
    result = ready("reference", "load", accepting, ok=False)
    assert result.code == 1 and result.err.strip() == (
        "error: plans.csv line 2, field status: plan POC9 would put in force in-home and residential SPAs of one "
        "client that overlap (H, S)")
    ready("submit", claims_file(tmp_path, "claims.csv", "M1,abc0000b,P1,,OR526,NA,2026-03-16,09:00,11:00,2,,,"),
          "--received", "2026-03-31")
    ready("run")
    status, reasons = decided(latest(ready)["M1"])[:2]
    assert status == "suspended" and reasons.startswith("NO_ACTIVE_PLAN;")  # the plan is still a draft


def test_a_chain_of_replacements_ends_in_a_void_and_each_run_reports_what_it_reversed(ready, tmp_path):
    def run_batch(name: str, *lines: str) -> str:
        ready("submit", claims_file(tmp_path, name, *lines), "--received", "2026-03-31")
        return ready("run").out

    assert "1 claims, 1 paid, 0 suspended, 0 rejected, amount paid 70.12, amount reversed 0.00" in run_batch(
        "1.csv", "C1,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,13:00,4,,,")
    assert "1 claims, 1 paid, 0 suspended, 0 rejected, amount paid 52.59, amount reversed 70.12" in run_batch(
        "2.csv", "C2,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,12:00,3,,7,C1")
    third = run_batch("3.csv", "C3,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,11:00,2,,7,C2",
                      "C4,xyz0000a,P1,,,,,,,,,8,C3",
                      "C5,xyz0000a,P1,,,,,,,,,8,C1",  # reversed two runs ago
                      "C6,xyz0000a,P1,,OR526,NA,2026-03-03,09:00,11:00,2,,7,C2",  # reversed by C3
                      "C1,xyz0000a,P1,,OR526,NA,2026-03-04,09:00,10:00,1,,,")  # a reversed claim keeps its id
    assert "5 claims, 1 paid, 0 suspended, 3 rejected, 1 void, amount paid 35.06, amount reversed 87.65" in third
    runs = csv.DictReader(io.StringIO(ready("runs", "--format", "csv").out))  # newest first
    assert [(r["amount_paid"], r["amount_reversed"]) for r in runs] == [("35.06", "87.65"), ("52.59", "70.12"),
                                                                        ("70.12", "0.00")]
    history = ready("outcomes", "--history", "--format", "csv").rows()
    assert [(r["claim_id"], r["status"], r["reasons"], r["spa_id"], r["paid_amount"], r["adjusts"], r["reversed_by"])
            for r in history] == [
        ("C1", "paid", "", "A", "70.12", "", "C2"),
        ("C2", "paid", "", "A", "52.59", "C1", "C3"),
        ("C3", "paid", "", "A", "35.06", "C2", "C4"),
        ("C4", "void", "", "A", "0.00", "C3", ""),
        ("C5", "rejected", "INVALID_ADJUSTMENT", "", "0.00", "", ""),
        ("C6", "rejected", "INVALID_ADJUSTMENT", "", "0.00", "", ""),
        ("C1", "rejected", "DUPLICATE_CLAIM_ID", "", "0.00", "", ""),
    ]


def test_a_suspended_replacement_keeps_its_reversal_and_its_requeue_reverses_nothing_again(ready, tmp_path):
    """Also the adjustments refused (INVALID_ADJUSTMENT: another provider or client, a suspended or
    unknown original) and the frequency record checks."""
    ready("submit", claims_file(tmp_path, "1.csv", "R1,xyz0000a,P1,,OR526,NA,2026-03-05,09:00,13:00,4,,,",
                                "R2,xyz0000a,P1,,OR526,NA,2026-03-05,14:00,16:00,2,,,",
                                "R3,xyz0000a,P3,,OR526,ZE,2026-03-06,10:00,12:00,2,,,",
                                "R4,xyz0000a,P1,,OR526,NA,2026-03-05,12:00,14:00,2,,,"), "--received", "2026-03-31")
    assert "4 claims, 3 paid, 1 suspended" in ready("run").out
    ready("submit", claims_file(tmp_path, "2.csv",
                                "R5,xyz0000a,P1,,OR526,NA,2026-03-05,13:00,15:00,2,,7,R1",  # overlaps R2
                                "R6,xyz0000a,P1,,,,,,,,,8,R3",  # R3 is P3's
                                "R7,abc0000a,P3,,,,,,,,,8,R3",  # and xyz0000a's
                                "R8,xyz0000a,P1,,,,,,,,,8,R4",  # suspended
                                "R9,xyz0000a,P1,,,,,,,,,8,R404",  # unknown
                                "R10,xyz0000a,P1,,,,,,,,,8,R2",
                                "R11,xyz0000a,P1,,OR526,NA,2026-03-07,09:00,10:00,1,,5,",
                                "R12,xyz0000a,P1,,OR526,NA,2026-03-07,09:00,10:00,1,,7,",
                                "R13,xyz0000a,P1,,OR526,NA,2026-03-07,09:00,10:00,1,,1,R1"), "--received", "2026-03-31")
    assert ("9 claims, 0 paid, 1 suspended, 7 rejected, 1 void, amount paid 0.00, amount reversed 105.18"
            in ready("run").out)
    rows = latest(ready)
    assert {k: decided(r) + (r["adjusts"], r["reversed_by"], r["conflicts_with"]) for k, r in rows.items()} == {
        "R1": ("paid", "", "", "A", "70.12", "", "R5", ""),
        "R2": ("paid", "", "", "A", "35.06", "", "R10", ""),
        "R3": ("paid", "", "", "B", "35.06", "", "", ""),
        "R4": ("suspended", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "B20;18", "A", "0.00", "", "", "R1"),
        "R5": ("suspended", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "B20;18", "A", "0.00", "R1", "", "R2"),
        **{k: ("rejected", "INVALID_ADJUSTMENT", "129", "", "0.00", "", "", "") for k in ("R6", "R7", "R8", "R9")},
        "R10": ("void", "", "", "A", "0.00", "R2", "", ""),
        "R11": ("rejected", "INVALID_RECORD:frequency", "16", "", "0.00", "", "", ""),
        "R12": ("rejected", "INVALID_RECORD:original_claim_id", "16", "", "0.00", "", "", ""),
        "R13": ("rejected", "INVALID_RECORD:original_claim_id", "16", "", "0.00", "", "", ""),
    }
    ready("requeue", "--claim", "R5", "--note", "R2 was voided")
    assert "1 claims, 1 paid, 0 suspended, 0 rejected, amount paid 35.06, amount reversed 0.00" in ready("run").out
    rows = latest(ready)
    assert decided(rows["R5"]) + (rows["R5"]["adjusts"], rows["R5"]["attempt"]) == ("paid", "", "", "A", "35.06",
                                                                                    "R1", "2")
    assert rows["R1"]["reversed_by"] == "R5"


def test_reasons_are_listed_in_the_order_of_the_edit_table(ready, tmp_path):
    """Every edit failing at once, over two claims: the first five on a claim of nobody's, the rest on
    a claim that repeats a paid one after the reference changed (enrollment ended, SPA units and
    monthly hours cut) in a batch received late."""
    ready("submit", claims_file(tmp_path, "1.csv", "O1,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,,,"),
          "--received", "2026-03-31")
    ready("run")
    reference = tmp_path / "ref"
    reference.mkdir()
    write(reference / "providers.csv", "provider_id,name,kind,start_date,end_date\nP1,Provider One,psw,,2026-03-01\n")
    write(reference / "plans.csv", "plan_id,client_prime,start_date,end_date,status,monthly_hours\n"
                                   "POC1,xyz0000a,2026-01-01,2026-12-31,accepted,6\n")
    write(reference / "spas.csv",
          SPAS_HEADER + "A,POC1,P1,SE49,OR526,NA,2026-01-01,2026-12-31,6,month,17.53,accepted\n")
    ready("reference", "load", reference)
    ready("submit", claims_file(tmp_path, "2.csv", "O2,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,13:00,4,,,",
                                "U1,nobody0a,P7,,OR526,NA,2026-03-02,09:00,13:00,4,,,"), "--received", "2027-03-03")
    ready("run")
    rows = latest(ready)
    assert (rows["U1"]["reasons"], rows["U1"]["carc"]) == (
        "NO_ACTIVE_PLAN;NO_CM_ENROLLMENT;NO_ACTIVE_SPA;PROVIDER_NOT_ENROLLED;TIMELY_FILING", "197;177;197;B7;29")
    assert (rows["O2"]["reasons"], rows["O2"]["carc"], rows["O2"]["conflicts_with"]) == (
        "PROVIDER_NOT_ENROLLED;TIMELY_FILING;UNITS_EXCEED_SPA;MONTHLY_HOURS_EXCEEDED;DUPLICATE_SERVICE;"
        "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "B7;29;198;119;18;B20;18", "O1")


def test_the_rules_file_sets_timely_filing_days_and_the_in_home_and_residential_lists(ready, tmp_path):
    text = (ROOT / "adjudication" / "default_rules.toml").read_text()
    for default, deployed in (("timely_filing_days = 365", "timely_filing_days = 30"),
                              ('residential_service_elements = ["SE50", "SE158"]',
                               'residential_service_elements = ["SE158"]')):
        assert default in text
        text = text.replace(default, deployed)
    rules = write(tmp_path / "rules.toml", text)
    reference = tmp_path / "ref"
    reference.mkdir()
    # A SE50 SPA over the whole year of the worked example's SE49 SPAs.
    write(reference / "spas.csv",
          SPAS_HEADER + "B2,POC1,P3,SE50,OR542,,2026-01-01,2026-12-31,31,month,150.00,accepted\n")
    assert ready("reference", "load", reference, ok=False).code == 1  # SE50 is residential by default
    ready("--rules", rules, "reference", "load", reference)  # not in this deployment
    claims = claims_file(tmp_path, "c.csv", "T1,xyz0000a,P1,,OR526,NA,2026-03-01,09:00,10:00,1,,,",
                         "T2,xyz0000a,P1,,OR526,NA,2026-03-02,09:00,10:00,1,,,")
    ready("--rules", rules, "submit", claims, "--received", "2026-04-01")  # 31 and 30 days later
    ready("--rules", rules, "run")
    rows = latest(ready)
    assert (decided(rows["T1"]), decided(rows["T2"])) == (("suspended", "TIMELY_FILING", "29", "A", "0.00"),
                                                          ("paid", "", "", "A", "17.53"))
