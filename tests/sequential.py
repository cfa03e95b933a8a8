"""The plain sequential reference: SPEC section 4 read literally, one claim at a time.

Deliberately naive (lists, Decimal, no shared parsing with the engine) so that it is obviously
right; the engine and every distributed path are tested against it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from adjudication.reference import ReferenceSet
from adjudication.rules import Rules

NUMBER = re.compile(r"^[0-9]{1,5}(\.[0-9]{0,4}0*)?$")
FIELDS = ("claim_id", "client_prime", "provider_id", "staff_id", "procedure_code", "modifier",
          "service_date", "start_time", "end_time", "units", "billed_rate", "frequency", "original_claim_id")
# What a void reads of its line (SPEC 3); every other field of it is ignored.
VOID_FIELDS = ("claim_id", "client_prime", "provider_id", "frequency", "original_claim_id")
ORIGINAL, REPLACEMENT, VOID = "1", "7", "8"
# The received date of a queue entry that names none (tests/engine_helpers.py uses the same).
DEFAULT_RECEIVED = dt.date(2026, 12, 1)


@dataclass
class Paid:
    pk: int
    claim_id: str
    client: str
    day: dt.date
    provider: str
    procedure: str
    modifier: str
    start: int | None
    end: int | None
    units: Decimal
    spa_id: str


def _text(claim: dict, name: str) -> str | None:
    value = claim.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _minutes(text: str | None, is_end: bool) -> int | None:
    if text is None or not re.fullmatch(r"[0-9]{2}:[0-9]{2}", text):
        return None
    hour, minute = int(text[:2]), int(text[3:])
    if hour == 24 and minute == 0 and is_end:
        return 1440
    if hour < 24 and minute < 60:
        return hour * 60 + minute
    return None


def _number(text: str | None) -> Decimal | None:
    if text is None or not NUMBER.fullmatch(text):
        return None
    return Decimal(text)


def record_errors(claim: dict, rules: Rules) -> list[str]:
    t = {name: _text(claim, name) for name in FIELDS}
    frequency = t["frequency"] or ORIGINAL
    errors = []
    if frequency not in (ORIGINAL, REPLACEMENT, VOID):
        errors.append("frequency")
    elif (t["original_claim_id"] is None) == (frequency != ORIGINAL):
        errors.append("original_claim_id")
    if frequency == VOID:
        errors += [name for name in ("claim_id", "client_prime", "provider_id") if t[name] is None]
        return [f"INVALID_RECORD:{name}" for name in FIELDS if name in errors]
    for name in ("claim_id", "client_prime", "provider_id", "procedure_code"):
        if t[name] is None:
            errors.append(name)
    # Ids: 1 to 64 printable ASCII characters (optional ones only checked when given); staff_id,
    # read by no edit, only up to 64 characters.
    for name in ("claim_id", "client_prime", "provider_id", "procedure_code", "modifier"):
        if t[name] is not None and not re.fullmatch(r"[\x20-\x7E]{1,64}", t[name]) and name not in errors:
            errors.append(name)
    if t["staff_id"] is not None and len(t["staff_id"]) > 64:
        errors.append("staff_id")
    day = None
    if t["service_date"] and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", t["service_date"]):
        try:
            day = dt.date.fromisoformat(t["service_date"])
        except ValueError:
            day = None
    if day is not None and not dt.date(1900, 1, 1) <= day <= dt.date(2099, 12, 31):
        day = None  # a date no run computes with
    if day is None:
        errors.append("service_date")
    start, end = _minutes(t["start_time"], False), _minutes(t["end_time"], True)
    in_group = rules.group_of(t["procedure_code"] or "") is not None
    if t["start_time"] is not None and start is None or t["start_time"] is None and (t["end_time"] or in_group):
        errors.append("start_time")
    if (t["end_time"] is not None and end is None or t["end_time"] is None and (t["start_time"] or in_group)
            or start is not None and end is not None and end <= start):
        errors.append("end_time")
    units = _number(t["units"])
    if units is None or units <= 0:
        errors.append("units")
    elif (t["procedure_code"] in rules.hourly_procedures and start is not None and end is not None
          and end > start and abs(units - Decimal(end - start) / 60) > Decimal("0.01")):
        errors.append("units")
    if t["billed_rate"] is not None and _number(t["billed_rate"]) is None:
        errors.append("billed_rate")
    # Field order of the claim file.
    return [f"INVALID_RECORD:{name}" for name in FIELDS if name in errors]


def _period(unit_period: str, day: dt.date):
    return {"day": day, "month": (day.year, day.month), "total": None}[unit_period]


def adjudicate_sequentially(queue: list[dict], reference: ReferenceSet, rules: Rules,
                            ledger: list[Paid] = (), holders: dict[str, int] | None = None,
                            waivers: dict[int, set[str]] | None = None) -> list[dict]:
    """queue: dicts of claim_pk + raw claim texts, in adjudication order. Returns one outcome each.

    A queue entry may carry `waived` (codes waived for that attempt); `waivers` waives for all; and
    `received_date` (its batch's received date, a date; DEFAULT_RECEIVED when absent).
    An outcome's `adjusts` is the original_claim_id of an accepted replacement or void, and
    `reverses` the claim_pk of the paid claim it reversed (None otherwise).
    """
    plans = reference.rows("plans.csv")
    spas = reference.rows("spas.csv")
    enrollments = reference.rows("enrollments.csv")
    providers = {p.provider_id: p for p in reference.rows("providers.csv")}
    plan_client = {p.plan_id: p.client_prime for p in plans}
    accepted_plans = {p.plan_id for p in plans if p.status == "accepted"}
    paid: list[Paid] = list(ledger)
    held = dict(holders or {})
    waivers = waivers or {}
    out = []
    for claim in queue:
        pk = claim["claim_pk"]
        errors = record_errors(claim, rules)
        t = {name: _text(claim, name) for name in FIELDS}
        t["modifier"] = t["modifier"] or ""
        frequency = t["frequency"] or ORIGINAL
        received = claim.get("received_date") or DEFAULT_RECEIVED
        result = dict(claim_pk=pk, status="rejected", reasons=errors, spa_id=None, paid_units=None,
                      paid_amount=None, conflicts_with=[], adjusts=None, reverses=None)
        if errors:
            out.append(_with_carc(result, rules))
            continue
        if t["claim_id"] in held and held[t["claim_id"]] != pk:
            result["reasons"] = ["DUPLICATE_CLAIM_ID"]
            out.append(_with_carc(result, rules))
            continue
        requeued = held.get(t["claim_id"]) == pk
        if frequency != VOID and dt.date.fromisoformat(t["service_date"]) > received:
            result["reasons"] = ["FUTURE_SERVICE_DATE"]
            out.append(_with_carc(result, rules))
            continue
        if frequency != ORIGINAL and requeued:  # still a replacement of its original
            result["adjusts"] = t["original_claim_id"]
        if frequency != ORIGINAL and not requeued:
            # A re-queued replacement reversed its original on its first attempt: not again.
            original = next((p for p in paid if p.claim_id == t["original_claim_id"]), None)
            if (original is None or original.client != t["client_prime"]
                    or original.provider != t["provider_id"]):
                result["reasons"] = ["INVALID_ADJUSTMENT"]
                out.append(_with_carc(result, rules))
                continue
            paid.remove(original)
            result.update(adjusts=t["original_claim_id"], reverses=original.pk)
            if frequency == VOID:
                held[t["claim_id"]] = pk
                result.update(status="void", spa_id=original.spa_id)
                out.append(_with_carc(result, rules))
                continue
        held[t["claim_id"]] = pk
        waived = set(claim.get("waived", ())) | waivers.get(pk, set())
        client, day = t["client_prime"], dt.date.fromisoformat(t["service_date"])
        start, end = _minutes(t["start_time"], False), _minutes(t["end_time"], True)
        units = Decimal(t["units"])
        failing: list[str] = []
        conflicts: list[str] = []

        plan = next((p for p in plans if p.client_prime == client and p.status == "accepted"
                     and p.start_date <= day <= p.end_date), None)
        if plan is None:
            failing.append("NO_ACTIVE_PLAN")
        if not any(e.client_prime == client and e.start_date <= day <= e.end_date for e in enrollments):
            failing.append("NO_CM_ENROLLMENT")
        matching = [s for s in spas if s.status == "accepted" and s.plan_id in accepted_plans
                    and plan_client.get(s.plan_id) == client
                    and s.provider_id == t["provider_id"] and s.procedure_code == t["procedure_code"]
                    and s.modifier == t["modifier"] and s.start_date <= day <= s.end_date]
        matching.sort(key=lambda s: (plan is None or s.plan_id != plan.plan_id, s.spa_id))
        spa = matching[0] if matching else None
        if spa is None:
            failing.append("NO_ACTIVE_SPA")
        provider = providers.get(t["provider_id"])
        if provider is None or not ((provider.start_date or day) <= day <= (provider.end_date or day)):
            failing.append("PROVIDER_NOT_ENROLLED")
        if (received - day).days > rules.timely_filing_days and "TIMELY_FILING" not in waived:
            failing.append("TIMELY_FILING")
        if spa is not None:
            spa_period = {s.spa_id: s.unit_period for s in spas}
            used = sum((p.units for p in paid if p.spa_id == spa.spa_id
                        and _period(spa_period[p.spa_id], p.day) == _period(spa.unit_period, day)), Decimal(0))
            if used + units > spa.units:
                failing.append("UNITS_EXCEED_SPA")
        if (plan is not None and t["procedure_code"] in rules.attendant_care_procedures
                and "MONTHLY_HOURS_EXCEEDED" not in waived):
            hours = sum((p.units for p in paid if p.client == client and p.procedure in rules.attendant_care_procedures
                         and (p.day.year, p.day.month) == (day.year, day.month)), Decimal(0))
            if hours + units > plan.monthly_hours:
                failing.append("MONTHLY_HOURS_EXCEEDED")
        collided: set[str] = set()
        for p in paid:
            if p.client != client or p.day != day:
                continue
            codes = set()
            same_provider = p.provider == t["provider_id"]
            if (same_provider and p.procedure == t["procedure_code"] and p.modifier == t["modifier"]
                    and p.start == start and p.end == end):
                codes.add("DUPLICATE_SERVICE")
            group = rules.group_of(t["procedure_code"])
            if (group is not None and group == rules.group_of(p.procedure) and start is not None
                    and p.start is not None and start < p.end and p.start < end):
                allowance = rules.allowance((p.procedure, p.modifier), (t["procedure_code"], t["modifier"]))
                if allowance is None:
                    codes.add("OVERLAP_DUPLICATE")
                if same_provider and allowance != "any":
                    codes.add("OVERLAP_SAME_PROVIDER")
            codes -= waived
            if codes:
                collided |= codes
                conflicts.append(p.claim_id)
        for code in ("DUPLICATE_SERVICE", "OVERLAP_DUPLICATE", "OVERLAP_SAME_PROVIDER"):
            if code in collided:
                failing.append(code)
        result.update(reasons=failing, conflicts_with=conflicts, spa_id=spa.spa_id if spa else None)
        if failing:
            result["status"] = "suspended"
        else:
            rate = spa.rate if t["billed_rate"] is None else min(spa.rate, Decimal(t["billed_rate"]))
            result.update(status="paid", paid_units=units,
                          paid_amount=(units * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
            paid.append(Paid(pk, t["claim_id"], client, day, t["provider_id"], t["procedure_code"], t["modifier"],
                             start, end, units, spa.spa_id))
        out.append(_with_carc(result, rules))
    return out


def _with_carc(result: dict, rules: Rules) -> dict:
    result["carc"] = [rules.carc[reason.split(":")[0]] for reason in result["reasons"]]
    return result
