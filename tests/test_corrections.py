"""Replacements and voids (X12 frequency 7 and 8), received dates (FUTURE_SERVICE_DATE,
TIMELY_FILING), provider enrollment and SPAs under accepted plans: exact outcomes of the engine,
each also checked against the sequential reference (test_edits.adjudicate does both)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from adjudication.reference import Provider, ReferenceSet
from test_edits import (CARC, DAY, OD, OSP, adjudicate, claim, enrollment, invalid, paid, plan, reference,
                        rejected, standard_spas, spa, suspended, untimed)

CARC.update({"FUTURE_SERVICE_DATE": "110", "INVALID_ADJUSTMENT": "129", "PROVIDER_NOT_ENROLLED": "B7",
             "TIMELY_FILING": "29"})


def replacement(pk: int, original: str, *args, **kwargs) -> dict:
    return {**claim(pk, *args, **kwargs), "frequency": "7", "original_claim_id": original}


def void(pk: int, original: str, provider: str = "P1", client: str = "xyz0000a") -> dict:
    """A void: only claim_id, client, provider, frequency and original_claim_id are read."""
    return {"claim_pk": pk, "claim_id": f"K{pk}", "client_prime": client, "provider_id": provider,
            "frequency": "8", "original_claim_id": original}


def adjusted(outcome: dict, original: str, reverses: int) -> dict:
    return {**outcome, "adjusts": original, "reverses": reverses}


def voided(pk: int, original: str, reverses: int, spa_id: str) -> dict:
    return dict(claim_pk=pk, status="void", reasons=[], carc=[], spa_id=spa_id, paid_units=None, paid_amount=None,
                conflicts_with=[], adjusts=original, reverses=reverses)


# ================================================================ replacements and voids


def test_a_replacement_reverses_its_original_and_is_paid_in_its_place():
    """A provider billed 4 hours instead of 2: the replacement reverses the original and pays 2."""
    got = adjudicate([claim(1)], [replacement(2, "K1", start="09:00", end="11:00")])
    assert got == [paid(1, "P1-NA", "4", "80.00"), adjusted(paid(2, "P1-NA", "2", "40.00"), "K1", 1)]


def test_a_replacement_in_the_same_run_as_its_original():
    got = adjudicate([claim(1), replacement(2, "K1", start="09:00", end="11:00")])
    assert got == [paid(1, "P1-NA", "4", "80.00"), adjusted(paid(2, "P1-NA", "2", "40.00"), "K1", 1)]


def test_a_void_takes_the_claim_back():
    """A void's outcome is `void`, nothing paid, the original's SPA."""
    assert adjudicate([claim(1)], [void(2, "K1")]) == [paid(1, "P1-NA", "4", "80.00"), voided(2, "K1", 1, "P1-NA")]


def test_a_void_needs_only_its_five_fields_and_its_other_fields_are_not_read():
    row = {**void(2, "K1"), "service_date": "not a date", "units": "x", "start_time": "99:99"}
    assert adjudicate([claim(1)], [row]) == [paid(1, "P1-NA", "4", "80.00"), voided(2, "K1", 1, "P1-NA")]


def test_invalid_adjustments():
    """Not a paid claim (unknown, suspended, rejected, later in the order, reversed already), or
    another provider or client: INVALID_ADJUSTMENT, CARC 129, and the original stays paid."""
    bad = rejected
    rows = [
        claim(1),
        claim(2, "P1", "NA", "12:00", "14:00"),  # suspended: overlaps K1
        claim(3, date="2026-02-30"),  # rejected
        void(4, "K99"), void(5, "K2"), void(6, "K3"), void(7, "K9"),
        void(8, "K1", provider="P2"), void(9, "K1", client="abc0000a"),
        claim(9 + 1, date="2026-03-05"),
    ]
    got = adjudicate(rows)
    assert got[3:9] == [bad(pk, "INVALID_ADJUSTMENT") for pk in (4, 5, 6, 7, 8, 9)]
    assert got[0] == paid(1, "P1-NA", "4", "80.00") and got[9]["status"] == "paid"
    twice = adjudicate([claim(1)], [void(2, "K1"), replacement(3, "K1")])
    assert twice[1:] == [voided(2, "K1", 1, "P1-NA"), bad(3, "INVALID_ADJUSTMENT")]


def test_a_reversed_claim_no_longer_counts_from_the_reversal_on():
    """Units, monthly hours and overlaps of the original stop counting at the void's place: a claim
    before it still collides, one after it does not."""
    spas = [spa("P1", units="6", period="day"), spa("P2", "ZE")]
    ref = reference(spas=spas)
    rows = [claim(1), claim(2, start="13:00", end="17:00"), void(3, "K1"),
            claim(4, start="13:00", end="17:00", claim_id="K4"), claim(5, start="10:00", end="12:00")]
    got = adjudicate(rows, ref=ref)
    assert got == [
        paid(1, "P1-NA", "4", "80.00"),
        suspended(2, ["UNITS_EXCEED_SPA"], "P1-NA"),
        voided(3, "K1", 1, "P1-NA"),
        paid(4, "P1-NA", "4", "80.00"),
        paid(5, "P1-NA", "2", "40.00"),  # overlapped K1, and K1's 4 units would have filled the day
    ]


def test_monthly_hours_freed_by_a_void_in_an_earlier_run():
    ref = reference(plans=[plan(hours="6")])
    got = adjudicate([claim(1)], [claim(2, date="2026-03-03")], [void(3, "K1"), claim(4, date="2026-03-04")],
                     ref=ref)
    assert got == [paid(1, "P1-NA", "4", "80.00"), suspended(2, ["MONTHLY_HOURS_EXCEEDED"], "P1-NA"),
                   voided(3, "K1", 1, "P1-NA"), paid(4, "P1-NA", "4", "80.00")]


def test_a_suspended_replacement_keeps_its_reversal_and_a_requeue_does_not_reverse_again():
    """The replacement overlaps another paid claim of P1: suspended, but K1 stays reversed; once K5
    is voided, re-queuing the replacement pays it without an INVALID_ADJUSTMENT."""
    got = adjudicate(
        [claim(1), claim(5, start="14:00", end="16:00")],
        [replacement(2, "K1", start="13:00", end="15:00"), void(3, "K5")],
        [replacement(2, "K1", start="13:00", end="15:00")],
    )
    assert got == [
        paid(1, "P1-NA", "4", "80.00"), paid(5, "P1-NA", "2", "40.00"),
        adjusted(suspended(2, [OD, OSP], "P1-NA", ["K5"]), "K1", 1),
        voided(3, "K5", 5, "P1-NA"),
        adjusted(paid(2, "P1-NA", "2", "40.00"), "K1", None),
    ]


def test_chains_of_replacements_and_a_void_at_the_end():
    got = adjudicate([claim(1)], [replacement(2, "K1", start="09:00", end="12:00")],
                     [replacement(3, "K2", start="09:00", end="11:00"), void(4, "K3"), void(5, "K1")])
    assert got == [
        paid(1, "P1-NA", "4", "80.00"),
        adjusted(paid(2, "P1-NA", "3", "60.00"), "K1", 1),
        adjusted(paid(3, "P1-NA", "2", "40.00"), "K2", 2),
        voided(4, "K3", 3, "P1-NA"),
        rejected(5, "INVALID_ADJUSTMENT"),
    ]


def test_a_reversed_claim_keeps_its_id_and_an_invalid_adjustment_holds_none():
    got = adjudicate([claim(1)], [void(2, "K1"), claim(3, claim_id="K1"), {**void(4, "K77"), "claim_id": "K4"},
                                  claim(5, claim_id="K4", date="2026-03-05")])
    assert got[2] == rejected(3, "DUPLICATE_CLAIM_ID")
    assert got[3] == rejected(4, "INVALID_ADJUSTMENT") and got[4]["status"] == "paid"


# ================================================================ record checks


def test_frequency_and_original_claim_id_record_checks():
    rows = [{**claim(1), "frequency": "5"}, {**claim(2), "frequency": "7"}, {**claim(3), "original_claim_id": "K1"},
            {**claim(4), "frequency": "1"}, {**void(5, ""), "original_claim_id": ""},
            {**void(6, "K4"), "client_prime": ""}]
    assert adjudicate(rows) == [
        invalid(1, "frequency"), invalid(2, "original_claim_id"), invalid(3, "original_claim_id"),
        paid(4, "P1-NA", "4", "80.00"), invalid(5, "original_claim_id"), invalid(6, "client_prime"),
    ]


def test_future_service_date_after_the_received_date():
    """Measured from the batch's received date; the same day is fine; a void is not checked."""
    received = dt.date(2026, 3, 2)
    rows = [{**claim(1), "received_date": received}, {**claim(2, date="2026-03-03"), "received_date": received},
            {**void(3, "K1"), "service_date": "2027-01-01", "received_date": received}]
    assert adjudicate(rows) == [paid(1, "P1-NA", "4", "80.00"), rejected(2, "FUTURE_SERVICE_DATE"),
                                voided(3, "K1", 1, "P1-NA")]


def test_record_checks_run_in_order():
    """A duplicate claim id is named before a future date, a future date before an invalid adjustment."""
    received = dt.date(2026, 3, 1)
    rows = [claim(1, date="2026-02-27"), {**claim(2, claim_id="K1"), "received_date": received},
            {**replacement(3, "K99"), "received_date": received}]
    assert adjudicate(rows) == [paid(1, "P1-NA", "4", "80.00"), rejected(2, "DUPLICATE_CLAIM_ID"),
                                rejected(3, "FUTURE_SERVICE_DATE")]


# ================================================================ enrollment, timely filing, accepted plans


def test_provider_enrollment():
    """Unknown provider or outside its enrollment (both ends inclusive): PROVIDER_NOT_ENROLLED (B7)."""
    base = reference()
    providers = [Provider(provider_id="P1", name="P1", kind="psw", start_date=dt.date(2026, 3, 2),
                          end_date=dt.date(2026, 3, 3)), *[p for p in base.rows("providers.csv") if p.provider_id != "P1"]]
    spas = [*standard_spas(), spa("P9", "NA", spa_id="P9-NA")]
    ref = ReferenceSet.from_rows(providers, [plan()], [enrollment()], spas)
    rows = [claim(1, date="2026-03-01"), claim(2, date="2026-03-02"), claim(3, date="2026-03-03"),
            claim(4, date="2026-03-04"), claim(5, "P9", date="2026-03-05")]
    assert adjudicate(rows, ref=ref) == [
        suspended(1, ["PROVIDER_NOT_ENROLLED"], "P1-NA"), paid(2, "P1-NA", "4", "80.00"),
        paid(3, "P1-NA", "4", "80.00"), suspended(4, ["PROVIDER_NOT_ENROLLED"], "P1-NA"),
        suspended(5, ["PROVIDER_NOT_ENROLLED"], "P9-NA"),
    ]


def test_timely_filing_boundary_waiver_and_requeue():
    """365 days before the received date is in time, 366 is late (waivable); a re-queued claim keeps
    its batch's received date."""
    received = dt.date(2027, 3, 2)  # 2026-03-02 is 365 days before
    rows = [{**claim(1), "received_date": received}, {**claim(2, date="2026-03-01"), "received_date": received}]
    got = adjudicate(rows)
    assert got == [paid(1, "P1-NA", "4", "80.00"), suspended(2, ["TIMELY_FILING"], "P1-NA")]
    again = {**rows[1], "waived": {"TIMELY_FILING"}}
    assert adjudicate(rows, [again])[2] == paid(2, "P1-NA", "4", "80.00")


def test_reasons_in_the_order_of_the_edit_table_with_their_carcs():
    ref = ReferenceSet.from_rows([], [], [], [])
    row = {**claim(1, "P4"), "received_date": dt.date(2028, 1, 1)}
    (got,) = adjudicate([row], ref=ref)
    codes = ["NO_ACTIVE_PLAN", "NO_CM_ENROLLMENT", "NO_ACTIVE_SPA", "PROVIDER_NOT_ENROLLED", "TIMELY_FILING"]
    assert got == suspended(1, codes, None)
    assert got["carc"] == ["197", "177", "197", "B7", "29"]


def test_a_spa_under_a_plan_not_accepted_does_not_count():
    ref = reference(plans=[plan(), plan("PL2", status="draft", start=dt.date(2027, 1, 1),
                                        end=dt.date(2027, 12, 31))],
                    spas=[*standard_spas(), spa("P4", spa_id="P4-NA", plan_id="PL2")])
    assert adjudicate([claim(1, "P4")], ref=ref) == [suspended(1, ["NO_ACTIVE_SPA"], None)]
    assert DAY and Decimal and untimed  # helpers shared with test_edits
