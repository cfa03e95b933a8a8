"""What a crowded client-day costs the edits: N claims of one client on one day, all overlapping.

    uv run python ops/crowded_day.py 3000

The edits compare every two claims of a client and day, so time and memory grow with the square
of N; this is the measurement behind ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY (README). Runs the
engine in memory on one such day and prints its time and the process's peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adjudication.claims import CLAIM_COLUMNS  # noqa: E402
from adjudication.engine import adjudicate  # noqa: E402
from adjudication.reference import Enrollment, Plan, Provider, ReferenceSet, Spa  # noqa: E402
from adjudication.rules import default_rules  # noqa: E402

START, END = dt.date(2026, 1, 1), dt.date(2026, 12, 31)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claims", type=int)
    n = parser.parse_args().claims
    reference = ReferenceSet.from_rows(
        [Provider(provider_id="P1", name="P1", kind="psw")],
        [Plan(plan_id="PL1", client_prime="c1", start_date=START, end_date=END, status="accepted",
              monthly_hours=Decimal(300))],
        [Enrollment(client_prime="c1", start_date=START, end_date=END)],
        [Spa(spa_id="S1", plan_id="PL1", provider_id="P1", procedure_code="OR526", modifier="NA", start_date=START,
             end_date=END, units=Decimal(250), unit_period="month", rate=Decimal("30"), status="accepted")],
    )
    claim = {"client_prime": "c1", "provider_id": "P1", "staff_id": "", "procedure_code": "OR526", "modifier": "NA",
             "service_date": "2026-03-02", "start_time": "09:00", "end_time": "13:00", "units": "4", "billed_rate": ""}
    queue = pl.DataFrame([{"claim_pk": i, "claim_id": f"F{i}", **claim} for i in range(1, n + 1)],
                         schema={"claim_pk": pl.Int64, **{c: pl.String for c in CLAIM_COLUMNS}})
    started = time.perf_counter()
    outcomes = adjudicate(queue, reference.frames(), default_rules()).outcomes
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = dict(outcomes.group_by("status").len().iter_rows())
    print(f"{n:,} claims of one client on one day: {elapsed:.2f} s, peak memory {peak:,.0f} MiB, {counts}")


if __name__ == "__main__":
    main()
