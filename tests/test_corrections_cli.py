"""Received dates, provider enrollment, replacements and voids, and the new reference load rules,
through the real command line (SQLite)."""

from __future__ import annotations

import csv
import io
import shutil
from decimal import Decimal

from conftest import FIXTURES
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
