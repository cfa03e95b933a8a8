"""Shared fixtures: the real `adjudicate` entry point on a temporary SQLite database."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ADJUDICATE = Path(sys.executable).with_name("adjudicate")


# HYPOTHESIS_PROFILE=long: a campaign (README, "Tests"): property tests run HYPOTHESIS_SCALE (default
# 20) times their usual examples, and hypothesis prints the blob that reproduces a failure.
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
hypothesis.settings.register_profile("long", print_blob=True)
hypothesis.settings.load_profile("long" if LONG else "default")


def examples(count: int) -> int:
    """A property test's number of examples: `count`, scaled up under HYPOTHESIS_PROFILE=long."""
    return count * int(os.environ.get("HYPOTHESIS_SCALE", 20)) if LONG else count


@dataclass
class Result:
    code: int
    out: str
    err: str

    def rows(self) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.out)))


# The operators every test database gets (SPEC section 5: every action by a registered operator
# holding its role): `root` the first admin, `ann` re-queues, withdraws, exports and overrides.
ADMIN = "root"
OPERATOR = "ann"
STAFF_ENV = {"ADJUDICATION_OPERATOR": OPERATOR}  # what a command runs as when given no --operator


def add_staff(store) -> None:
    """Register the test operators (in-process: setting up is not what is tested). `store` is a
    database URL or an engine."""
    from worker import access
    from worker.store.database import make_engine

    engine = make_engine(store) if isinstance(store, str) else store
    access.bootstrap_admin(engine, ADMIN)
    for role in ("operator", "override"):
        access.grant(engine, OPERATOR, role, ADMIN, "test set-up")
    if isinstance(store, str):
        engine.dispose()


@dataclass
class Cli:
    """`adjudicate --db DB ARGS` in a subprocess. Runs as `ann` when given no --operator; a plain
    `db upgrade` also registers the test operators (add_staff) unless `staff` is False."""

    db: str
    cwd: Path
    staff: bool = True

    def __call__(self, *args: str, ok: bool = True, env: dict | None = None) -> Result:
        done = subprocess.run([str(ADJUDICATE), "--db", self.db, *map(str, args)], capture_output=True, text=True,
                              cwd=self.cwd, env={**os.environ, **STAFF_ENV, **(env or {})}, timeout=300)
        result = Result(done.returncode, done.stdout, done.stderr)
        if ok:
            assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
        if self.staff and done.returncode == 0 and tuple(map(str, args)) == ("db", "upgrade"):
            add_staff(self.db)
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(f"sqlite:///{tmp_path / 'test.db'}", tmp_path)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    """A database with the schema and the worked example's reference data."""
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    return cli


PG_ADMIN = os.environ.get("ADJUDICATION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip with a reason when a server is missing; under CI=true that is a failure instead."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: server tests must run)")
    pytest.skip(message)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg

    require_server("PostgreSQL", "127.0.0.1", 5432)
    name = f"adj_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url):
    """An upgraded store on each of the two databases, with the test operators registered; tests
    empty it with `reset_store`."""
    from worker.store.database import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    add_staff(engine)
    yield engine
    engine.dispose()


def reset_store(engine) -> None:
    """Empty every table (hypothesis runs many examples on one store), keeping the lock row and the
    audit trail (append-only: its triggers refuse DELETE), and register the test operators again."""
    from sqlalchemy import delete, insert

    from worker.store import schema as t

    with engine.begin() as conn:
        for table in reversed(t.metadata.sorted_tables):
            if table is not t.audit:
                conn.execute(delete(table))
        conn.execute(insert(t.run_lock).values(id=1, holder=None))
    add_staff(engine)


def stop_processes(processes) -> None:
    """Stop processes started in their own session (workers, beats): SIGTERM to each group, then
    SIGKILL to those still running after a minute."""
    import signal

    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
