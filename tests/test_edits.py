"""Focused unit tests of the polars engine: record checks, edits, overlap rules, payment, waivers, rules files.

Every case runs the engine the way the store does (`RunByRun`, one run per list of rows) and asserts
the exact outcomes, then checks that the plain sequential reference (`tests/sequential.py`) gives the
same outcomes for the same claims in adjudication order.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from adjudication.reference import Enrollment, Plan, Provider, ReferenceSet, Spa
from adjudication.rules import Rules, RulesError, default_rules, default_rules_text
from engine_helpers import RunByRun, comparable, normalized
from sequential import adjudicate_sequentially
from worker.files import load_rules

RULES = default_rules()
CLIENT = "xyz0000a"
DAY = "2026-03-02"
JAN1, DEC31 = dt.date(2026, 1, 1), dt.date(2026, 12, 31)
# SPEC section 4: the X12 CARC of every reason code (written out here, not read from the rules).
CARC = {
    "INVALID_RECORD": "16", "DUPLICATE_CLAIM_ID": "18", "NO_ACTIVE_PLAN": "197", "NO_CM_ENROLLMENT": "177",
    "NO_ACTIVE_SPA": "197", "UNITS_EXCEED_SPA": "198", "MONTHLY_HOURS_EXCEEDED": "119",
    "DUPLICATE_SERVICE": "18", "OVERLAP_DUPLICATE": "B20", "OVERLAP_SAME_PROVIDER": "18",
}
OD, OSP, DS = "OVERLAP_DUPLICATE", "OVERLAP_SAME_PROVIDER", "DUPLICATE_SERVICE"


# ---------------------------------------------------------------- reference data


def plan(plan_id: str = "PL1", *, client: str = CLIENT, status: str = "accepted", hours: str = "300",
         start: dt.date = JAN1, end: dt.date = DEC31) -> Plan:
    return Plan(plan_id=plan_id, client_prime=client, start_date=start, end_date=end, status=status,
                monthly_hours=Decimal(hours))


def enrollment(*, client: str = CLIENT, start: dt.date = JAN1, end: dt.date = DEC31) -> Enrollment:
    return Enrollment(client_prime=client, cme_id="CME01", start_date=start, end_date=end)


def spa(provider: str, modifier: str = "NA", procedure: str = "OR526", *, spa_id: str | None = None,
        units: str = "250", period: str = "month", rate: str = "20", status: str = "accepted",
        plan_id: str = "PL1", start: dt.date = JAN1, end: dt.date = DEC31) -> Spa:
    return Spa(spa_id=spa_id or f"{provider}-{procedure if procedure != 'OR526' else modifier}", plan_id=plan_id,
               provider_id=provider, service_element="SE49", procedure_code=procedure, modifier=modifier,
               start_date=start, end_date=end, units=Decimal(units), unit_period=period, rate=Decimal(rate),
               status=status)


def standard_spas() -> list[Spa]:
    """OR526 NA/ZE/RB for P1, P2, P3 and agency G1, plus T1016 for P1 and P2 (ids 'P1-NA', 'P1-T1016', ...).

    P4 is a provider without any SPA.
    """
    spas = [spa(p, m) for p in ("P1", "P2", "P3", "G1") for m in ("NA", "ZE", "RB")]
    return spas + [spa(p, "", "T1016") for p in ("P1", "P2")]


def reference(*, spas: list[Spa] | None = None, plans: list[Plan] | None = None,
              enrollments: list[Enrollment] | None = None) -> ReferenceSet:
    providers = [Provider(provider_id=p, name=p, kind="psw") for p in ("P1", "P2", "P3", "P4")]
    providers.append(Provider(provider_id="G1", name="Good Care Agency", kind="agency"))
    return ReferenceSet.from_rows(
        providers,
        [plan()] if plans is None else plans,
        [enrollment()] if enrollments is None else enrollments,
        standard_spas() if spas is None else spas,
    )


# ---------------------------------------------------------------- claims and outcomes


def hours(start: str, end: str) -> str:
    minutes = lambda text: 60 * int(text[:2]) + int(text[3:])  # noqa: E731
    return str(Decimal(minutes(end) - minutes(start)) / 60)


def claim(pk: int, provider: str = "P1", modifier: str = "NA", start: str = "09:00", end: str = "13:00", *,
          procedure: str = "OR526", date: str = DAY, units: str | None = None, claim_id: str | None = None,
          staff: str = "", rate: str = "", client: str = CLIENT, waived: set[str] | None = None) -> dict:
    """A claim row (raw texts). OR526 units default to the span in hours, other procedures to 1."""
    if units is None:
        units = hours(start, end) if procedure == "OR526" and start and end else "1"
    row = dict(claim_pk=pk, claim_id=f"K{pk}" if claim_id is None else claim_id, client_prime=client,
               provider_id=provider, staff_id=staff, procedure_code=procedure, modifier=modifier,
               service_date=date, start_time=start, end_time=end, units=units, billed_rate=rate)
    if waived:
        row["waived"] = set(waived)
    return row


def untimed(pk: int, provider: str = "P1", **kwargs) -> dict:
    """A T1016 claim without times (T1016 is in no overlap group under the default rules)."""
    return claim(pk, provider, "", "", "", procedure="T1016", **kwargs)


def adjudicate(*runs: list[dict], ref: ReferenceSet | None = None, rules: Rules = RULES) -> list[dict]:
    """Each list of rows is one engine run; returns every attempt's outcome, in adjudication order.

    A row carrying `waived` is re-queued with those edits waived (as an operator override does).
    The outcomes must equal the sequential reference over the same queue.
    """
    ref = reference() if ref is None else ref
    runner = RunByRun(ref, rules)
    got: list[dict] = []
    for rows in runs:
        for row in rows:
            for code in sorted(row.get("waived", ())):
                if (row["claim_pk"], code) not in runner.waivers:
                    runner.waivers.append((row["claim_pk"], code))
        got += comparable(runner.run(rows))
    queue = [row for rows in runs for row in rows]
    assert got == normalized(adjudicate_sequentially(queue, ref, rules)), "engine differs from sequential"
    return got


def paid(pk: int, spa_id: str, units: str, amount: str) -> dict:
    return dict(claim_pk=pk, status="paid", reasons=[], carc=[], spa_id=spa_id, paid_units=Decimal(units),
                paid_amount=Decimal(amount), conflicts_with=[], adjusts=None, reverses=None)


def suspended(pk: int, reasons: list[str], spa_id: str | None, conflicts: list[str] = ()) -> dict:
    return dict(claim_pk=pk, status="suspended", reasons=list(reasons), carc=[CARC[r] for r in reasons],
                spa_id=spa_id, paid_units=None, paid_amount=None, conflicts_with=sorted(conflicts), adjusts=None,
                reverses=None)


def rejected(pk: int, *reasons: str) -> dict:
    return dict(claim_pk=pk, status="rejected", reasons=list(reasons), carc=[CARC[r.split(":")[0]] for r in reasons],
                spa_id=None, paid_units=None, paid_amount=None, conflicts_with=[], adjusts=None, reverses=None)


def invalid(pk: int, *fields: str) -> dict:
    return rejected(pk, *(f"INVALID_RECORD:{f}" for f in fields))


# ================================================================ record checks


def test_missing_claim_id_is_invalid():
    """A required field left empty rejects the row, naming the field."""
    assert adjudicate([claim(1, claim_id="")]) == [invalid(1, "claim_id")]


@pytest.mark.parametrize("date", ["2026-02-30", "2026-13-01", "02/03/2026", "2026-3-2", ""])
def test_bad_service_date_is_invalid(date):
    """An impossible, non-ISO or missing service date rejects the row."""
    assert adjudicate([claim(1, date=date)]) == [invalid(1, "service_date")]


@pytest.mark.parametrize("start,end", [("13:00", "09:00"), ("09:00", "09:00")])
def test_end_time_not_after_start_time_is_invalid(start, end):
    """end_time <= start_time is an unusable span: INVALID_RECORD:end_time."""
    assert adjudicate([claim(1, start=start, end=end, units="1")]) == [invalid(1, "end_time")]


@pytest.mark.parametrize(
    "row,field",
    [
        (claim(1, start="09:00", end="", units="4"), "end_time"),
        (claim(1, start="", end="13:00", units="4"), "start_time"),
        (claim(1, "P1", "", "09:00", "", procedure="T1016"), "end_time"),
        (claim(1, "P1", "", "", "10:00", procedure="T1016"), "start_time"),
    ],
    ids=["OR526-start-only", "OR526-end-only", "T1016-start-only", "T1016-end-only"],
)
def test_only_one_of_the_times_is_invalid(row, field):
    """start_time and end_time are both given or both empty, for any procedure; the missing one is named."""
    assert adjudicate([row]) == [invalid(1, field)]


def test_overlap_group_procedure_without_times_is_invalid():
    """OR526 is in an overlap group, so it cannot be checked for overlap without times: both are named."""
    assert adjudicate([claim(1, start="", end="", units="4")]) == [invalid(1, "start_time", "end_time")]


def test_untimed_service_outside_overlap_groups_is_accepted():
    """T1016 is in no overlap group: no times needed."""
    assert adjudicate([untimed(1, units="3")]) == [paid(1, "P1-T1016", "3", "60.00")]


@pytest.mark.parametrize("start,end,units,ok", [
    ("22:00", "24:00", "2", True),   # 24:00 is allowed as an end time
    ("24:00", "24:00", "1", False),  # ... but not as a start time
    ("9:00", "13:00", "4", False),   # two digits each
    ("09:60", "13:00", "3", False),
])
def test_time_formats(start, end, units, ok):
    """Times are HH:MM, 24-hour, '24:00' only as an end."""
    expected = paid(1, "P1-NA", units, str(Decimal(units) * 20)) if ok else invalid(1, "start_time")
    assert adjudicate([claim(1, start=start, end=end, units=units)]) == [expected]


@pytest.mark.parametrize("units", ["0", "0.00", "-1", "abc", ""])
def test_non_positive_or_unparsable_units_are_invalid(units):
    """Units must be a positive decimal (a T1016 claim, so no span check is involved)."""
    assert adjudicate([untimed(1, units=units)]) == [invalid(1, "units")]


@pytest.mark.parametrize("field,value", [("units", "1.\u0663"), ("units", "\u0664"), ("service_date", "2026-03-0\u0662"),
                                         ("start_time", "0\u0669:00")])
def test_digits_of_other_scripts_are_invalid(field, value):
    """Numbers, dates and times take ASCII digits only (Arabic-Indic digits are digits to a regex's \\d)."""
    row = untimed(1, units="1") if field == "units" else claim(1)
    row = {**row, field: value}
    assert adjudicate([row]) == [invalid(1, field)]


@pytest.mark.parametrize("units", ["4.011", "3.989", "4.02", "4.5", "2"])
def test_hourly_units_off_the_span_by_more_than_001_hour_are_invalid(units):
    """OR526 units are hours: 09:00-13:00 is 4 h; more than 0.01 h off is rejected."""
    assert adjudicate([claim(1, units=units)]) == [invalid(1, "units")]


@pytest.mark.parametrize("start,end,units,amount", [
    ("09:00", "13:00", "4.01", "80.20"),   # exactly 0.01 h off: not *more* than 0.01
    ("09:00", "13:00", "3.99", "79.80"),
    ("09:00", "09:20", "0.33", "6.60"),    # 0.3333.. h billed to two places
    ("09:00", "09:40", "0.67", "13.40"),
])
def test_hourly_units_within_001_hour_of_the_span_are_accepted(start, end, units, amount):
    """Units within 0.01 h of the span are accepted and paid as billed."""
    assert adjudicate([claim(1, start=start, end=end, units=units)]) == [paid(1, "P1-NA", units, amount)]


@pytest.mark.parametrize("rate", ["abc", "-5", "12.34567", "1,5"])
def test_bad_billed_rate_is_invalid(rate):
    """billed_rate may be empty, but when given it must be a plain decimal (at most 4 places)."""
    assert adjudicate([claim(1, rate=rate)]) == [invalid(1, "billed_rate")]


def test_several_bad_fields_are_all_listed_in_column_order():
    """Every failing field is named, in claim-file column order, whatever order the checks run in."""
    row = claim(1, claim_id="", provider="", start="9:00", end="13:00", date="2026-02-30", units="0", rate="x")
    row["client_prime"] = " "
    assert adjudicate([row]) == [invalid(1, "claim_id", "client_prime", "provider_id", "service_date",
                                         "start_time", "units", "billed_rate")]


def test_duplicate_claim_id_within_a_batch():
    """The second valid row with a claim id already held in the batch is rejected; the first is untouched."""
    rows = [claim(1, claim_id="X"), claim(2, "P3", "ZE", "10:00", "12:00", claim_id="X"),
            claim(3, "P3", "ZE", "10:00", "12:00", claim_id=" X ")]
    assert adjudicate(rows) == [paid(1, "P1-NA", "4", "80.00"), rejected(2, "DUPLICATE_CLAIM_ID"),
                                rejected(3, "DUPLICATE_CLAIM_ID")]


def test_duplicate_claim_id_across_runs():
    """An id held by a paid or a suspended claim of an earlier run rejects a new row; the old outcome stays."""
    first = [claim(1, claim_id="A"), claim(2, "P4", claim_id="B", date="2026-03-03")]
    second = [claim(3, "P3", "ZE", "10:00", "12:00", claim_id="A"), claim(4, "P1", claim_id="B", date="2026-03-03")]
    assert adjudicate(first, second) == [
        paid(1, "P1-NA", "4", "80.00"), suspended(2, ["NO_ACTIVE_SPA"], None),
        rejected(3, "DUPLICATE_CLAIM_ID"), rejected(4, "DUPLICATE_CLAIM_ID"),
    ]


def test_rejected_row_id_may_be_resent_corrected_in_the_same_batch():
    """A rejected row holds no id: a corrected row with the same id later in the batch is adjudicated."""
    rows = [claim(1, claim_id="A", units="9"), claim(2, claim_id="A")]
    assert adjudicate(rows) == [invalid(1, "units"), paid(2, "P1-NA", "4", "80.00")]


def test_rejected_row_id_may_be_resent_corrected_in_a_later_run():
    """Rows rejected as invalid or as duplicate ids hold nothing; the corrected row is adjudicated."""
    first = [claim(1, claim_id="A", date="2026-02-30"), claim(2, "P3", "ZE", claim_id="C"),
             claim(3, "P2", "ZE", "15:00", "16:00", claim_id="C")]
    second = [claim(4, claim_id="A")]
    assert adjudicate(first, second) == [
        invalid(1, "service_date"), paid(2, "P3-ZE", "4", "80.00"), rejected(3, "DUPLICATE_CLAIM_ID"),
        paid(4, "P1-NA", "4", "80.00"),
    ]


def test_requeued_holder_keeps_its_id_when_a_new_row_with_the_id_comes_first_in_the_run():
    """A suspended claim holds its id; a new row with that id queued before the claim is re-queued is the duplicate."""
    first = [claim(1, "P4", claim_id="A")]  # suspended: no SPA for P4
    second = [claim(2, "P1", claim_id="A"), claim(1, "P4", claim_id="A")]
    assert adjudicate(first, second) == [
        suspended(1, ["NO_ACTIVE_SPA"], None), rejected(2, "DUPLICATE_CLAIM_ID"),
        suspended(1, ["NO_ACTIVE_SPA"], None),
    ]


# ================================================================ edits


@pytest.mark.parametrize("status", ["draft", "closed", "void"])
def test_plan_not_accepted_is_no_active_plan(status):
    """Only an accepted plan counts, and only a SPA under an accepted plan: the accepted SPA under it
    does not count either."""
    ref = reference(plans=[plan(status=status)])
    assert adjudicate([claim(1)], ref=ref) == [suspended(1, ["NO_ACTIVE_PLAN", "NO_ACTIVE_SPA"], None)]


def test_no_plan_at_all_is_no_active_plan_and_no_spa():
    """A client without any plan has no SPA either (a SPA's client is its plan's)."""
    ref = reference(enrollments=[enrollment(), enrollment(client="abc0000b")])
    assert adjudicate([claim(1, client="abc0000b")], ref=ref) == [
        suspended(1, ["NO_ACTIVE_PLAN", "NO_ACTIVE_SPA"], None)]


def test_service_date_outside_the_plan_is_no_active_plan():
    """The plan covers its start..end inclusive; a date after the end is not covered."""
    ref = reference(plans=[plan(start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 2))])
    rows = [claim(1, date="2026-03-01"), claim(2, date="2026-03-02"), claim(3, date="2026-03-03"),
            claim(4, date="2026-02-28")]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "4", "80.00"), paid(2, "P1-NA", "4", "80.00"),
        suspended(3, ["NO_ACTIVE_PLAN"], "P1-NA"), suspended(4, ["NO_ACTIVE_PLAN"], "P1-NA"),
    ]


def test_no_cm_enrollment():
    """POC services are payable only on dates the CM enrollment covers (inclusive)."""
    ref = reference(enrollments=[enrollment(start=dt.date(2026, 3, 3), end=dt.date(2026, 3, 31))])
    rows = [claim(1, date="2026-03-02"), claim(2, date="2026-03-03"), claim(3, date="2026-04-01")]
    assert adjudicate(rows, ref=ref) == [
        suspended(1, ["NO_CM_ENROLLMENT"], "P1-NA"), paid(2, "P1-NA", "4", "80.00"),
        suspended(3, ["NO_CM_ENROLLMENT"], "P1-NA"),
    ]
    assert adjudicate([claim(1)], ref=reference(enrollments=[])) == [suspended(1, ["NO_CM_ENROLLMENT"], "P1-NA")]


def test_no_spa_for_the_provider():
    """P4 has no SPA at all."""
    assert adjudicate([claim(1, "P4")]) == [suspended(1, ["NO_ACTIVE_SPA"], None)]


@pytest.mark.parametrize("status", ["pending", "draft", "closed", "void"])
def test_spa_not_accepted_is_no_active_spa(status):
    """Only an accepted SPA authorizes the service."""
    ref = reference(spas=[spa("P1", status=status)])
    assert adjudicate([claim(1)], ref=ref) == [suspended(1, ["NO_ACTIVE_SPA"], None)]


def test_spa_for_another_modifier_is_no_active_spa():
    """P1 is authorized for OR526/NA only: OR526/ZE by P1 has no SPA."""
    ref = reference(spas=[spa("P1", "NA")])
    assert adjudicate([claim(1, "P1", "ZE")], ref=ref) == [suspended(1, ["NO_ACTIVE_SPA"], None)]


def test_spa_dates_must_cover_the_service_date():
    """A SPA outside its start..end does not authorize the service."""
    ref = reference(spas=[spa("P1", start=dt.date(2026, 3, 3))])
    assert adjudicate([claim(1), claim(2, date="2026-03-03")], ref=ref) == [
        suspended(1, ["NO_ACTIVE_SPA"], None), paid(2, "P1-NA", "4", "80.00")]


def test_units_exceed_spa_per_calendar_month():
    """10 units a month: the claim reaching exactly 10 is paid, the next suspended; a smaller one that
    still fits is paid (a suspended claim uses nothing); the next month starts over."""
    ref = reference(spas=[spa("P1", units="10", period="month")])
    rows = [
        claim(1, date="2026-03-02"),                        # 4
        claim(2, date="2026-03-03"),                        # 8
        claim(3, date="2026-03-31", start="09:00", end="11:00"),  # 10: exactly the cap
        claim(4, date="2026-03-30", start="09:00", end="09:30"),  # 10.5 > 10
        claim(5, date="2026-04-01"),                        # April
    ]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), paid(2, "P1-NA", "4", "80"), paid(3, "P1-NA", "2", "40"),
        suspended(4, ["UNITS_EXCEED_SPA"], "P1-NA"), paid(5, "P1-NA", "4", "80"),
    ]


def test_units_exceed_spa_per_day():
    """3 units a day: 2 + 1 reach the cap; a third claim that day is suspended, the next day is fresh."""
    ref = reference(spas=[spa("P1", units="3", period="day")])
    rows = [claim(1, start="09:00", end="11:00"), claim(2, start="13:00", end="14:00"),
            claim(3, start="15:00", end="15:30"), claim(4, start="09:00", end="12:00", date="2026-03-03")]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "2", "40"), paid(2, "P1-NA", "1", "20"),
        suspended(3, ["UNITS_EXCEED_SPA"], "P1-NA"), paid(4, "P1-NA", "3", "60"),
    ]


def test_units_exceed_spa_total():
    """5 units for the whole SPA: months do not reset it."""
    ref = reference(spas=[spa("P1", units="5", period="total")])
    rows = [claim(1, date="2026-01-05"), claim(2, date="2026-06-01", start="09:00", end="10:00"),
            claim(3, date="2026-12-01", start="09:00", end="09:30")]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), paid(2, "P1-NA", "1", "20"), suspended(3, ["UNITS_EXCEED_SPA"], "P1-NA")]


@pytest.mark.parametrize("period", ["month", "day", "total"])
def test_units_spent_in_an_earlier_run_count_against_the_spa(period):
    """The paid ledger of earlier runs counts: 4 of 5 units spent before, 2 more exceed, 1 more fits."""
    ref = reference(spas=[spa("P1", units="5", period=period)])
    first = [claim(1)]
    second = [claim(2, start="14:00", end="16:00"), claim(3, start="14:00", end="15:00")]
    assert adjudicate(first, second, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), suspended(2, ["UNITS_EXCEED_SPA"], "P1-NA"), paid(3, "P1-NA", "1", "20")]


def test_monthly_hours_count_na_and_ze_together_but_not_t1016():
    """The plan's 6 monthly hours cover all attendant care (NA + ZE, 2:1 included); T1016 counts nothing."""
    ref = reference(plans=[plan(hours="6")])
    rows = [
        claim(1, "P1", "NA", "09:00", "13:00"),                      # 4
        claim(2, "P3", "ZE", "10:00", "12:00"),                      # 6: exactly the plan's hours
        untimed(3, "P1", units="8"),                                 # not attendant care
        claim(4, "P2", "NA", "09:00", "09:30", date="2026-03-20"),   # 6.5 > 6
        claim(5, "P2", "RB", "09:00", "09:30", date="2026-03-21"),   # RB is OR526 too
        claim(6, "P2", "NA", "09:00", "15:00", date="2026-04-01"),   # April: 6 fits
    ]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), paid(2, "P3-ZE", "2", "40"), paid(3, "P1-T1016", "8", "160"),
        suspended(4, ["MONTHLY_HOURS_EXCEEDED"], "P2-NA"), suspended(5, ["MONTHLY_HOURS_EXCEEDED"], "P2-RB"),
        paid(6, "P2-NA", "6", "120"),
    ]


def test_non_attendant_claims_on_a_tight_spa_do_not_count_toward_monthly_hours():
    """T1016 units used up on their own SPA are not attendant-care hours: the OR526 claims still
    reach the plan's hours exactly (found by comparing two engine versions; the tests had missed it)."""
    ref = reference(plans=[plan(hours="5")],
                    spas=[s for s in standard_spas() if s.spa_id != "P1-T1016"] + [spa("P1", "", "T1016", units="1")])
    rows = [
        claim(1, "P1", start="08:00", end="10:00"),                      # 2 h
        untimed(2, "P1"),                                                # the T1016 SPA's one unit
        untimed(3, "P1", date="2026-03-03"),                             # that SPA is used up
        claim(4, "P2", start="10:00", end="13:00"),                      # 5 h: exactly the plan's hours
        claim(5, "P3", start="13:00", end="14:00", date="2026-03-04"),   # 6 h > 5
    ]
    outcomes = adjudicate(rows, ref=ref)
    assert [(o["status"], o["reasons"]) for o in outcomes] == [
        ("paid", []), ("paid", []), ("suspended", ["UNITS_EXCEED_SPA"]), ("paid", []),
        ("suspended", ["MONTHLY_HOURS_EXCEEDED"])]


def test_monthly_hours_spent_in_an_earlier_run_count():
    """Hours paid in an earlier run of the same month count against the plan."""
    ref = reference(plans=[plan(hours="5")])
    first = [claim(1, "P1", "NA", "09:00", "13:00")]
    second = [claim(2, "P3", "ZE", "14:00", "16:00", date="2026-03-09"),
              claim(3, "P3", "ZE", "14:00", "15:00", date="2026-03-09")]
    assert adjudicate(first, second, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), suspended(2, ["MONTHLY_HOURS_EXCEEDED"], "P3-ZE"), paid(3, "P3-ZE", "1", "20")]


def test_duplicate_service_timed():
    """The same OR526/NA service re-billed under a new id: a duplicate service that also overlaps itself."""
    rows = [claim(1), claim(2), claim(3, date="2026-03-03")]
    assert adjudicate(rows) == [
        paid(1, "P1-NA", "4", "80"), suspended(2, [DS, OD, OSP], "P1-NA", ["K1"]), paid(3, "P1-NA", "4", "80")]


def test_duplicate_service_untimed_t1016():
    """T1016 without times: same client, provider, procedure, modifier and date (no times) is a duplicate;
    another provider or a timed T1016 line is not."""
    rows = [untimed(1, units="2"), untimed(2, units="1"), untimed(3, "P2", units="2"),
            claim(4, "P1", "", "09:00", "10:00", procedure="T1016"), claim(5, "P1", "", "09:00", "10:00",
                                                                          procedure="T1016")]
    assert adjudicate(rows) == [
        paid(1, "P1-T1016", "2", "40"), suspended(2, [DS], "P1-T1016", ["K1"]), paid(3, "P2-T1016", "2", "40"),
        paid(4, "P1-T1016", "1", "20"), suspended(5, [DS], "P1-T1016", ["K4"]),
    ]


def test_several_failing_edits_are_listed_together_in_spec_order():
    """Every failing edit is listed, in SPEC section 4's order."""
    ref = reference(plans=[plan(hours="3")], spas=[spa("P1", units="3")])
    rows = [
        claim(1, "P1", "NA", "09:00", "12:00"),          # paid: 3 of 3 SPA units, 3 of 3 hours
        claim(2, "P1", "NA", "09:00", "12:00"),          # everything but the reference edits
        claim(3, "P1", "ZE", "10:00", "11:00"),          # no SPA, hours, same provider NA+ZE
        claim(4, "P1", "NA", client="abc0000b"),         # another client: nothing at all
    ]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "3", "60"),
        suspended(2, ["UNITS_EXCEED_SPA", "MONTHLY_HOURS_EXCEEDED", DS, OD, OSP], "P1-NA", ["K1"]),
        suspended(3, ["NO_ACTIVE_SPA", "MONTHLY_HOURS_EXCEEDED", OSP], None, ["K1"]),
        suspended(4, ["NO_ACTIVE_PLAN", "NO_CM_ENROLLMENT", "NO_ACTIVE_SPA"], None),
    ]


# ================================================================ overlap (default rules, SPEC section 4 table)


@pytest.mark.parametrize(
    "first,second,reasons",
    [
        (("P1", "NA"), ("P3", "ZE"), []),
        (("P3", "ZE"), ("P1", "NA"), []),
        (("P1", "NA"), ("P1", "ZE"), [OSP]),
        (("P1", "NA"), ("P2", "NA"), [OD]),
        (("P1", "NA"), ("P1", "NA"), [OD, OSP]),
        (("P1", "ZE"), ("P3", "ZE"), [OD]),
        (("P3", "ZE"), ("P3", "ZE"), [OD, OSP]),
        (("P1", "NA"), ("P2", "RB"), [OD]),
        (("P2", "RB"), ("P1", "NA"), [OD]),
        (("P1", "NA"), ("P1", "RB"), [OD, OSP]),
        (("P1", "RB"), ("P1", "NA"), [OD, OSP]),
        (("P1", "RB"), ("P2", "ZE"), [OD]),
        (("P1", "RB"), ("P2", "RB"), [OD]),
        (("P1", "RB"), ("P1", "RB"), [OD, OSP]),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, tuple) else (",".join(v) or "paid"),
)
def test_overlap_pairs_of_the_default_rules(first, second, reasons):
    """09:00-13:00 then 10:00-12:00 on one date: only NA+ZE by different providers may overlap."""
    rows = [claim(1, *first), claim(2, *second, "10:00", "12:00")]
    spa_id = f"{second[0]}-{second[1]}"
    expected = paid(2, spa_id, "2", "40") if not reasons else suspended(2, reasons, spa_id, ["K1"])
    assert adjudicate(rows) == [paid(1, f"{first[0]}-{first[1]}", "4", "80"), expected]


def test_overlap_needs_the_same_client_and_date():
    """Another client or another date never overlaps."""
    ref = reference(plans=[plan(), plan("PL2", client="abc0000b")],
                    enrollments=[enrollment(), enrollment(client="abc0000b")],
                    spas=standard_spas() + [spa("P1", spa_id="B-P1-NA", plan_id="PL2")])
    rows = [claim(1), claim(2, client="abc0000b"), claim(3, date="2026-03-03")]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), paid(2, "B-P1-NA", "4", "80"), paid(3, "P1-NA", "4", "80")]


def test_touching_intervals_do_not_overlap():
    """[09:00, 13:00) and [13:00, 15:00) share no positive length: both paid."""
    rows = [claim(1, start="09:00", end="13:00"), claim(2, start="13:00", end="15:00"),
            claim(3, "P2", start="08:00", end="09:00")]
    assert adjudicate(rows) == [paid(1, "P1-NA", "4", "80"), paid(2, "P1-NA", "2", "40"),
                                paid(3, "P2-NA", "1", "20")]


def test_agency_staff_are_one_provider():
    """G1 staff S1 NA and staff S2 ZE overlapping: one provider_id, so OVERLAP_SAME_PROVIDER."""
    rows = [claim(1, "G1", "NA", "15:00", "17:00", staff="S1"), claim(2, "G1", "ZE", "15:00", "17:00", staff="S2")]
    assert adjudicate(rows) == [paid(1, "G1-NA", "2", "40"), suspended(2, [OSP], "G1-ZE", ["K1"])]


def test_three_overlapping_claims():
    """NA P1, ZE P3, ZE P2 all overlapping: the third is allowed with the NA but collides with the ZE."""
    rows = [claim(1, "P1", "NA", "09:00", "13:00"), claim(2, "P3", "ZE", "10:00", "12:00"),
            claim(3, "P2", "ZE", "11:00", "12:30")]
    assert adjudicate(rows) == [
        paid(1, "P1-NA", "4", "80"), paid(2, "P3-ZE", "2", "40"), suspended(3, [OD], "P2-ZE", ["K2"])]


def test_conflicts_with_lists_every_paid_claim_collided_with():
    """A claim overlapping two paid NA claims names both, each with its own codes merged."""
    rows = [claim(1, "P1", "NA", "09:00", "11:00"), claim(2, "P2", "NA", "11:00", "13:00"),
            claim(3, "P1", "NA", "10:00", "12:00")]
    assert adjudicate(rows) == [
        paid(1, "P1-NA", "2", "40"), paid(2, "P2-NA", "2", "40"), suspended(3, [OD, OSP], "P1-NA", ["K1", "K2"])]


def test_suspended_claim_in_the_middle_blocks_nothing():
    """A paid; B overlaps A and is suspended; C overlaps only B and is paid."""
    rows = [claim(1, "P1", "NA", "09:00", "13:00"), claim(2, "P2", "NA", "12:00", "14:00"),
            claim(3, "P3", "NA", "13:30", "15:00")]
    assert adjudicate(rows) == [
        paid(1, "P1-NA", "4", "80"), suspended(2, [OD], "P2-NA", ["K1"]), paid(3, "P3-NA", "1.5", "30")]


def test_earlier_claim_failing_another_edit_does_not_block():
    """The earlier overlapping claim has no SPA, so it is suspended and the later one is paid."""
    rows = [claim(1, "P4", "NA", "09:00", "13:00"), claim(2, "P1", "NA", "10:00", "12:00")]
    assert adjudicate(rows) == [suspended(1, ["NO_ACTIVE_SPA"], None), paid(2, "P1-NA", "2", "40")]


def test_paid_claim_of_an_earlier_run_blocks_overlaps():
    """The paid ledger of earlier runs takes part in the overlap edits."""
    assert adjudicate([claim(1)], [claim(2, "P2", "NA", "12:00", "14:00"), claim(3, "P2", "ZE", "12:00", "14:00")]) \
        == [paid(1, "P1-NA", "4", "80"), suspended(2, [OD], "P2-NA", ["K1"]), paid(3, "P2-ZE", "2", "40")]


def test_worked_example_of_spec_section_7():
    """SPEC section 7, seed 004, as one batch."""
    providers = [Provider(provider_id="P1", kind="psw"), Provider(provider_id="P3", kind="psw"),
                 Provider(provider_id="G1", kind="agency")]
    spas = [spa("P1", "NA", spa_id="A", rate="17.53"), spa("P3", "ZE", spa_id="B", units="50", rate="17.53"),
            spa("G1", "NA", spa_id="C", units="100", rate="28.10"),
            spa("G1", "ZE", spa_id="D", units="20", rate="28.10")]
    ref = ReferenceSet.from_rows(providers, [plan()], [enrollment()], spas)
    rows = [claim(1, "P1", "NA", "09:00", "13:00", claim_id="WX-1"), claim(2, "P3", "ZE", "10:00", "12:00",
                                                                           claim_id="WX-2"),
            claim(3, "P1", "NA", "12:00", "14:00", claim_id="WX-3"),
            claim(4, "G1", "NA", "15:00", "17:00", staff="S1", claim_id="WX-4"),
            claim(5, "G1", "ZE", "15:00", "17:00", staff="S2", claim_id="WX-5"),
            claim(6, "P1", "NA", "13:00", "15:00", claim_id="WX-6")]
    assert adjudicate(rows, ref=ref) == [
        paid(1, "A", "4", "70.12"), paid(2, "B", "2", "35.06"), suspended(3, [OD, OSP], "A", ["WX-1"]),
        paid(4, "C", "2", "56.20"), suspended(5, [OSP], "D", ["WX-4"]), paid(6, "A", "2", "35.06"),
    ]


# ================================================================ payment


@pytest.mark.parametrize("billed,amount", [
    ("", "25.01"),        # no billed rate: the SPA rate, 1.5 x 16.67 = 25.005 -> 25.01 (half-up)
    ("30", "25.01"),      # billed above the SPA rate: the SPA rate
    ("16.67", "25.01"),
    ("16.66", "24.99"),   # billed below: the billed rate
    ("7.333", "11.00"),   # 10.9995 -> 11.00
    ("1.67", "2.51"),     # 2.505 -> 2.51 (half-up, not half-even)
    ("0.01", "0.02"),     # 0.015 -> 0.02
    ("0.003", "0.00"),    # 0.0045 -> 0.00
])
def test_paid_amount_is_units_times_lesser_rate_rounded_half_up(billed, amount):
    """paid_amount = units x min(billed_rate, SPA rate), exact decimals, rounded half-up to cents."""
    ref = reference(spas=[spa("P1", rate="16.67")])
    assert adjudicate([claim(1, start="09:00", end="10:30", rate=billed)], ref=ref) == [
        paid(1, "P1-NA", "1.5", amount)]


def test_paid_amount_of_fractional_units_and_rate():
    """0.33 h x 17.53 = 5.7849 -> 5.78; 0.67 h x 17.53 = 11.7451 -> 11.75."""
    ref = reference(spas=[spa("P1", rate="17.53")])
    rows = [claim(1, start="09:00", end="09:20", units="0.33"), claim(2, start="10:00", end="10:40", units="0.67")]
    assert adjudicate(rows, ref=ref) == [paid(1, "P1-NA", "0.33", "5.78"), paid(2, "P1-NA", "0.67", "11.75")]


# ================================================================ waivers (operator override)


def test_waived_overlap_duplicate_pays_only_without_other_failing_edits():
    """Re-queued with OVERLAP_DUPLICATE waived: B (nothing else failing) is paid; D (no SPA) stays
    suspended for NO_ACTIVE_SPA alone; E (same provider) stays suspended for OVERLAP_SAME_PROVIDER."""
    first = [
        claim(1, "P1", "NA", "09:00", "11:00"),   # A
        claim(2, "P2", "NA", "10:00", "12:00"),   # B overlaps A
        claim(3, "P4", "NA", "09:00", "13:00"),   # D overlaps A, no SPA
        claim(4, "P1", "NA", "10:00", "10:30"),   # E overlaps A, same provider
    ]
    second = [claim(2, "P2", "NA", "10:00", "12:00", waived={OD}), claim(3, "P4", "NA", "09:00", "13:00", waived={OD}),
              claim(4, "P1", "NA", "10:00", "10:30", waived={OD})]
    assert adjudicate(first, second) == [
        paid(1, "P1-NA", "2", "40"), suspended(2, [OD], "P2-NA", ["K1"]),
        suspended(3, ["NO_ACTIVE_SPA", OD], None, ["K1"]), suspended(4, [OD, OSP], "P1-NA", ["K1"]),
        paid(2, "P2-NA", "2", "40"), suspended(3, ["NO_ACTIVE_SPA"], None), suspended(4, [OSP], "P1-NA", ["K1"]),
    ]


def test_waived_claim_once_paid_blocks_later_overlapping_claims():
    """B paid under a waiver is a paid claim like any other: C, overlapping only B, collides with it,
    in the same run as the re-queue and in a later one."""
    first = [claim(1, "P1", "NA", "09:00", "11:00"), claim(2, "P2", "NA", "10:00", "12:00")]
    second = [claim(2, "P2", "NA", "10:00", "12:00", waived={OD}), claim(3, "P3", "NA", "11:30", "12:30")]
    third = [claim(4, "P3", "RB", "11:00", "11:30", date=DAY)]
    assert adjudicate(first, second, third) == [
        paid(1, "P1-NA", "2", "40"), suspended(2, [OD], "P2-NA", ["K1"]),
        paid(2, "P2-NA", "2", "40"), suspended(3, [OD], "P3-NA", ["K2"]),
        suspended(4, [OD], "P3-RB", ["K2"]),
    ]


def test_waived_monthly_hours_pays_and_counts_against_later_claims():
    """MONTHLY_HOURS_EXCEEDED waived: the claim is paid, and its hours count for the claims after it."""
    ref = reference(plans=[plan(hours="4")])
    first = [claim(1, "P1", "NA", "09:00", "13:00"), claim(2, "P1", "NA", "09:00", "10:00", date="2026-03-03")]
    second = [claim(2, "P1", "NA", "09:00", "10:00", date="2026-03-03", waived={"MONTHLY_HOURS_EXCEEDED"}),
              claim(3, "P3", "ZE", "10:00", "11:00", date="2026-03-04")]
    assert adjudicate(first, second, ref=ref) == [
        paid(1, "P1-NA", "4", "80"), suspended(2, ["MONTHLY_HOURS_EXCEEDED"], "P1-NA"),
        paid(2, "P1-NA", "1", "20"), suspended(3, ["MONTHLY_HOURS_EXCEEDED"], "P3-ZE"),
    ]


# ================================================================ rules files


def rules_file(tmp_path, old: str, new: str) -> Rules:
    """The default rules with one text change, written to a file and loaded from it."""
    text = default_rules_text()
    assert text.count(old) == 1
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(old, new))
    return load_rules(path)


def test_custom_rules_allow_na_ze_for_any_providers(tmp_path):
    """providers = "any" for NA+ZE: one provider may bill both overlapping; NA+NA is still a duplicate."""
    rules = rules_file(tmp_path, '\nproviders = "different"', '\nproviders = "any"')
    rows = [claim(1, "P1", "NA"), claim(2, "P1", "ZE", "10:00", "12:00"), claim(3, "P1", "NA", "12:00", "14:00")]
    assert adjudicate(rows) == [paid(1, "P1-NA", "4", "80"), suspended(2, [OSP], "P1-ZE", ["K1"]),
                                suspended(3, [OD, OSP], "P1-NA", ["K1"])]
    assert adjudicate(rows, rules=rules) == [paid(1, "P1-NA", "4", "80"), paid(2, "P1-ZE", "2", "40"),
                                             suspended(3, [OD, OSP], "P1-NA", ["K1"])]


def test_custom_rules_add_an_overlap_group(tmp_path):
    """A new group {T1016}: T1016 lines now need times and may not overlap each other."""
    rules = rules_file(tmp_path, 'overlap_groups = [["OR526"]]', 'overlap_groups = [["OR526"], ["T1016"]]')
    rows = [claim(1, "P1", "", "09:00", "10:00", procedure="T1016"),
            claim(2, "P2", "", "09:30", "10:30", procedure="T1016"),
            claim(3, "P2", "NA", "09:30", "10:30"),  # another group: no overlap with T1016
            untimed(4, "P2", date="2026-03-03")]
    assert adjudicate(rows) == [paid(1, "P1-T1016", "1", "20"), paid(2, "P2-T1016", "1", "20"),
                                paid(3, "P2-NA", "1", "20"), paid(4, "P2-T1016", "1", "20")]
    assert adjudicate(rows, rules=rules) == [paid(1, "P1-T1016", "1", "20"),
                                             suspended(2, [OD], "P2-T1016", ["K1"]), paid(3, "P2-NA", "1", "20"),
                                             invalid(4, "start_time", "end_time")]


def test_custom_rules_allow_an_extra_pair(tmp_path):
    """Allowing OR526/RB + OR526/NA (different providers) pays an RB overlapping an NA of another provider."""
    rules = rules_file(tmp_path, "# X12 Claim", '[[allowed_overlaps]]\nfirst = "OR526/RB"\nsecond = "OR526/NA"\n\n'
                                                "# X12 Claim")
    rows = [claim(1, "P1", "NA"), claim(2, "P2", "RB", "10:00", "12:00"), claim(3, "P1", "RB", "12:00", "14:00")]
    assert adjudicate(rows, rules=rules) == [paid(1, "P1-NA", "4", "80"), paid(2, "P2-RB", "2", "40"),
                                             suspended(3, [OSP], "P1-RB", ["K1"])]


@pytest.mark.parametrize("old,new,message", [
    ('second = "OR526/ZE"', 'second = "OR526/NA"', "itself"),
    ('second = "OR526/ZE"', 'second = "T1016/"', "not inside one overlap group"),
    ('second = "OR526/ZE"', 'second = "ZE"', "PROCEDURE/MODIFIER"),
    ('\nproviders = "different"', '\nproviders = "same"', "providers"),
    ('OVERLAP_SAME_PROVIDER = "18"', 'OVERLAP_SAME = "18"', "unknown reason codes OVERLAP_SAME"),
    ('waivable = [', 'waivable = ["INVALID_RECORD", ', "waivable lists INVALID_RECORD, which cannot be waived"),
    ('waivable = [', 'waivable = ["NO_ACTIVE_SPA", ', "waivable lists NO_ACTIVE_SPA, which cannot be waived"),
    ('timely_filing_days = 365', 'timely_filing_days = -1', "timely_filing_days"),
    ('residential_service_elements = ["SE50"', 'residential_service_elements = ["SE49"', "both in-home and"),
    ('overlap_groups = [["OR526"]]', 'overlap_groups = [["OR526"], ["OR526"]]', "two overlap groups"),
    ('hourly_procedures = ["OR526"]', 'hourly_procedures = ["OR526"]\ncolour = "red"', "colour"),
])
def test_invalid_rules_file_is_rejected(tmp_path, old, new, message):
    """load_rules validates the policy: a broken rules file raises RulesError naming the file and the problem."""
    with pytest.raises(RulesError, match=message):
        rules_file(tmp_path, old, new)
