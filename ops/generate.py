"""Seeded synthetic data at any size: reference files plus a month of attendant-care claims.

Shape (per 40 claims, one client): an accepted plan for the year, a CM enrollment, an NA SPA for
a primary PSW or agency, for one client in ten a ZE SPA of a second provider doing 2:1 shifts that
overlap the NA ones, and T1016 case-management lines. A few percent of the claims suspend
(monthly hours, a re-billed shift, a provider without SPA) and a fraction of a percent is invalid.

    uv run python ops/generate.py --claims 1000000 --out bench-data/1m
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

CLAIMS_PER_CLIENT = 40


def generate(claims: int, out: Path, seed: int = 7, month: dt.date = dt.date(2026, 3, 1),
             client_offset: int = 0, claim_prefix: str = "C", corrections: float = 0.0) -> Path:
    """Write providers/plans/enrollments/spas.csv and claims.csv under `out`; returns the claim file.

    corrections: the share of lines that replace (frequency 7) or void (8) an earlier line of the
    file, and of PSWs whose enrollment ends mid-month (0: none, and no such columns are written).
    """
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_clients = max(1, claims // CLAIMS_PER_CLIENT)
    clients = [f"x{client_offset + i:07d}a" for i in range(n_clients)]
    n_psw = max(2, n_clients // 3)
    n_agency = max(1, n_clients // 200)
    providers = pl.DataFrame({
        "provider_id": [f"P{i:06d}" for i in range(n_psw)] + [f"G{i:05d}" for i in range(n_agency)],
        "name": [f"Provider {i}" for i in range(n_psw)] + [f"Agency {i}" for i in range(n_agency)],
        "kind": ["psw"] * n_psw + ["agency"] * n_agency,
    })
    # Primary provider: a PSW for most clients, an agency for one in five.
    primary = np.where(rng.random(n_clients) < 0.8,
                       [f"P{i:06d}" for i in rng.integers(0, n_psw, n_clients)],
                       [f"G{i:05d}" for i in rng.integers(0, n_agency, n_clients)])
    second = np.array([f"P{i:06d}" for i in rng.integers(0, n_psw, n_clients)])
    two_to_one = rng.random(n_clients) < 0.10
    hours = np.where(rng.random(n_clients) < 0.04, 60, 300)  # a few clients with a tight monthly cap
    year_start, year_end = dt.date(month.year, 1, 1), dt.date(month.year, 12, 31)
    plan_ids = [f"POC-{c}" for c in clients]
    pl.DataFrame({
        "plan_id": plan_ids, "client_prime": clients, "start_date": [year_start] * n_clients,
        "end_date": [year_end] * n_clients, "status": ["accepted"] * n_clients, "monthly_hours": hours,
    }).write_csv(out / "plans.csv")
    pl.DataFrame({
        "client_prime": clients, "cme_id": ["CME01"] * n_clients, "start_date": [year_start] * n_clients,
        "end_date": [year_end] * n_clients,
    }).write_csv(out / "enrollments.csv")
    if corrections:
        ends = rng.random(providers.height) < corrections
        providers = providers.with_columns(start_date=pl.lit(None, dtype=pl.Date), end_date=pl.when(
            pl.Series(ends)).then(pl.lit(month.replace(day=15))).otherwise(pl.lit(None, dtype=pl.Date)))
    providers.write_csv(out / "providers.csv")
    spa_rows = {
        "spa_id": [f"S-{c}-NA" for c in clients], "plan_id": plan_ids, "provider_id": list(primary),
        "procedure_code": ["OR526"] * n_clients, "modifier": ["NA"] * n_clients, "units": [250] * n_clients,
        "unit_period": ["month"] * n_clients, "rate": ["17.53"] * n_clients,
    }
    ze = np.flatnonzero(two_to_one)
    spa_rows = pl.concat([
        pl.DataFrame(spa_rows),
        pl.DataFrame({
            "spa_id": [f"S-{clients[i]}-ZE" for i in ze], "plan_id": [plan_ids[i] for i in ze],
            "provider_id": [second[i] for i in ze], "procedure_code": ["OR526"] * len(ze),
            "modifier": ["ZE"] * len(ze), "units": [50] * len(ze), "unit_period": ["month"] * len(ze),
            "rate": ["17.53"] * len(ze),
        }),
        pl.DataFrame({
            "spa_id": [f"S-{c}-CM" for c in clients], "plan_id": plan_ids, "provider_id": list(primary),
            "procedure_code": ["T1016"] * n_clients, "modifier": [""] * n_clients, "units": [8] * n_clients,
            "unit_period": ["total"] * n_clients, "rate": ["25.00"] * n_clients,
        }),
    ])
    spa_rows.select(
        "spa_id", "plan_id", "provider_id", service_element=pl.lit("SE49"), procedure_code="procedure_code",
        modifier="modifier", start_date=pl.lit(year_start), end_date=pl.lit(year_end), units="units",
        unit_period="unit_period", rate="rate", status=pl.lit("accepted"),
    ).write_csv(out / "spas.csv")

    # Claims: per client, shifts on distinct days of the month (NA by the primary provider,
    # overlapping ZE by the second provider for 2:1 clients), plus a T1016 line now and then.
    days_in_month = ((month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - month).days
    client_index = np.repeat(np.arange(n_clients), CLAIMS_PER_CLIENT)[:claims]
    if len(client_index) < claims:
        client_index = np.concatenate([client_index, rng.integers(0, n_clients, claims - len(client_index))])
    slot = np.concatenate([np.arange(CLAIMS_PER_CLIENT)] * (claims // CLAIMS_PER_CLIENT + 1))[:claims]
    day = slot % days_in_month + 1
    morning = slot < days_in_month  # first shift of the day, the rest are afternoon shifts
    start_h = np.where(morning, rng.integers(7, 10, claims), rng.integers(13, 16, claims))
    length_h = rng.integers(2, 5, claims)
    kind = rng.random(claims)
    is_ze = two_to_one[client_index] & (kind < 0.3)
    is_cm = ~is_ze & (kind > 0.97)
    provider = np.where(is_ze, second[client_index], primary[client_index])
    start = start_h * 60 + np.where(is_ze, 60, 0)
    end = start + length_h * 60
    frame = pl.DataFrame({
        "claim_id": [f"{claim_prefix}{i:08d}" for i in range(claims)],
        "client_prime": [clients[i] for i in client_index],
        "provider_id": provider,
        "staff_id": np.where(np.char.startswith(provider.astype(str), "G"), "S1", ""),
        "procedure_code": np.where(is_cm, "T1016", "OR526"),
        "modifier": np.where(is_cm, "", np.where(is_ze, "ZE", "NA")),
        "service_date": [month.replace(day=int(d)).isoformat() for d in day],
        "start_min": start, "end_min": end, "units": np.where(is_cm, 1, length_h),
    })
    # A re-billed shift now and then (a duplicate), a provider without SPA, and an invalid row.
    noise = rng.random(claims)
    frame = frame.with_columns(
        provider_id=pl.when(pl.Series(noise < 0.005)).then(pl.lit("P999999")).otherwise("provider_id"),
        units=pl.when(pl.Series((noise > 0.995) & (noise < 0.997))).then(pl.lit(0)).otherwise("units"),
    )
    rebilled = claims // 100
    frame = frame.head(claims - rebilled)
    frame = pl.concat([frame, frame.sample(rebilled, seed=seed).with_columns(claim_id=pl.col("claim_id") + "R")])
    clock = lambda column: (pl.col(column) // 60).cast(pl.String).str.pad_start(2, "0") + ":" + (
        pl.col(column) % 60).cast(pl.String).str.pad_start(2, "0")
    columns = ["claim_id", "client_prime", "provider_id", "staff_id", "procedure_code", "modifier", "service_date"]
    if corrections:
        # Replacements (the same line again: paid once the original is reversed) and voids of
        # earlier lines, at the end of the file; the lines they take the place of are dropped.
        count = int(claims * corrections)
        frame = frame.head(claims - count).with_columns(frequency=pl.lit(None, pl.String),
                                                        original_claim_id=pl.lit(None, pl.String))
        fixed = frame.sample(count, seed=seed + 1).with_columns(
            original_claim_id="claim_id", frequency=pl.Series(np.where(rng.random(count) < 0.5, "7", "8")))
        frame = pl.concat([frame, fixed.with_columns(claim_id=pl.col("claim_id") + pl.col("frequency"))])
        columns += ["frequency", "original_claim_id"]
    claims_path = out / "claims.csv"
    frame.select(
        *columns[:7], start_time=clock("start_min"), end_time=clock("end_min"), units=pl.col("units").cast(pl.String),
        billed_rate=pl.lit(""), **{c: c for c in columns[7:]},
    ).write_csv(claims_path)
    return claims_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corrections", type=float, default=0.01,
                        help="share of replacements and voids, and of PSWs whose enrollment ends mid-month (0.01)")
    args = parser.parse_args()
    print(generate(args.claims, args.out, args.seed, corrections=args.corrections))


if __name__ == "__main__":
    main()
