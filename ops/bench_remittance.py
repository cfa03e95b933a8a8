"""Time the run report and every remittance of a large run (SPEC section 8; BENCHMARKS.md).

Generates a run of N claims (ops/generate.py), submits and runs it on SQLite (or --db), then times,
as the commands do them (read the run, render, audit, write the files): `report` as JSON and as
HTML, and all remittances of the run as x12, csv and html.

    uv run python ops/bench_remittance.py --claims 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--work", type=Path, help="folder for the data and the files (default: temporary)")
    args = parser.parse_args()

    from bench import bench_limits, generated

    from worker.bootstrap import App
    from worker.settings import Settings
    from adjudication.rules import default_rules
    from worker import access, remittances, service
    from worker.store.database import make_engine, upgrade

    payer = App(Settings()).payer
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-remit-"))
    data = work / "data"
    if not (data / "claims.csv").exists():
        generated(args.claims, data, args.seed)
    if not args.db:
        for stale in work.glob("remit.db*"):
            stale.unlink()
    engine = make_engine(args.db or f"sqlite:///{work / 'remit.db'}")
    upgrade(engine)
    rules = default_rules()
    service.load_reference(engine, data)
    service.submit(engine, data / "claims.csv", rules, bench_limits(data / "claims.csv"))
    summary = service.run(engine, rules)
    access.bootstrap_admin(engine, "bench")  # exports need a registered operator (any role)
    print(f"run {summary.run_id}: {summary.claims:,} claims, {summary.paid:,} paid, {summary.suspended:,} suspended, "
          f"{summary.rejected:,} rejected", flush=True)

    def timed(label: str, work_fn) -> None:
        """Wall time, and the CPU time of all the process's threads (less sensitive to a busy machine)."""
        started, cpu = time.perf_counter(), time.process_time()
        detail = work_fn()
        print(f"  {label:<32} {time.perf_counter() - started:6.2f} s wall {time.process_time() - cpu:6.2f} s CPU  "
              f"{detail}", flush=True)

    def report(fmt: str):
        text = remittances.report(engine, summary.run_id, fmt, "bench")
        (work / f"report.{fmt}").write_text(text, encoding="utf-8")
        return f"{len(text) / 1e6:.1f} MB"

    def remit(fmt: str):
        out = work / fmt
        names = remittances.remittances(engine, summary.run_id, fmt, "bench", payer, out).names
        return f"{len(names):,} files, {sum((out / n).stat().st_size for n in names) / 1e6:.0f} MB"

    timed("report --format json", lambda: report("json"))
    timed("report --format html", lambda: report("html"))
    for fmt in ("x12", "csv", "html"):
        timed(f"remittance --format {fmt} (all)", lambda fmt=fmt: remit(fmt))
    print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"  peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; files in {work}")


if __name__ == "__main__":
    main()
