"""The remittance builders on synthetic frames (reversals included, which runs do not store yet):
every 835 passes pyx12 and balances, and the readable forms carry the same amounts."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from adjudication import remittance as rem
from adjudication import run_report
from remit_helpers import PAYER, balances, segments, validate_835
from worker.store.repository import DECISION_SCHEMA, NET_SCHEMA, REVERSAL_SCHEMA

RUN = rem.RunInfo(7, dt.datetime(2026, 3, 3, 1, 2, tzinfo=dt.timezone.utc))
NAMES = pl.DataFrame({"provider_id": ["P1", "P2"], "name": ["Provider One", "Provider Two"]})
DAY = dt.date(2026, 3, 2)


def decision(claim_id, provider="P1", status="paid", units=40000, rate=None, paid=None, reasons=(), carc=(),
             adjusts=None, procedure="OR526", modifier="NA"):
    spa_rate = 175300
    paid_cents = (units * min(rate or spa_rate, spa_rate) + 500_000) // 1_000_000 if status == "paid" else 0
    return dict(claim_id=claim_id, batch_id="B1", line=2, status=status, reasons=list(reasons), carc=list(carc),
                spa_id="S", paid_units_s=units if status == "paid" else 0,
                paid_cents=paid_cents if paid is None else paid, billed_rate_s=rate, units_s=units,
                provider_id=provider, client_prime="xyz0000a", procedure_code=procedure, modifier=modifier,
                service_date=DAY, adjusts=adjusts,
                first_suspended=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) if status == "suspended" else None)


def reversal(claim_id, reversed_by, provider="P1", units=40000, rate=None, paid=7012):
    return dict(claim_id=claim_id, reversed_by=reversed_by, provider_id=provider, client_prime="xyz0000a",
                procedure_code="OR526", modifier="NA", service_date=DAY - dt.timedelta(days=30), paid_units_s=units,
                paid_cents=paid, billed_rate_s=rate, units_s=units)


def build(decisions: list[dict], reversals: list[dict] = (), history: list[tuple[int, str, int]] = (),
          run: rem.RunInfo = RUN) -> dict[str, str]:
    """The run's 835s; history: the earlier runs' nets (run_id, provider_id, net_cents)."""
    lines = rem.claim_lines(pl.DataFrame(decisions, schema=DECISION_SCHEMA).lazy(),
                            pl.DataFrame(list(reversals), schema=REVERSAL_SCHEMA).lazy())
    adjustments = rem.balance_forward(pl.DataFrame(list(history), schema=NET_SCHEMA, orient="row"), run.run_id,
                                      rem.provider_totals(lines).select("provider_id", "net_cents").collect())
    return dict(rem.x12_835(lines, NAMES, PAYER, run, adjustments).iter_rows())


def test_paid_claims_and_a_billed_rate_above_the_spa_rate():
    files = build([decision("A1", rate=200000), decision("A2"), decision("A3", status="suspended",
                                                                        reasons=["OVERLAP_DUPLICATE"], carc=["B20"]),
                   decision("A4", provider="P2", procedure="T1016", modifier="", units=20000)])
    assert sorted(files) == ["P1", "P2"]
    assert validate_835(files["P1"]) == []
    figures = balances(files["P1"])
    assert [c["id"] for c in figures["claims"]] == ["A1", "A2"]  # the suspended claim is not in the 835
    assert figures["bpr02"] == Decimal("140.24") and figures["plb"] == 0
    # 4 h billed at 20.00 (80.00) paid at the SPA's 17.53 (70.12): CO-45 of 9.88.
    assert ["CAS", "CO", "45", "9.88"] in segments(files["P1"])
    assert ["SVC", "HC:OR526:NA", "80", "70.12", "", "4"] in segments(files["P1"])
    assert ["DTM", "472", "20260302"] in segments(files["P1"])
    assert ["TRN", "1", "7-P1", "1930000000"] in segments(files["P1"])
    assert ["SVC", "HC:T1016", "35.06", "35.06", "", "2"] in segments(files["P2"])
    assert validate_835(files["P2"]) == []


def test_ids_an_835_cannot_hold_are_found_before_it_is_made():
    """Each limit x12_unfit keeps is one pyx12 enforces: the 835 made anyway fails it; and a provider
    id too long for ISA08 fits once a receiver id is configured."""
    import dataclasses

    long_provider, longer_provider = "PROVIDER3LONGID12345", "Q" * 49
    cases = {"P1": decision("C" * 39), "P2": decision("A2", provider="P2", modifier="N:A"),
             long_provider: decision("A3", provider=long_provider), "P4": decision("A4", provider="P4"),
             "P5": decision("A5", provider="P5", procedure="T" * 49), "6": decision("A6", provider="6"),
             longer_provider: decision("A7", provider=longer_provider)}
    lines = rem.claim_lines(pl.DataFrame(list(cases.values()), schema=DECISION_SCHEMA).lazy(),
                            pl.DataFrame(schema=REVERSAL_SCHEMA).lazy())
    receiver = dataclasses.replace(PAYER, receiver_id="CLEARINGHOUSE")
    unfit = dict(rem.x12_unfit(lines, receiver, RUN.run_id).iter_rows())
    assert unfit == {"P1": "CLP01 (claim_id over 38 characters)", "P2": "SVC01-3 (modifier over 2 characters)",
                     "P5": "SVC01-2 (procedure_code over 48 characters)", "6": "N104 (provider_id under 2 characters)",
                     longer_provider: "TRN02 (run and provider_id over 50 characters)"}
    # Without a receiver id, the provider's id is the receiver's: 15 characters at most.
    assert dict(rem.x12_unfit(lines, PAYER, RUN.run_id).iter_rows())[long_provider] == (
        "ISA08 (provider_id over 15 characters, and no ADJUDICATION_REMIT_RECEIVER_ID)")
    # Each is a limit pyx12 enforces: the 835 made anyway fails; the others pass, a 70-character
    # payee name cut to N102's 60.
    names = pl.DataFrame({"provider_id": list(cases), "name": ["N" * 70] * len(cases)})
    adjustments = rem.balance_forward(pl.DataFrame(schema=NET_SCHEMA), RUN.run_id,
                                      rem.provider_totals(lines).select("provider_id", "net_cents").collect())
    made = dict(rem.x12_835(lines, names, receiver, RUN, adjustments).iter_rows())
    for provider in cases:
        assert (validate_835(made[provider]) != []) == (provider in unfit), provider
    assert ["N1", "PE", "N" * 60, "FI", "P4"] in segments(made["P4"])
    assert validate_835(build([cases[long_provider]])[long_provider]) != []  # ISA08 without a receiver id


def test_a_claim_id_the_835_would_alter_gets_no_835():
    """A delimiter or a character outside printable ASCII in a claim id would reach CLP01 as '?': a
    valid 835 whose claim the provider cannot find. Such a provider gets none (its CSV has the claim)."""
    cases = {"P1": decision("@SUM~1*2:3"), "P2": decision("A2^x", provider="P2"),
             "P3": decision("Ä1", provider="P3"), "P4": decision("A-4 .5/6", provider="P4"),
             "P:5": decision("A5", provider="P:5")}
    lines = rem.claim_lines(pl.DataFrame(list(cases.values()), schema=DECISION_SCHEMA).lazy(),
                            pl.DataFrame(schema=REVERSAL_SCHEMA).lazy())
    unfit = dict(rem.x12_unfit(lines, PAYER, RUN.run_id).iter_rows())
    assert unfit.pop("P:5").startswith("N104 (provider_id holds")
    assert set(unfit) == {"P1", "P2", "P3"} and all(e.startswith("CLP01 (claim_id holds") for e in unfit.values())


def test_reversals_and_a_negative_net_carried_in_plb():
    files = build([decision("R1", adjusts="O1", units=20000)], [reversal("O1", "R1", rate=200000),
                                                                 reversal("O2", "V2", paid=3506, units=20000)])
    text = files["P1"]
    assert validate_835(text) == []
    figures = balances(text)
    assert [(c["id"], c["status"]) for c in figures["claims"]] == [("O1", "22"), ("O2", "22"), ("R1", "1")]
    assert figures["net"] == Decimal("35.06") - Decimal("70.12") - Decimal("35.06")
    assert figures["bpr02"] == 0 and figures["plb"] == figures["net"]
    assert ["CLP", "O1", "22", "-80", "-70.12", "", "MC", "O1"] in segments(text)
    assert ["CAS", "CO", "45", "-9.88"] in segments(text)
    assert ["PLB", "P1", "20261231", "FB:7-P1", "-70.12"] in segments(text)
    assert ["BPR", "H", "0", "C", "NON"] == segments(text)[3][:5]


def test_a_balance_forward_is_recovered_in_the_next_runs_with_a_positive_net():
    # Run 3 took back 100.00 more than it paid P1, run 5 another 50.00; P2 owes nothing.
    history = [(3, "P1", -10000), (4, "P1", 0), (5, "P1", -5000), (5, "P2", 2000)]
    later = rem.RunInfo(8, RUN.finished_at)
    text = build([decision("A1"), decision("A2", provider="P2")], history=history, run=later)["P1"]
    assert validate_835(text) == []
    figures = balances(text)  # BPR02 = sum(CLP04) - sum(PLB04)
    assert figures["net"] == Decimal("70.12") and figures["plb"] == Decimal("70.12") and figures["bpr02"] == 0
    assert ["PLB", "P1", "20261231", "FB:3-P1", "70.12"] in segments(text)
    assert ["BPR", "H", "0", "C", "NON"] == segments(text)[3][:5]
    assert "PLB" not in build([decision("A2", provider="P2")], history=history, run=later)["P2"]

    # The next run recovers what is left of run 3's balance, then run 5's: oldest first, in one PLB.
    history.append((8, "P1", 7012))
    text = build([decision("A3", units=200000)], history=history, run=rem.RunInfo(9, RUN.finished_at))["P1"]
    assert validate_835(text) == []
    figures = balances(text)
    assert figures["net"] == Decimal("350.60") and figures["bpr02"] == Decimal("350.60") - Decimal("79.88")
    assert [s for s in segments(text) if s[0] == "PLB"] == [["PLB", "P1", "20261231", "FB:3-P1", "29.88",
                                                             "FB:5-P1", "50"]]
    assert segments(text)[3][:3] == ["BPR", "I", "270.72"]


def test_a_negative_net_adds_to_the_balance_and_a_small_net_recovers_part_of_it():
    adjustments = rem.balance_forward(pl.DataFrame([(1, "P1", -5000), (2, "P1", 1000)], schema=NET_SCHEMA,
                                                   orient="row"), 3,
                                      pl.DataFrame({"provider_id": ["P1", "P2"], "net_cents": [-700, -1]}))
    assert adjustments.rows() == [("P1", 3, -700), ("P2", 3, -1)]
    adjustments = rem.balance_forward(pl.DataFrame([(1, "P1", -5000), (2, "P1", 1000), (3, "P1", -700)],
                                                   schema=NET_SCHEMA, orient="row"), 4,
                                      pl.DataFrame({"provider_id": ["P1"], "net_cents": [4500]}))
    assert adjustments.rows() == [("P1", 1, 4000), ("P1", 3, 500)]  # 200 of run 3's balance carries on


def test_the_validator_catches_a_broken_835():
    text = build([decision("A1")])["P1"]
    assert validate_835(text.replace("DTM*472*20260302~\n", "")) != []


def test_delimiters_in_posted_values_cannot_break_segments():
    text = build([decision("A*1~X:Y^", rate=None)])["P1"]
    assert validate_835(text) == []
    assert ["CLP", "A?1?X?Y?", "1", "70.12", "70.12", "", "MC", "A?1?X?Y?"] in segments(text)


def test_csv_and_html_carry_payments_reversals_pending_and_rejected():
    decisions = [decision("A1", rate=200000), decision("A3", status="suspended", reasons=["NO_ACTIVE_SPA"],
                                                       carc=["197"]),
                 decision("A5", status="rejected", reasons=["INVALID_RECORD:units"], carc=["16"]),
                 decision("=HYPERLINK", status="paid")]
    lines = rem.claim_lines(pl.DataFrame(decisions, schema=DECISION_SCHEMA).lazy(),
                            pl.DataFrame([reversal("O1", "V1")], schema=REVERSAL_SCHEMA).lazy())
    rows = rem.csv_rows(lines, rem.provider_totals(lines), pl.DataFrame(schema=rem.ADJUSTMENT_SCHEMA)).collect()
    assert rows.get_column("section").to_list() == ["reversal", "payment", "payment", "pending", "rejected",
                                                    "total_paid", "total_reversed", "net"]
    assert rows.filter(pl.col("section") == "net").get_column("paid_amount").item() == "70.12"
    assert rows.filter(pl.col("claim_id") == "A1").get_column("adjustment").item() == "CO-45 9.88"
    totals = rem.provider_totals(lines).collect().row(0, named=True)
    sections = {s: (r, n) for _p, s, r, n in rem.html_sections(lines).iter_rows()}
    page = rem.html_remittance("P1", "Provider <One>", sections, totals, PAYER, RUN)
    assert "Provider &lt;One&gt;" in page and "NO_ACTIVE_SPA" in page and "INVALID_RECORD:units" in page
    assert '<b id="net">70.12</b>' in page and '<b id="total-reversed">70.12</b>' in page


amounts = st.integers(1, 2_000_000)


@st.composite
def runs(draw):
    decisions, reversals = [], []
    for index in range(draw(st.integers(0, 12))):
        status = draw(st.sampled_from(["paid", "paid", "suspended", "rejected", "void"]))
        units = draw(st.integers(1, 99999)) * 100
        rate = draw(st.one_of(st.none(), st.integers(100, 500000)))
        decisions.append(decision(f"K{index}", provider=draw(st.sampled_from(["P1", "P2", "P3"])), status=status,
                                  units=units, rate=rate, paid=0 if status == "void" else None))
    for index in range(draw(st.integers(0, 6))):
        reversals.append(reversal(f"O{index}", f"K{index}", provider=draw(st.sampled_from(["P1", "P2", "P3"])),
                                  units=draw(st.integers(1, 99999)) * 100,
                                  rate=draw(st.one_of(st.none(), st.integers(100, 500000))),
                                  paid=draw(st.integers(0, 5_000_000))))
    return decisions, reversals


@settings(max_examples=40, deadline=None)
@given(runs())
def test_every_835_balances_and_together_they_are_the_run_net(run):
    decisions, reversals = run
    files = build(decisions, reversals)
    paid = sum(d["paid_cents"] for d in decisions if d["status"] == "paid")
    reversed_cents = sum(r["paid_cents"] for r in reversals)
    nets = {p: balances(text) for p, text in files.items()}
    assert sum((f["bpr02"] + f["plb"] for f in nets.values()), Decimal(0)) * 100 == paid - reversed_cents
    assert sum((f["bpr02"] for f in nets.values()), Decimal(0)) * 100 == sum(
        max(0, n["net"] * 100) for n in nets.values())
    expected = {d["provider_id"] for d in decisions if d["status"] == "paid"} | {r["provider_id"] for r in reversals}
    assert set(files) == expected
    for text in list(files.values())[:1]:
        assert validate_835(text) == []
    # The report says the same.
    figures = run_report.figures(pl.DataFrame(decisions, schema=DECISION_SCHEMA),
                                 pl.DataFrame(reversals, schema=REVERSAL_SCHEMA),
                                 {"run_id": 7, "started_at": RUN.finished_at, "finished_at": RUN.finished_at}, None)
    assert figures["run"]["net"] == run_report.money(paid - reversed_cents)
    assert figures["reversals"]["amount"] == run_report.money(reversed_cents)


def test_report_figures_and_html_charts():
    decisions = [decision("A1", rate=200000), decision("A2", provider="P2"),
                 decision("A3", status="suspended", reasons=["NO_ACTIVE_SPA", "OVERLAP_DUPLICATE"], carc=["197", "B20"]),
                 decision("A4", status="rejected", reasons=["INVALID_RECORD:service_date", "INVALID_RECORD:units"],
                          carc=["16", "16"])]
    frame = pl.DataFrame(decisions, schema=DECISION_SCHEMA)
    started = dt.datetime(2026, 3, 15, tzinfo=dt.timezone.utc)
    figures = run_report.figures(frame, pl.DataFrame(schema=REVERSAL_SCHEMA),
                                 {"run_id": 2, "started_at": started, "finished_at": started},
                                 {"run_id": 1, "summary": run_report.summary_of(
                                     {"claims": 3, "paid": 1, "suspended": 2, "rejected": 0, "paid_cents": 1000})})
    assert figures["run"]["amount_paid"] == "140.24" and figures["run"]["claims"] == 4
    # A line rejected for two fields is one claim under INVALID_RECORD.
    assert {(r["code"], r["carc"], r["claims"], r["rejected"]) for r in figures["by_reason"]} == {
        ("NO_ACTIVE_SPA", "197", 1, 0), ("OVERLAP_DUPLICATE", "B20", 1, 0), ("INVALID_RECORD", "16", 1, 1)}
    assert figures["suspended_by_age"][2] == {"age": "61-90 days", "claims": 1}  # Jan 1 -> Mar 15: 73 days
    assert figures["previous"]["difference"]["amount_paid"] == "130.24"
    assert figures["previous"]["difference"]["claims"] == 1
    assert [r["provider_id"] for r in figures["by_provider"]] == ["P1", "P2"]
    page = run_report.html(figures)
    assert page.count("<svg") == 6 and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert '<b id="amount-paid">140.24</b>' in page


def test_file_names_are_safe_and_distinct():
    from worker.remittances import file_name

    assert file_name(7, "P1", "x12") == "run-7-provider-P1.835"
    odd = [file_name(7, p, "csv") for p in ("A/B", "A_B", "A B", "../x", ".hidden")]
    assert len(set(odd)) == len(odd) and all("/" not in n and n.startswith("run-7-provider-") for n in odd)


@settings(max_examples=30, deadline=None)
@given(st.lists(runs(), min_size=1, max_size=5))
def test_over_a_sequence_of_runs_the_835s_pay_the_nets_less_the_balances_still_owed(sequence):
    """Per 835: BPR02 = sum(CLP04) - sum(PLB04) (balances checks it). Over the runs: the BPR02s
    add up to paid - reversed plus what providers still owe (a negative balance not recovered yet),
    as a provider's running balance max(0, owed - net) says."""
    history: list[tuple[int, str, int]] = []
    owed: dict[str, int] = {}
    paid_total = net_total = 0
    for run_id, (decisions, reversals) in enumerate(sequence, start=1):
        files = build(decisions, reversals, history, rem.RunInfo(run_id, RUN.finished_at))
        for provider, text in files.items():
            figures = balances(text)
            net = int(figures["net"] * 100)
            paid_total += int(figures["bpr02"] * 100)
            net_total += net
            owed[provider] = max(0, owed.get(provider, 0) - net)
            history.append((run_id, provider, net))
    assert paid_total == net_total + sum(owed.values())


def test_csv_files_read_back_as_the_rows_with_quotes_line_breaks_and_formulas():
    """A provider's CSV file reads back (Python's csv module) as its rows: commas, quotes and line
    breaks in posted values survive, a formula is guarded, providers come in the order they first
    appear, and the balance rows end the file."""
    from worker.remittances import _csv

    decisions = [decision('A,"1"\nx', rate=200000), decision("", status="suspended", reasons=["NO_ACTIVE_SPA"],
                                                             carc=["197"]),
                 decision("A\r3", provider="P2", status="rejected", reasons=["INVALID_RECORD:units"], carc=["16"]),
                 decision("=1+1", modifier=" ,")]
    lines = rem.claim_lines(pl.DataFrame(decisions, schema=DECISION_SCHEMA).lazy(),
                            pl.DataFrame([reversal("O'1", "V1")], schema=REVERSAL_SCHEMA).lazy())
    adjustments = pl.DataFrame([("P1", 3, 500)], schema=rem.ADJUSTMENT_SCHEMA, orient="row")
    texts = dict(_csv(lines, rem.provider_totals(lines).collect(), adjustments))
    assert list(texts) == ["P1", "P2"]
    read = {p: list(csv.reader(io.StringIO(text, newline=""))) for p, text in texts.items()}
    assert all(rows[0] == list(rem.CSV_COLUMNS) for rows in read.values())
    p1 = {row[2]: row for row in read["P1"][1:]}
    assert {'A,"1"\nx', "", "'=1+1", "O'1"} <= set(p1)
    assert p1["'=1+1"][rem.CSV_COLUMNS.index("modifier")] == " ,"
    assert read["P2"][1][2] == "A\r3"
    assert [row[1] for row in read["P1"][-2:]] == ["balance_forward_recovered", "amount_paid"]
    assert texts["P1"].splitlines()[-2:] == ["P1,balance_forward_recovered,,3-P1,,,,,,,,,-5.00,,,",
                                             "P1,amount_paid,,,,,,,,,,,65.12,,,"]


def test_more_than_six_balances_recovered_at_once_go_on_in_a_second_plb():
    """A PLB holds six adjustments; the seventh opens a second PLB (the guide allows it; pyx12's map
    does not, so the 835 is checked by its own figures and segment count here)."""
    history = [(run_id, "P1", -100) for run_id in range(1, 8)]  # seven runs each took back 1.00 more than paid
    text = build([decision("A1")], history=history, run=rem.RunInfo(8, RUN.finished_at))["P1"]
    plbs = [s for s in segments(text) if s[0] == "PLB"]
    assert [len(s[3:]) // 2 for s in plbs] == [6, 1]
    assert [pair for s in plbs for pair in s[3::2]] == [f"FB:{run_id}-P1" for run_id in range(1, 8)]
    figures = balances(text)
    assert figures["plb"] == Decimal("7.00") and figures["bpr02"] == Decimal("63.12")
    names = [s[0] for s in segments(text)]
    st, se = names.index("ST"), names.index("SE")
    assert int(segments(text)[se][1]) == se - st + 1  # SE01 counts ST to SE, both PLBs included
