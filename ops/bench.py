"""Benchmark: every figure the performance issue asks for, measured in one run of one command.

    uv run python ops/bench.py                      # the whole issue: 1M, 5M, nightly batch, PostgreSQL
    uv run python ops/bench.py --claims 20000 --base 100000 --batch 5000 --sample 200   # same flow, small
    uv run python ops/bench.py --claims 1000000 --skip-5m --skip-pg                     # one size, SQLite

The machine is shared and noisy, so every target is a ratio of two figures taken minutes apart in
this run, never against a number from another day.

Floor: read the claim file with polars and write one outcome row per claim in one transaction:
executemany into a fresh SQLite file, or COPY into a fresh PostgreSQL table. Taken before and after
each run of the product. Noise only ever slows things down, so each side keeps its fastest: the
product is run --repeat times at the main size (--base-repeat at the large one), each on a fresh
database, and compared with the fastest floor around it. Peak memory is the highest of the runs.

Product: a child process per scenario (`--child-json`) calls worker.service the way the CLI does.
Timed inside it: submit and run (the product figure), and, as setup, schema upgrade and reference
load. Start-up (interpreter + product imports, from launch to imports done) is reported apart: the
CLI pays it twice, once for `adjudicate submit`, once for `adjudicate run`.

Peak memory: the child's VmHWM (/proc/self/status). Not ru_maxrss: Linux carries ru_maxrss across
execve, so a child reports at least the peak of the parent that spawned it (the parent holds
generated data and the floor's frames).

Sequential reference: tests/sequential.py in memory on the claims of the first clients. Its cost
per claim grows with the data, so the speed-up from a sample understates the real one.

Nightly batch: new clients (and their reference data), submitted and run on top of the --base
database, against the same batch on an empty database. Repeated --batch-repeat times with a fresh
batch each time (the same file twice is a no-op); the fastest of each side is compared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ops"), str(ROOT / "tests")]

MiB = 1024 * 1024
GiB = 1024 * MiB
OUTCOME_COLUMNS = "(claim_id TEXT, line INTEGER, status TEXT, reasons TEXT, paid_cents INTEGER)"


def say(text: str) -> None:
    print(text, flush=True)


# --- the product, in a child process --------------------------------------------------------

def bench_limits(claims: Path):
    """The product's default file limits, raised when a bench file is larger."""
    from adjudication.claim_file import Limits

    size = claims.stat().st_size
    return Limits(max(512 * MiB, size), max(2 * GiB, size))


def reference_label(p: dict | None) -> str:
    """What the product run's reference load held: clients (the generator gives each one plan and
    one CM enrollment), SPAs and providers."""
    rows = (p or {}).get("reference_rows") or {}
    return (f"{rows.get('plans.csv', 0):,} clients ({rows.get('spas.csv', 0):,} SPAs, "
            f"{rows.get('providers.csv', 0):,} providers)")


def child(spec: dict) -> dict:
    """Runs in the child: setup, then submit + run timed as the CLI calls them, then its own peak memory."""
    from worker import service
    from worker.bootstrap import build

    startup = time.time() - spec["launched"]
    # As `adjudicate --db URL [--broker URL]` builds it: settings' defaults (the limit on claims per
    # client and day, shards and timeout of a run through the workers).
    app = build(database_url=spec["url"], broker_url=spec.get("broker"))
    started = time.perf_counter()
    service.upgrade_schema(app.engine)
    upgrade = time.perf_counter() - started
    started = time.perf_counter()
    counts: dict[str, int] = {}
    for folder in spec["reference"]:
        for name, rows in service.load_reference(app.engine, Path(folder)).items():
            counts[name] = counts.get(name, 0) + rows
    reference = time.perf_counter() - started
    rules = app.rules
    claims = Path(spec["claims"])
    limits = bench_limits(claims)
    started = time.perf_counter()
    service.submit(app.engine, claims, rules, limits)
    submit = time.perf_counter() - started
    started = time.perf_counter()
    summary = app.run()
    run = time.perf_counter() - started
    app.engine.dispose()
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    return {"startup": startup, "upgrade": upgrade, "reference": reference, "reference_rows": counts,
            "submit": submit, "run": run,
            "total": submit + run, "peak_mib": peak_kib / 1024,
            **{k: getattr(summary, k, None) for k in ("claims", "paid", "suspended", "rejected")}}


def core_child(spec: dict) -> dict:
    """Runs in the child: the product's work with no database at all (read and check the claim file,
    parse it, the record checks and the edits, in memory), a lower bound on submit + run."""
    from adjudication.claim_file import read_claim_file
    from adjudication.engine import adjudicate
    from adjudication.reference import ReferenceSet, merge
    from adjudication.rules import default_rules
    from worker.files import read_reference_dir

    reference = ReferenceSet()
    for folder in spec["reference"]:
        reference = merge(reference, read_reference_dir(Path(folder)))
    frames, rules = reference.frames(), default_rules()
    claims = Path(spec["claims"])
    limits = bench_limits(claims)
    started = time.perf_counter()
    claim_file = read_claim_file(claims.name, claims.read_bytes(), limits)
    result = adjudicate(claim_file.rows.with_row_index("claim_pk").cast({"claim_pk": pl.Int64}), frames, rules)
    return {"total": time.perf_counter() - started, "claims": result.outcomes.height}


def in_child(spec: dict, label: str) -> dict | None:
    """This script's child mode (`--child-json`) in a fresh process: its result, or None (after
    printing why) when it fails."""
    done = subprocess.run([sys.executable, __file__, "--child-json", json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        say(f"  {label} FAILED (exit {done.returncode}):\n    {tail}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_memory(claims: Path, reference: list[Path]) -> float | None:
    """core_child in a fresh child process: its seconds, or None (after printing why) when it fails."""
    result = in_child({"claims": str(claims), "reference": [str(f) for f in reference], "core": True},
                      "in memory, no database")
    if result is None:
        return None
    say(f"  in memory, no database (read the file, parse, record checks, edits): {result['total']:.2f} s "
        f"for {result['claims']:,} claims")
    return result["total"]


def product(label: str, url: str, claims: Path, reference: list[Path], expected: int,
            broker: str | None = None) -> dict | None:
    """Run one scenario in a fresh child process; None (after printing why) when the product fails."""
    launched = time.time()
    spec = {"url": url, "claims": str(claims), "reference": [str(f) for f in reference], "launched": launched,
            "broker": broker}
    result = in_child(spec, f"{label}: product")
    if result is None:
        return None
    say(f"  {label}: submit {result['submit']:.2f} s + run {result['run']:.2f} s = {result['total']:.2f} s | "
        f"setup: start-up {result['startup']:.2f} s, upgrade {result['upgrade']:.2f} s, reference "
        f"{result['reference']:.2f} s | peak {result['peak_mib']:,.0f} MiB | "
        f"{result['claims']} claims: {result['paid']} paid, {result['suspended']} suspended, "
        f"{result['rejected']} rejected")
    if result["claims"] != expected:  # e.g. claims left queued by an earlier scenario, or some not run
        say(f"  {label}: WARNING the run adjudicated {result['claims']} claims, expected {expected}")
    return result


# --- floors ---------------------------------------------------------------------------------

def outcome_rows(claims: Path) -> pl.DataFrame:
    frame = pl.read_csv(claims, infer_schema=False)
    return frame.select("claim_id", line=pl.int_range(2, frame.height + 2), status=pl.lit("paid"),
                        reasons=pl.lit(""), paid_cents=pl.lit(0))


# The floor of issue 12: the outcome export's 18 columns, one row per claim, indexed by claim id.
EXPORT_COLUMNS = ("claim_id", "batch_id", "line", "status", "reasons", "spa_id", "paid_units", "paid_amount",
                  "conflicts_with", "carc", "attempt", "adjusts", "reversed_by", "provider_id", "client_prime",
                  "procedure_code", "modifier", "service_date")
EXPORT_TABLE = ("(claim_id TEXT, batch_id TEXT, line INTEGER, status TEXT, reasons TEXT, spa_id TEXT, "
                "paid_units TEXT, paid_amount TEXT, conflicts_with TEXT, carc TEXT, attempt INTEGER, adjusts TEXT, "
                "reversed_by TEXT, provider_id TEXT, client_prime TEXT, procedure_code TEXT, modifier TEXT, "
                "service_date DATE)")


def export_rows(claims: Path) -> pl.DataFrame:
    frame = pl.read_csv(claims, infer_schema=False)
    return frame.select(
        "claim_id", batch_id=pl.lit("B0123456789abcdef"), line=pl.int_range(2, frame.height + 2), status=pl.lit("paid"),
        reasons=pl.lit(""), spa_id=pl.lit(""), paid_units=pl.col("units"), paid_amount=pl.lit("0.00"),
        conflicts_with=pl.lit(""), carc=pl.lit(""), attempt=pl.lit(1), adjusts=pl.lit(None, pl.String),
        reversed_by=pl.lit(None, pl.String), provider_id="provider_id", client_prime="client_prime",
        procedure_code="procedure_code", modifier="modifier", service_date="service_date")


def sqlite_rows_floor(claims: Path, db: Path) -> float:
    """Issue 12's floor on SQLite: the export's 18 columns per claim, executemany, an index on claim_id."""
    return _sqlite_floor(lambda: export_rows(claims), EXPORT_TABLE, db, indexed=True)


def pg_rows_floor(claims: Path, url: str) -> float:
    """Issue 12's floor on PostgreSQL: the export's 18 columns per claim, COPY (csv), an index on claim_id."""
    return _pg_floor(lambda: export_rows(claims), EXPORT_TABLE, url, indexed=True)


def sqlite_floor(claims: Path, db: Path) -> float:
    """The floor before issue 12: five outcome columns per claim, no index."""
    return _sqlite_floor(lambda: outcome_rows(claims), OUTCOME_COLUMNS, db, indexed=False)


def _sqlite_floor(frame, columns: str, db: Path, indexed: bool) -> float:
    """Seconds to read the claim file into `frame()` and insert its rows into a fresh SQLite file."""
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    rows = frame()
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"CREATE TABLE outcomes {columns}")
    if indexed:
        connection.execute("CREATE INDEX outcomes_claim_id ON outcomes (claim_id)")
    with connection:
        # The plain way the issue names: executemany of rows built from whole columns.
        connection.executemany(f"INSERT INTO outcomes VALUES ({', '.join('?' * rows.width)})",
                               zip(*(column.to_list() for column in rows.iter_columns())))
    connection.close()
    elapsed = time.perf_counter() - started
    for stale in db.parent.glob(db.name + "*"):
        stale.unlink()
    return elapsed


def pg_floor(claims: Path, url: str, indexed: bool = False) -> float:
    """The floor before issue 12: COPY (csv, as the product's bulk writes) of five outcome columns.

    indexed: with a B-tree on claim_id (information)."""
    return _pg_floor(lambda: outcome_rows(claims), OUTCOME_COLUMNS, url, indexed)


def _pg_floor(frame, columns: str, url: str, indexed: bool) -> float:
    """Seconds to read the claim file into `frame()` and COPY it into a table created in the same transaction."""
    import psycopg

    started = time.perf_counter()
    buffer = io.BytesIO()
    frame().write_csv(buffer, include_header=False, null_value="\\N")
    with psycopg.connect(libpq(url)) as connection:  # commits on leaving the block
        connection.execute(f"CREATE TABLE bench_floor {columns}")
        if indexed:
            connection.execute("CREATE INDEX ON bench_floor (claim_id)")
        with connection.cursor().copy("COPY bench_floor FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
            copy.write(buffer.getvalue())
    elapsed = time.perf_counter() - started
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        connection.execute("DROP TABLE bench_floor")
    return elapsed


def around(label: str, floor, measure, repeat: int) -> tuple[dict | None, float]:
    """Floor and product in turn, the product `repeat` times, a floor before and after each:
    (the fastest product, with the highest peak memory of all, and the fastest floor)."""
    floors = [floor()]
    say(f"  {label} floor: {floors[0]:.2f} s")
    results = []
    for attempt in range(repeat):
        results.append(measure(attempt))
        floors.append(floor())
        say(f"  {label} floor: {floors[-1]:.2f} s")
    done = [r for r in results if r]
    if len(done) < len(results):
        return None, min(floors)
    fastest = min(done, key=lambda r: r["total"])
    fastest = {**fastest, "peak_mib": max(r["peak_mib"] for r in done), "repeat": repeat}
    say(f"  {label}: fastest of {repeat}: {fastest['total']:.2f} s; fastest floor {min(floors):.2f} s")
    return fastest, min(floors)


# --- the sequential reference ---------------------------------------------------------------

def sequential(data: Path, sample: int) -> tuple[float, int]:
    from adjudication.reference import ReferenceSet, merge
    from adjudication.rules import default_rules
    from worker.files import read_reference_dir
    from generate import CLAIMS_PER_CLIENT
    from sequential import adjudicate_sequentially

    reference = merge(ReferenceSet(), read_reference_dir(data))
    claims = pl.read_csv(data / "claims.csv", infer_schema=False)
    clients = claims.get_column("client_prime").unique(maintain_order=True).head(max(1, sample // CLAIMS_PER_CLIENT))
    queue = claims.filter(pl.col("client_prime").is_in(clients.implode())).head(sample).with_row_index("claim_pk")
    rows = queue.to_dicts()
    started = time.perf_counter()
    adjudicate_sequentially(rows, reference, default_rules())
    return time.perf_counter() - started, len(rows)


# --- data and databases ---------------------------------------------------------------------

# The share of lines that replace or void an earlier line, and of PSWs whose enrollment ends
# mid-month (issue 13: about 1%); --corrections sets it.
CORRECTIONS = 0.01


def generated(claims: int, out: Path, seed: int, **kwargs) -> Path:
    from generate import generate  # numpy: kept out of the child's start-up

    started = time.perf_counter()
    generate(claims, out, seed, **{"corrections": CORRECTIONS, **kwargs})
    say(f"  generated {claims:,} claims in {time.perf_counter() - started:.1f} s "
        f"({(out / 'claims.csv').stat().st_size / MiB:,.0f} MiB claim file)")
    return out


def libpq(url: str) -> str:
    """A URL psycopg.connect accepts (SQLAlchemy spells the driver in the scheme)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def pg_database(admin_url: str, suffix: str = ""):
    """A dedicated database for this run (CREATE DATABASE in autocommit), dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"adjudication_bench_{os.getpid()}{suffix}"
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield make_url(libpq(admin_url)).set(database=name).render_as_string(hide_password=False), version
    finally:
        with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- scenarios ------------------------------------------------------------------------------

def sqlite_scenario(data: Path, work: Path, claims: int, label: str, repeat: int) -> dict:
    """The product on a fresh SQLite file each time; the last one's file is kept (`db`)."""
    db = work / f"{label}.db"

    def measure(_attempt: int) -> dict | None:
        for stale in work.glob(f"{label}.db*"):
            stale.unlink()
        return product(f"SQLite {claims:,}", f"sqlite:///{db}", data / "claims.csv", [data], claims)

    result, floor_s = around(f"SQLite {claims:,}", lambda: sqlite_rows_floor(data / "claims.csv", work / "floor.db"),
                             measure, repeat)
    old_s = min(sqlite_floor(data / "claims.csv", work / "floor.db") for _ in range(2))
    say(f"  SQLite {claims:,} old floor (5 columns, no index; information): {old_s:.2f} s")
    return {"claims": claims, "product": result, "floor": floor_s, "old_floor": old_s, "db": db}


def pg_scenario(data: Path, admin_url: str, claims: int, repeat: int, workers: dict | None) -> dict:
    """The product on a fresh database each time; the floor on one of its own.

    workers: {"broker": URL, "concurrency": N} to measure it also with the edits decided by a Celery
    worker (`adjudicate --broker URL run`), for information.
    """
    def measure(broker: str | None):
        def one(attempt: int) -> dict | None:
            with pg_database(admin_url, f"p{attempt}") as (url, _version):
                label = f"PostgreSQL {claims:,}" + (" through a Celery worker" if broker else "")
                return product(label, url, data / "claims.csv", [data], claims, broker)
        return one

    with pg_database(admin_url, "floor") as (floor_url, version):
        floor = lambda: pg_rows_floor(data / "claims.csv", floor_url)  # noqa: E731
        result, floor_s = around(f"PostgreSQL {claims:,}", floor, measure(None), repeat)
        indexed_s = min(pg_floor(data / "claims.csv", floor_url) for _ in range(2))
        say(f"  PostgreSQL {claims:,} old floor (5 columns, no index; information): {indexed_s:.2f} s")
        cores = [c for c in (in_memory(data / "claims.csv", [data]) for _ in range(2)) if c is not None]
        distributed = None
        if workers:
            try:
                with celery_worker(workers["broker"], workers["concurrency"]):
                    distributed, distributed_floor = around(f"PostgreSQL {claims:,} through a Celery worker", floor,
                                                            measure(workers["broker"]), repeat)
                    floor_s = min(floor_s, distributed_floor)
            except Exception as error:  # no Redis, a worker that does not start: say so, keep the rest
                say(f"  PostgreSQL through a Celery worker FAILED: {error!r}"[:500])
    return {"claims": claims, "product": result, "floor": floor_s, "indexed_floor": indexed_s, "version": version,
            "in_memory": min(cores, default=None),
            "distributed": distributed, "workers": workers}


@contextlib.contextmanager
def celery_worker(broker: str, concurrency: int):
    """`adjudicate --broker URL worker` in a process of its own, its Redis database emptied first
    (the bench's own: --broker-url), stopped at the end."""
    import redis
    from worker.settings import Settings
    from worker.celery_app import make_celery

    redis.Redis.from_url(broker).flushdb()
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "worker", "--broker", broker, "worker", "--concurrency",
                                str(concurrency)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    control = make_celery(Settings(broker_url=broker)).control
    try:
        deadline = time.monotonic() + 60
        while not control.ping(timeout=1):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"the Celery worker did not start: {log.read()[-2000:].decode(errors='replace')}")
        say(f"  Celery worker started ({concurrency} threads, {broker})")
        yield
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def batch_scenario(base_db: Path, base: int, work: Path, args: argparse.Namespace) -> dict:
    """The nightly batch on top of the base database and on an empty one, alternately."""
    from generate import CLAIMS_PER_CLIENT

    base_clients = max(1, base // CLAIMS_PER_CLIENT)
    batch_clients = max(1, args.batch // CLAIMS_PER_CLIENT)
    empty, on_top = [], []
    for i in range(args.batch_repeat):
        data = generated(args.batch, work / f"batch{i}", args.seed + 1 + i,
                         client_offset=base_clients + i * batch_clients, claim_prefix=f"N{i}")
        empty_db = work / f"empty{i}.db"
        empty.append(product(f"batch {i + 1} on an empty database", f"sqlite:///{empty_db}",
                             data / "claims.csv", [data], args.batch))
        empty_db.unlink(missing_ok=True)
        on_top.append(product(f"batch {i + 1} on top of {base:,}", f"sqlite:///{base_db}",
                              data / "claims.csv", [data], args.batch))
    fastest = lambda results: min((r["total"] for r in results if r), default=None)  # noqa: E731
    return {"empty": fastest(empty), "on_top": fastest(on_top)}


def history_scenario(first_db: Path, first_data: Path, claims: int, work: Path, args: argparse.Namespace) -> dict:
    """Issue 12's history-independence lines: the same questions on the database of one run of
    `claims` and on one holding `args.history_runs` such runs (the first one's copy, then more runs of
    new clients and providers), timed in this process (no start-up), fastest of 5 each, the two
    databases taking turns."""
    import hashlib
    import shutil

    from adjudication.rules import default_rules
    from generate import CLAIMS_PER_CLIENT
    from worker import intake, service
    from worker.store.database import make_engine

    claims_file = first_data / "claims.csv"
    batch_id = service.batch_id_for(hashlib.sha256(claims_file.read_bytes()).hexdigest())
    sample = pl.read_csv(claims_file, infer_schema=False, n_rows=1000)
    claim_id = sample.get_column("claim_id")[500]
    engine = make_engine(f"sqlite:///{first_db}")
    suspended = service.outcomes(engine, status="suspended")
    engine.dispose()
    provider = (suspended.group_by("provider_id").len().sort("len", "provider_id", descending=[True, False])
                .get_column("provider_id")[0] if suspended.height else sample.get_column("provider_id")[0])
    rules = default_rules()
    questions = {
        f"outcomes --claim {claim_id} --history": lambda e: service.outcomes(e, claim_ids=(claim_id,), history=True),
        f"outcomes --provider {provider} --status suspended": lambda e: service.outcomes(
            e, provider=provider, status="suspended"),
        f"ack {batch_id}": lambda e: intake.acknowledgement(e, batch_id, rules),
    }

    def timings(databases: list[Path], rounds: int = 5) -> list[dict[str, float]]:
        """Fastest of `rounds` for each question on each database, the databases taking turns
        (one question on one, then on the other, ...): a slow moment of the machine falls on both."""
        engines = [make_engine(f"sqlite:///{db}") for db in databases]
        spent: list[dict[str, list[float]]] = [{name: [] for name in questions} for _ in engines]
        for name, ask in questions.items():
            for engine in engines:
                ask(engine)  # warm: the first read of a file pays the operating system's cache
            for _ in range(rounds):
                for engine, times in zip(engines, spent):
                    started = time.perf_counter()
                    ask(engine)
                    times[name].append(time.perf_counter() - started)
        for engine in engines:
            engine.dispose()
        return [{name: min(runs) for name, runs in times.items()} for times in spent]

    many_db = work / "history.db"
    shutil.copy(first_db, many_db)
    clients = max(1, claims // CLAIMS_PER_CLIENT)
    for i in range(1, args.history_runs):
        data = generated(claims, work / f"history{i}", args.seed + 100 + i, client_offset=(i + 1) * 10 * clients,
                         claim_prefix=f"H{i}")
        for name in ("providers.csv", "spas.csv", "claims.csv"):  # providers of their own
            frame = pl.read_csv(data / name, infer_schema=False)
            frame.with_columns(provider_id=pl.lit(f"R{i}") + pl.col("provider_id")).write_csv(data / name)
        if product(f"history run {i + 1} of {args.history_runs}", f"sqlite:///{many_db}", data / "claims.csv",
                   [data], claims) is None:
            return {"runs": args.history_runs, "one": timings([first_db])[0], "many": None}
        shutil.rmtree(data)
    one, many = timings([first_db, many_db])
    for name in questions:
        say(f"  {name}: {one[name] * 1000:.1f} ms on 1 run of {claims:,}, {many[name] * 1000:.1f} ms on "
            f"{args.history_runs} runs ({args.history_runs * claims:,} claims)")
    many_db.unlink()
    return {"runs": args.history_runs, "one": one, "many": many}


# --- report ---------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.machine()} ({cpu})"


def verdict(value: float | None, limit: float, at_least: bool = False) -> str:
    if value is None:
        return "ERROR"
    return "PASS" if (value >= limit if at_least else value <= limit) else "FAIL"


def report(args: argparse.Namespace, first: dict, speedup: tuple[float, int] | None, base: dict | None,
           batch: dict | None, pg: dict | None, history: dict | None = None) -> bool:
    """Print the target table and a BENCHMARKS.md row; True when every target passes."""
    n, p = first["claims"], first["product"]
    seq_s, seq_n = speedup or (None, args.sample)
    ratio = p and p["total"] / first["floor"]
    fold = p and speedup and (seq_s / seq_n) / (p["total"] / n)
    b = base and base["product"]
    scale = b and p and (b["total"] / base["claims"]) / (p["total"] / n)
    grow = batch and batch["on_top"] and batch["empty"] and batch["on_top"] / batch["empty"]
    q = pg and pg.get("product")
    pg_ratio = q and q["total"] / pg["floor"]

    rows = [  # (target, verdict, measured)
        (f"{n:,} claims on SQLite: submit + run <= 2x floor (18 columns, indexed)", verdict(ratio, 2),
         p and f"{ratio:.2f}x ({p['total']:.2f} s / {first['floor']:.2f} s), {n / p['total']:,.0f} claims/s; "
               f"old floor {first['old_floor']:.2f} s: {p['total'] / first['old_floor']:.2f}x"),
        (f">= 10x the sequential reference (in memory, {seq_n:,}-claim sample)", verdict(fold, 10, at_least=True),
         fold and f"{fold:,.0f}x ({seq_s / seq_n * 1e6:,.0f} vs {p['total'] / n * 1e6:,.1f} us/claim)"),
        (f"peak memory at {n:,} claims <= 2 GiB", verdict(p and p["peak_mib"], 2048),
         p and f"{p['peak_mib']:,.0f} MiB"),
        (f"reference load of {reference_label(p)}, information", "INFO", p and f"{p['reference']:.2f} s"),
    ]
    if history:
        for name, one in history["one"].items():
            many = history["many"] and history["many"][name]
            rows.append((f"{name}: {history['runs']} runs vs 1 (no more time)", verdict(many and one and many - one,
                                                                                        0.05),
                         many and f"{many * 1000:.1f} ms vs {one * 1000:.1f} ms"))
    if base:
        floor_scale = (base["floor"] / base["claims"]) / (first["floor"] / n)
        rows.append((f"{base['claims']:,} claims: cost per claim <= 1.3x that at {n:,}", verdict(scale, 1.3),
                     scale and f"{scale:.2f}x ({b['total']:.1f} s; the floor scaled {floor_scale:.2f}x; "
                               f"peak {b['peak_mib']:,.0f} MiB)"))
        rows.append((f"{args.batch:,}-claim batch on top of {base['claims']:,} <= 1.5x on empty", verdict(grow, 1.5),
                     grow and f"{grow:.2f}x ({batch['on_top']:.2f} s / {batch['empty']:.2f} s, "
                              f"fastest of {args.batch_repeat})"))
    if pg:
        rows.append((f"{n:,} claims on PostgreSQL: submit + run <= 2x PG floor (18 columns, indexed)",
                     verdict(pg_ratio, 2),
                     pg.get("error") or q and f"{pg_ratio:.2f}x ({q['total']:.2f} s / {pg['floor']:.2f} s), "
                                              f"{n / q['total']:,.0f} claims/s; old floor "
                                              f"{pg['indexed_floor']:.2f} s: {q['total'] / pg['indexed_floor']:.2f}x"))
    width = max(len(row[0]) for row in rows)
    issue_sizes = (n, args.base, args.batch) == (1_000_000, 5_000_000, 100_000)
    say("\nSummary" + ("" if issue_sizes else " (sizes differ from the issue's 1M / 5M / 100k)"))
    for target, result, measured in rows:
        say(f"  {target:<{width}}  {result:<5}  {measured or 'not measured (see above)'}")
    if p:
        say(f"  (the CLI adds {p['startup']:.2f} s of start-up per command: `adjudicate submit` + `adjudicate run`)")
    d = pg and pg.get("distributed")
    if q and d:
        say(f"  (information: PostgreSQL with the edits decided by a Celery worker, {pg['workers']['concurrency']} "
            f"threads on this machine: {d['total']:.2f} s, {d['total'] / pg['floor']:.2f}x the PG floor, "
            f"{d['total'] / q['total']:.2f}x in-process; peak {d['peak_mib']:,.0f} MiB in the run's process)")

    if q and pg.get("in_memory"):
        say(f"  (information: the same work in memory with no database, read, parse, record checks and edits, "
            f"{pg['in_memory']:.2f} s: {pg['in_memory'] / pg['floor']:.2f}x the PG floor before anything is stored)")

    import sqlalchemy

    versions = (f"Python {platform.python_version()}, polars {pl.__version__}, SQLAlchemy {sqlalchemy.__version__}, "
                f"SQLite {sqlite3.sqlite_version}")
    if pg and pg.get("version"):
        versions += f", PostgreSQL {pg['version']}"
    cells = [
        dt.date.today().isoformat(), machine(), versions, f"{n:,}", f"{first['floor']:.2f} s",
        p and f"{p['submit']:.2f} + {p['run']:.2f} = {p['total']:.2f} s", p and f"{ratio:.2f}x",
        p and f"{n / p['total']:,.0f}", p and f"{p['startup']:.2f} s", p and f"{p['peak_mib']:,.0f} MiB",
        fold and f"{fold:,.0f}x ({seq_n:,}-claim sample)",
        scale and f"{scale:.2f}x ({base['claims']:,} in {b['total']:.1f} s, peak {b['peak_mib']:,.0f} MiB)",
        grow and f"{grow:.2f}x ({args.batch:,}: {batch['on_top']:.2f} s / {batch['empty']:.2f} s)",
        pg and pg.get("floor") and f"{pg['floor']:.2f} s",
        q and f"{q['submit']:.2f} + {q['run']:.2f} = {q['total']:.2f} s", q and f"{pg_ratio:.2f}x",
    ]
    say("\nBENCHMARKS.md row")
    say("| date | machine | versions | claims | SQLite floor | submit + run | x floor | claims/s | start-up | "
        "peak memory | vs sequential | 5M / 1M per claim | batch on 5M / empty | PG floor | PG submit + run | "
        "PG x floor |")
    say("|" + "---|" * len(cells))
    say("| " + " | ".join(cell or "-" for cell in cells) + " |")
    return all(row[1] in ("PASS", "INFO") for row in rows)


def main() -> None:
    global CORRECTIONS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=int, default=1_000_000, help="main size: SQLite and PostgreSQL")
    parser.add_argument("--base", type=int, default=5_000_000, help="large size: scaling, and under the batch")
    parser.add_argument("--batch", type=int, default=100_000, help="nightly batch on top of --base")
    parser.add_argument("--repeat", type=int, default=3, help="product runs at --claims, SQLite and PostgreSQL "
                        "(fastest kept)")
    parser.add_argument("--base-repeat", type=int, default=2, help="product runs at --base (fastest kept)")
    parser.add_argument("--batch-repeat", type=int, default=3, help="batch measurements per side (fastest kept)")
    parser.add_argument("--sample", type=int, default=2_000, help="claims for the sequential reference")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corrections", type=float, default=CORRECTIONS,
                        help="share of replacements and voids (and of enrollments ending mid-month) in the data")
    parser.add_argument("--skip-5m", action="store_true", help="skip --base and the nightly batch")
    parser.add_argument("--history-runs", type=int, default=5, help="runs of --claims in the history database")
    parser.add_argument("--skip-history", action="store_true", help="skip the history-independence lines")
    parser.add_argument("--skip-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="server to create (and drop) a dedicated bench database on")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14",
                        help="Redis database for the run through a Celery worker (emptied first: the bench's own)")
    parser.add_argument("--worker-concurrency", type=int, default=os.cpu_count() or 1,
                        help="threads of the Celery worker")
    parser.add_argument("--skip-distributed", action="store_true",
                        help="skip the PostgreSQL run through a Celery worker (information, no target)")
    parser.add_argument("--child-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_json:
        spec = json.loads(args.child_json)
        print(json.dumps(core_child(spec) if spec.get("core") else child(spec)))
        return
    CORRECTIONS = args.corrections

    say(f"{dt.datetime.now():%Y-%m-%d %H:%M}  {machine()}  python {platform.python_version()} "
        f"polars {pl.__version__} SQLite {sqlite3.sqlite_version}; data with {CORRECTIONS:.1%} corrections")
    base = batch = pg = None
    with tempfile.TemporaryDirectory(prefix="adjudication-bench-") as folder:
        work = Path(folder)
        say(f"\n{args.claims:,} claims")
        data = generated(args.claims, work / "main", args.seed)
        first = sqlite_scenario(data, work, args.claims, "main", args.repeat)
        history = None
        if not args.skip_history and first["product"]:
            say(f"\nHistory: {args.history_runs} runs of {args.claims:,} claims against 1")
            history = history_scenario(first["db"], data, args.claims, work, args)
        first["db"].unlink(missing_ok=True)
        try:  # tests/sequential.py leans on adjudication.reference, which is not a stable API
            speedup = sequential(data, args.sample)
            say(f"  sequential reference: {speedup[0]:.2f} s on {speedup[1]:,} claims")
        except Exception as error:
            speedup = None
            say(f"  sequential reference FAILED: {error!r}")
        if not args.skip_pg:
            import psycopg

            try:
                workers = None if args.skip_distributed else {"broker": args.broker_url,
                                                              "concurrency": args.worker_concurrency}
                pg = pg_scenario(data, args.pg_url, args.claims, args.repeat, workers)
            except psycopg.Error as error:  # no server, no rights: say so, keep the SQLite figures
                pg = {"error": str(error).strip().splitlines()[0]}
                say(f"  PostgreSQL FAILED: {pg['error']}")
        if not args.skip_5m:
            say(f"\n{args.base:,} claims, then the {args.batch:,}-claim nightly batch on top")
            base_data = generated(args.base, work / "base", args.seed)
            base = sqlite_scenario(base_data, work, args.base, "base", args.base_repeat)
            (base_data / "claims.csv").unlink()
            if base["product"]:
                batch = batch_scenario(base["db"], args.base, work, args)
    sys.exit(0 if report(args, first, speedup, base, batch, pg, history) else 1)


if __name__ == "__main__":
    main()
