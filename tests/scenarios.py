"""Hypothesis strategies for dense random scenarios: few clients, many collisions, bad rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import strategies as st

from adjudication.reference import Enrollment, Plan, Provider, ReferenceSet, Spa

CLIENTS = ["c01", "c02"]
PROVIDERS = [("P1", "psw"), ("P2", "psw"), ("G1", "agency")]
UNKNOWN_PROVIDER = "P9"  # billed now and then, in no providers.csv
SERVICES = [("OR526", "NA"), ("OR526", "ZE"), ("OR526", "RB"), ("T1016", "")]
DAYS = [dt.date(2026, 1, 30), dt.date(2026, 1, 31), dt.date(2026, 2, 1)]
D0 = dt.date(2026, 1, 1)
# Received dates of batches: before some service days (FUTURE_SERVICE_DATE), a year after them, give
# or take a day (TIMELY_FILING at 365 days), and well inside both.
RECEIVED = [dt.date(2026, 12, 1)] * 6 + [dt.date(2026, 2, 1), dt.date(2026, 1, 30), dt.date(2027, 1, 30),
            dt.date(2027, 1, 31), dt.date(2027, 2, 1)]


@st.composite
def reference_sets(draw, clients: list[str] = CLIENTS) -> ReferenceSet:
    # Enrollment windows open-ended or ending / starting at the service days' boundaries.
    bounds = [None] * 8 + [DAYS[0], DAYS[1]]
    providers = []
    for p, k in PROVIDERS:
        start = draw(st.sampled_from([None] * 8 + [DAYS[1]]))
        end = draw(st.sampled_from([d for d in bounds if d is None or start is None or d >= start]))
        providers.append(Provider(provider_id=p, name=p, kind=k, start_date=start, end_date=end))
    plans, enrollments, spas = [], [], []
    for client in clients:
        # Accepted plans of one client never overlap: split January-February at a drawn day.
        split = draw(st.sampled_from([dt.date(2026, 1, 31), dt.date(2026, 2, 1), dt.date(2026, 12, 31)]))
        windows = [(D0, split), (split + dt.timedelta(days=1), dt.date(2026, 12, 31))]
        for index, (start, end) in enumerate(windows):
            if start > end or draw(st.integers(0, 4)) == 4:
                continue
            status = draw(st.sampled_from(["accepted"] * 12 + ["draft", "closed", "void"]))
            hours = Decimal(draw(st.sampled_from([300, 300, 40, 20, 12, 12, 8, 8, 5, 1, 0])))
            plan_id = f"{client}-pl{index}"
            plans.append(Plan(plan_id=plan_id, client_prime=client, start_date=start, end_date=end,
                              status=status, monthly_hours=hours))
            for provider, _kind in PROVIDERS:
                for procedure, modifier in SERVICES:
                    if draw(st.integers(0, 4)) == 4:
                        continue
                    spas.append(Spa(
                        spa_id=f"{plan_id}-{provider}-{procedure}{modifier}", plan_id=plan_id,
                        provider_id=provider, service_element="SE49", procedure_code=procedure, modifier=modifier,
                        start_date=draw(st.sampled_from([D0, D0, D0, DAYS[1]])),
                        end_date=draw(st.sampled_from([end, end, end, DAYS[1]])),
                        units=Decimal(draw(st.sampled_from([250, 250, 40, 10, 10, 6, 6, 3.5, 2, 0]))),
                        unit_period=draw(st.sampled_from(["month", "day", "total"])),
                        rate=Decimal(draw(st.integers(100, 3000))) / 100,
                        status=draw(st.sampled_from(["accepted"] * 12 + ["pending", "void"])),
                    ))
        for _ in range(draw(st.sampled_from([1, 1, 1, 1, 2, 0]))):
            start = draw(st.sampled_from([D0] * 8 + [DAYS[1], DAYS[2]]))
            end = draw(st.sampled_from([d for d in (dt.date(2026, 12, 31),) * 8 + (DAYS[0], DAYS[1], DAYS[2]) if d >= start]))
            enrollments.append(Enrollment(client_prime=client, cme_id="CME", start_date=start, end_date=end))
    return ReferenceSet.from_rows(providers, plans, enrollments, spas)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def claim_rows(draw, ids: int = 40, clients: list[str] = CLIENTS) -> dict:
    procedure, modifier = draw(st.sampled_from(SERVICES))
    start = draw(st.integers(16, 20)) * 30  # 08:00 .. 10:00, half hours
    length = draw(st.integers(1, 8)) * 30
    timed = procedure == "OR526" or draw(st.booleans())
    row = {
        "claim_id": f"K{draw(st.integers(0, ids))}",
        "client_prime": draw(st.sampled_from(clients)),
        "provider_id": draw(st.sampled_from([p for p, _ in PROVIDERS] * 10 + [UNKNOWN_PROVIDER])),
        "staff_id": draw(st.sampled_from(["", "S1", "S2"])),
        "procedure_code": procedure,
        "modifier": modifier,
        "service_date": draw(st.sampled_from(DAYS)).isoformat(),
        "start_time": _clock(start) if timed else "",
        "end_time": _clock(start + length) if timed else "",
        "units": str(Decimal(length) / 60 if procedure == "OR526" else draw(st.integers(1, 4))),
        "billed_rate": draw(st.sampled_from(["", "", "12.50", "30", "7.333"])),
    }
    if row["units"] == str(Decimal(length) / 60) and "." in row["units"]:
        row["units"] = str(Decimal(row["units"]).quantize(Decimal("0.01")))
    corruption = draw(st.integers(0, 24))
    if corruption == 0:
        row[draw(st.sampled_from(["claim_id", "provider_id", "service_date", "units", "start_time"]))] = ""
    elif corruption == 1:
        row["end_time"], row["start_time"] = row["start_time"], row["end_time"]
    elif corruption == 2:
        row[draw(st.sampled_from(["service_date", "units", "billed_rate", "end_time"]))] = "x1"
    elif corruption == 3:
        row["units"] = "9"
    elif corruption == 4:  # padding exporters leave: the same claim once trimmed
        field = draw(st.sampled_from(["claim_id", "client_prime", "provider_id", "modifier", "start_time", "units"]))
        row[field] = draw(st.sampled_from([" ", "\t"])) + row[field] + " "
    return row


@st.composite
def batches(draw, max_batches: int = 3, max_claims: int = 20, clients: list[str] = CLIENTS) -> list[list[dict]]:
    """Batches of claim rows, each with a received date; some rows re-bill an earlier service under a
    new claim id, some replace or void an earlier claim (paid, suspended, rejected, reversed already,
    or unknown; now and then of another client or provider), a few carry a bad frequency."""
    batch = st.lists(claim_rows(clients=clients), min_size=1, max_size=max_claims)
    groups = draw(st.lists(batch, min_size=1, max_size=max_batches))
    seen: list[dict] = []
    for group in groups:
        received = draw(st.sampled_from(RECEIVED))
        for index, row in enumerate(group):
            if seen and draw(st.integers(0, 5)) == 0:
                row = {**draw(st.sampled_from(seen)), "claim_id": row["claim_id"]}
            kind = draw(st.integers(0, 13))
            if kind <= 3 and seen:
                # Mostly an earlier claim of the run that can be paid (a valid original, or a
                # replacement), sometimes any earlier row.
                likely = [r for r in seen if r.get("frequency") in (None, "7") and r.get("units") != "9"]
                target = draw(st.sampled_from(likely if likely and draw(st.integers(0, 3)) else seen))
                original = (target["claim_id"] or "").strip() if draw(st.integers(0, 9)) else "K99"
                same = draw(st.integers(0, 5)) > 0
                row = {**row, "frequency": "7" if kind <= 1 else "8", "original_claim_id": original}
                if same:
                    row.update(client_prime=target["client_prime"], provider_id=target["provider_id"])
                if kind >= 2 and draw(st.booleans()):  # a void with only its five fields
                    row = {k: row[k] for k in ("claim_id", "client_prime", "provider_id", "frequency",
                                               "original_claim_id")}
            elif kind == 4:
                row = {**row, **draw(st.sampled_from([{"frequency": "1"}, {"frequency": "5"},
                                                      {"original_claim_id": "K1"}, {"frequency": "7"}]))}
            group[index] = {**row, "received_date": received}
            seen.append(group[index])
    return groups
