"""`adjudicate beat` and the workers, for real (Redis databases 8 to 10): the nightly run on its
schedule (a fast interval: a crontab's finest grain is a minute), the drop-folder sweep, the beat's
state outside the working folder, one run at a time whatever the beats, and `health`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab

from conftest import ADJUDICATE, FIXTURES, require_server, stop_processes
from worker.schedule import run_schedule


class Processes:
    """`adjudicate worker` and `adjudicate beat` processes of one test, stopped at its end."""

    def __init__(self, folder: Path, db: str, broker: str, env: dict):
        self.folder, self.db, self.broker, self.env = folder, db, broker, {**os.environ, **env}
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        process = subprocess.Popen([str(ADJUDICATE), "--db", self.db, "--broker", self.broker, *args],
                                   cwd=cwd or self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_processes([process for _name, process in self.started])


@pytest.fixture
def processes(ready, tmp_path, request):
    require_server("Redis", "127.0.0.1", 6379)
    broker = request.param
    import redis

    redis.Redis.from_url(broker).flushdb()
    env = {"ADJUDICATION_STATE_DIR": str(tmp_path / "state"), "ADJUDICATION_TIMEZONE": "UTC"}
    started = Processes(tmp_path, ready.db, broker, env)
    yield started
    started.stop()


def wait_until(condition, seconds: float, what: str, logs=lambda: "") -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}\n{logs()[-3000:]}")
        time.sleep(0.5)


def runs(db: str) -> list[tuple]:
    """The recorded runs, read without a write (another process may hold the write lock)."""
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT run_id, claims FROM runs ORDER BY run_id").fetchall()


def test_the_run_schedule_is_a_crontab_or_a_fast_interval():
    assert run_schedule("every 5s") == timedelta(seconds=5)
    assert run_schedule("every 2m") == timedelta(minutes=2)
    nightly = run_schedule("0 2 * * *")
    assert isinstance(nightly, crontab) and nightly.hour == {2} and nightly.minute == {0}


def test_a_schedule_that_is_neither_refuses_in_one_line(cli):
    refused = cli("--broker", "redis://127.0.0.1:6379/8", "beat", ok=False,
                  env={"ADJUDICATION_RUN_SCHEDULE": "at two"})
    assert refused.code == 1 and refused.err.startswith("error: configuration") and "at two" in refused.err


@pytest.mark.parametrize("options", [("-c", "1"), ("--pool", "solo"), ("-c", "1", "-Q", "adjudication.intake,adjudication.shards")])
def test_a_worker_with_one_slot_for_both_queues_is_refused(cli, options):
    """Its scheduled run would hold the only slot while waiting for shards only it could decide."""
    refused = cli("--broker", "redis://127.0.0.1:6379/8", "worker", *options, ok=False)
    assert refused.code == 1 and refused.err.startswith("error: a worker taking both queues needs --concurrency 2")
    assert len(refused.err.strip().splitlines()) == 1


@pytest.mark.parametrize("processes", ["redis://127.0.0.1:6379/8"], indirect=True)
def test_beat_runs_the_night_on_its_schedule_and_sweeps_the_drop_folder(processes, ready, tmp_path):
    drop, cwd = tmp_path / "drop", tmp_path / "cwd"
    drop.mkdir()
    cwd.mkdir()
    shutil.copy(FIXTURES / "worked_example" / "claims.csv", drop / "claims.csv")
    old = time.time() - 60
    os.utime(drop / "claims.csv", (old, old))
    processes.env.update({"ADJUDICATION_DROP_FOLDER": str(drop), "ADJUDICATION_DROP_INTERVAL_SECONDS": "1",
                          "ADJUDICATION_DROP_SETTLE_SECONDS": "0", "ADJUDICATION_RUN_SCHEDULE": "every 3s",
                          "ADJUDICATION_LOG_LEVEL": "INFO"})  # the scheduled run's summary is logged at info
    processes.start("worker", "worker", "-n", "both@test", "--concurrency", "2")
    processes.start("beat", "beat", cwd=cwd)
    logs = lambda: processes.log("worker") + processes.log("beat")  # noqa: E731
    wait_until(lambda: (drop / "accepted" / "claims.csv").exists(), 90, "the sweep", logs)
    assert (drop / "accepted" / "claims.csv.ack.json").exists()
    wait_until(lambda: runs(ready.db) == [(1, 6)], 60, "the scheduled run", logs)
    assert "scheduled run 1: 6 claims, 4 paid, 2 suspended, 0 rejected" in processes.log("worker")
    assert len(ready("outcomes", "--format", "csv").rows()) == 6
    # The beat keeps its state in ADJUDICATION_STATE_DIR, never in its working folder.
    assert list(cwd.iterdir()) == []
    assert any(path.name.startswith("beat-schedule") for path in (tmp_path / "state").iterdir())
    # Celery's own command line sees the same app, its worker and its queues.
    celery = Path(str(ADJUDICATE)).with_name("celery")
    inspected = subprocess.run([str(celery), "-A", "worker.celery_app", "inspect", "active_queues", "--json"],
                               capture_output=True, text=True, timeout=60, cwd=cwd,
                               env={**processes.env, "ADJUDICATION_BROKER_URL": processes.broker})
    assert inspected.returncode == 0, inspected.stderr
    queues = json.loads(inspected.stdout.strip().splitlines()[-1])
    assert {q["name"] for q in queues["both@test"]} == {"adjudication.shards", "adjudication.intake"}


@pytest.mark.parametrize("processes", ["redis://127.0.0.1:6379/9"], indirect=True)
def test_two_beats_and_a_held_run_lock_never_run_twice_at_once(processes, ready, tmp_path):
    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    holder = sqlite3.connect(ready.db.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a run in progress, as far as the lock goes
    holder.execute("UPDATE run_lock SET holder = 'run' WHERE id = 1")
    processes.env["ADJUDICATION_RUN_SCHEDULE"] = "every 2s"
    processes.start("worker", "worker", "--concurrency", "3")
    processes.start("beat-1", "beat")
    processes.env["ADJUDICATION_STATE_DIR"] = str(tmp_path / "state-2")
    processes.start("beat-2", "beat")
    skipped = "scheduled run skipped: another run holds the run lock"
    wait_until(lambda: processes.log("worker").count(skipped) >= 2, 90, "the scheduled runs to find the lock",
               lambda: processes.log("worker"))
    assert runs(ready.db) == []
    holder.rollback()
    holder.close()
    wait_until(lambda: runs(ready.db) == [(1, 6)], 60, "one run", lambda: processes.log("worker"))
    time.sleep(6)  # more ticks of both beats: nothing left to run
    assert runs(ready.db) == [(1, 6)]
    history = ready("outcomes", "--history", "--format", "csv").rows()
    assert len(history) == 6 and {row["attempt"] for row in history} == {"1"}
    assert "database is locked" not in processes.log("worker")


@pytest.mark.parametrize("processes", ["redis://127.0.0.1:6379/10"], indirect=True)
def test_health_names_the_queue_no_worker_takes(processes, ready):
    processes.start("worker", "worker", "-Q", "adjudication.intake", "-n", "intake-only@test", "--loglevel", "WARNING")
    wait_until(lambda: "intake-only@test" in ready("--broker", processes.broker, "health", ok=False).out, 90,
               "the worker", lambda: processes.log("worker"))
    checked = ready("--broker", processes.broker, "health", "--format", "json", ok=False)
    assert checked.code == 3
    report = json.loads(checked.out)
    assert not report["healthy"]
    workers = next(c for c in report["checks"] if c["check"] == "workers")
    assert not workers["ok"] and "adjudication.shards: none" in workers["detail"]
    assert "adjudication.intake: intake-only@test" in workers["detail"]
    # A run needs a worker on the shards queue: it says so at once (exit 3).
    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    refused = ready("--broker", processes.broker, "run", ok=False)
    assert refused.code == 3 and "adjudication.shards" in refused.err
