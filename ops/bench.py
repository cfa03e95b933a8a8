"""Benchmark: the product against the floor and the sequential reference, measured in one run.

    uv run python ops/bench.py --claims 1000000

Floor: read the claim file with polars and insert one outcome row per claim into a SQLite file in
one transaction. Product: `adjudicate submit` + `adjudicate run` through the real entry point on a
fresh SQLite file (process start-up included). Sequential reference: tests/sequential.py in memory
on the claims of the first clients (its cost per claim grows with the data, so extrapolating from a
sample flatters it). Peak memory: the largest resident size of the product's processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ops"), str(ROOT / "tests")]

from generate import generate  # noqa: E402

ADJUDICATE = Path(sys.executable).with_name("adjudicate")


def floor(claims_file: Path, db: Path) -> float:
    started = time.perf_counter()
    frame = pl.read_csv(claims_file, infer_schema=False)
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE outcomes (claim_id TEXT, line INTEGER, status TEXT, reasons TEXT, paid_cents INTEGER)")
    rows = frame.select("claim_id", line=pl.int_range(2, frame.height + 2), status=pl.lit("paid"), reasons=pl.lit(""),
                        paid_cents=pl.lit(0)).iter_rows()
    with connection:
        connection.executemany("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)", rows)
    connection.close()
    return time.perf_counter() - started


def product(data: Path, db_url: str) -> dict[str, float]:
    def timed(*args: str) -> float:
        started = time.perf_counter()
        subprocess.run([str(ADJUDICATE), "--db", db_url, *args], check=True, capture_output=True)
        return time.perf_counter() - started

    timed("db", "upgrade")
    timed("reference", "load", str(data))
    submit = timed("submit", str(data / "claims.csv"))
    run = timed("run")
    return {"submit": submit, "run": run}


def sequential(data: Path, sample: int) -> tuple[float, int]:
    from adjudication.reference import ReferenceSet, merge, read_dir
    from adjudication.rules import load_rules
    from sequential import adjudicate_sequentially

    reference = merge(ReferenceSet(), read_dir(data))
    claims = pl.read_csv(data / "claims.csv", infer_schema=False)
    clients = claims.get_column("client_prime").unique(maintain_order=True).head(max(1, sample // 40))
    queue = claims.filter(pl.col("client_prime").is_in(clients.implode())).head(sample).with_row_index("claim_pk")
    rows = queue.to_dicts()
    started = time.perf_counter()
    adjudicate_sequentially(rows, reference, load_rules())
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=4_000, help="claims for the sequential reference")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adjudication-bench-") as folder:
        work = Path(folder)
        data = work / "data"
        generate(args.claims, data, args.seed)
        floor_s = floor(data / "claims.csv", work / "floor.db")
        timings = product(data, f"sqlite:///{work / 'product.db'}")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        reference_s, reference_n = sequential(data, args.sample)
    total = timings["submit"] + timings["run"]
    per_claim_product = total / args.claims
    per_claim_reference = reference_s / reference_n
    print(f"date            {dt.date.today()}  machine {platform.machine()} {platform.processor() or ''} "
          f"python {platform.python_version()} polars {pl.__version__}")
    print(f"claims          {args.claims:,}")
    print(f"floor           {floor_s:8.2f} s   (polars read + one SQLite outcome row per claim)")
    print(f"product submit  {timings['submit']:8.2f} s")
    print(f"product run     {timings['run']:8.2f} s")
    print(f"product total   {total:8.2f} s   {args.claims / total:,.0f} claims/s   {total / floor_s:.2f}x floor")
    print(f"sequential ref  {reference_s:8.2f} s on {reference_n:,} claims = {per_claim_reference * 1e6:,.0f} us/claim"
          f"   product {per_claim_product * 1e6:,.1f} us/claim   speed-up {per_claim_reference / per_claim_product:,.0f}x")
    print(f"peak memory     {peak_mib:8.0f} MiB (largest product process)")


if __name__ == "__main__":
    main()
