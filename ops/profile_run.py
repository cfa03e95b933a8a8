"""Where one submit + run spends its time, step by step: the breakdowns BENCHMARKS.md quotes.

    uv run python ops/profile_run.py                       # 1M claims, SQLite
    uv run python ops/profile_run.py --pg                  # 1M claims, PostgreSQL (a scratch database)
    uv run python ops/profile_run.py --claims 5000000

Generates seeded data (ops/generate.py), loads it into a fresh database, then times `service.submit`
and `service.run` with a timer around each of their steps (nested steps are timed inside their
callers: store_attempts inside store_run). Figures from one run on a shared machine are noisy;
compare steps within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ops")]

from bench import generated, pg_database  # noqa: E402

# (module, function): the steps of submit and run, in the order they happen.
STEPS = (
    ("worker.service", "unpack"),
    ("worker.service", "parse_unpacked"),
    ("worker.service", "_store_batch"),  # everything below up to the run
    ("worker.service", "fields_to_keep"),  # parsing the claims once: the count printed, the fields kept
    ("worker.store.repository", "store_payload"),
    ("worker.store.repository", "queued_claims"),
    ("worker.store.repository", "reference_frames"),
    ("worker.store.repository", "ledger_for"),
    ("worker.store.repository", "holders_for"),
    ("worker.service", "check_records"),
    ("adjudication.engine", "decide"),
    ("adjudication.engine", "_static"),  # inside decide: the checks of each claim on its own,
    ("adjudication.engine", "_lookups"),  # of which the reference matches (plan, SPA, enrollments)
    ("adjudication.engine", "_walk"),  # inside decide: the ordered walk
    ("worker.store.repository", "run_state"),
    ("worker.store.repository", "store_run"),
    ("worker.store.repository", "store_attempts"),  # inside store_run
)


def timed(spent: dict[str, float], name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
    return wrapper


def profile(url: str, data: Path) -> None:
    import importlib

    from adjudication.claim_file import Limits
    from adjudication.rules import default_rules
    from worker import service
    from worker.settings import Settings
    from sqlalchemy import func, select

    from worker.store import schema as t
    from worker.store.database import make_engine

    engine = make_engine(url)
    service.upgrade_schema(engine)
    service.load_reference(engine, data)
    rules = default_rules()
    spent: dict[str, float] = {}
    for module_name, name in STEPS:
        module = importlib.import_module(module_name)
        setattr(module, name, timed(spent, name, getattr(module, name)))
    decide = importlib.import_module("adjudication.engine").decide  # run's default decider is bound early
    started = time.perf_counter()
    service.submit(engine, data / "claims.csv", rules, Limits(4 << 30, 8 << 30))
    submit = time.perf_counter() - started
    started = time.perf_counter()
    service.run(engine, rules, decider=decide,
                max_claims_per_client_day=Settings().run_max_claims_per_client_day)
    run = time.perf_counter() - started
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(t.attempts)).scalar() or 0
    engine.dispose()
    print(f"submit {submit:.2f} s + run {run:.2f} s = {submit + run:.2f} s; {rows} attempt rows")
    for _module, name in STEPS:
        if name in spent:
            print(f"  {name:18s} {spent[name]:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a database the scratch database is created from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adjudication-profile-") as folder:
        work = Path(folder)
        data = generated(args.claims, work / "data", args.seed)
        with contextlib.ExitStack() as stack:
            if args.pg:
                url, _version = stack.enter_context(pg_database(args.pg_url))
            else:
                url = f"sqlite:///{work / 'profile.db'}"
            profile(url, data)


if __name__ == "__main__":
    main()
