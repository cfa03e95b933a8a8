"""`adjudicate beat` and the workers, for real (Redis databases 8 to 10): the nightly run on its
schedule (a fast interval: a crontab's finest grain is a minute), the drop-folder sweep, the beat's
state outside the working folder, one run at a time whatever the beats, and `health`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
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


@pytest.mark.parametrize("schedule, why", [
    ("at two", "'at two' is neither a crontab of 5 fields"),
    ("every 0s", "'every 0s': an interval is at least 1 second"),  # beat would send thousands of runs a second
    ("61 * * * *", "'61 * * * *': its minute field '61' is not valid"),
    ("0 2 * * funday", "'0 2 * * funday': its day of week field 'funday' is not valid"),
    ("0 2 31 2 *", "'0 2 31 2 *' never comes: none of its months has that day"),
])
def test_a_schedule_that_cannot_be_kept_refuses_in_one_line(cli, schedule, why):
    for command in ("beat", "health"):
        refused = cli("--broker", "redis://127.0.0.1:6379/8", command, ok=False,
                      env={"ADJUDICATION_RUN_SCHEDULE": schedule})
        assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1, (command, refused.err)
        assert refused.err.startswith(f"error: configuration: ADJUDICATION_RUN_SCHEDULE {why}"), refused.err
    assert isinstance(run_schedule("0 2 30 2,4 *"), crontab)  # 30 April comes


def test_a_bad_setting_is_named_in_one_line(cli):
    refused = cli("runs", ok=False, env={"ADJUDICATION_RUN_SHARDS": "0"})
    assert (refused.code, refused.err.strip()) == (
        1, "error: configuration: ADJUDICATION_RUN_SHARDS: Input should be greater than or equal to 1")


KILLED_RUN = """
import sys, time
from types import SimpleNamespace
import redis
from worker import schedule
from worker.store.database import make_engine

app = SimpleNamespace(engine=make_engine(sys.argv[1]), run=lambda: time.sleep(600),
                      settings=SimpleNamespace(scheduled_lock_seconds=2.0))
schedule.scheduled_run(app, redis.Redis.from_url(sys.argv[2]))
"""


def test_a_scheduled_runs_broker_lock_is_renewed_while_it_runs_and_lapses_when_it_is_killed(store, db_url):
    """The broker lock of a scheduled run outlives its unrenewed life while the run goes on (another
    scheduled run skips meanwhile), and lapses soon after the run's process is killed (instead of
    after the run's whole timeout): then the next scheduled run runs."""
    import signal
    from types import SimpleNamespace

    import redis

    from worker import schedule

    require_server("Redis", "127.0.0.1", 6379)
    broker = "redis://127.0.0.1:6379/11"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    running = subprocess.Popen([sys.executable, "-c", KILLED_RUN, db_url, broker], start_new_session=True)
    settings = SimpleNamespace(scheduled_lock_seconds=2.0)
    try:
        wait_until(lambda: client.exists(schedule.SCHEDULED_RUN_LOCK), 30, "the scheduled run")
        time.sleep(5)  # longer than the lock lives unrenewed
        assert client.exists(schedule.SCHEDULED_RUN_LOCK) and 0 < client.pttl(schedule.SCHEDULED_RUN_LOCK) <= 2000
        waiting = SimpleNamespace(engine=store, settings=settings, run=lambda: pytest.fail("ran beside the other"))
        assert schedule.scheduled_run(waiting, client) == {"skipped": "another scheduled run is in progress"}
        running.send_signal(signal.SIGKILL)
        running.wait(30)
        wait_until(lambda: not client.exists(schedule.SCHEDULED_RUN_LOCK), 5, "the lock to lapse")
        night = SimpleNamespace(run_id=1, claims=6, paid=4, suspended=2, rejected=0)
        done = schedule.scheduled_run(SimpleNamespace(engine=store, settings=settings, run=lambda: night), client)
        assert done == {"run_id": 1, "claims": 6, "paid": 4, "suspended": 2, "rejected": 0}
        assert not client.exists(schedule.SCHEDULED_RUN_LOCK)  # released when the run is done
    finally:
        running.kill()
        client.flushdb()


@pytest.mark.parametrize("processes", ["redis://127.0.0.1:6379/11"], indirect=True)
def test_a_scheduled_run_handed_back_after_its_process_was_killed_runs_the_night(processes, ready):
    """Celery hands a killed process's message back at once, while the dead run's broker lock still
    lives: the run finds it, skips without holding a worker thread, and is tried once more when the
    lock would have lapsed unrenewed; then it runs the night."""
    import redis

    from worker import schedule
    from worker.celery_app import make_celery
    from worker.settings import Settings

    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    client = redis.Redis.from_url(processes.broker)
    processes.env.update({"ADJUDICATION_SCHEDULED_LOCK_SECONDS": "8", "ADJUDICATION_LOG_LEVEL": "INFO"})
    processes.start("worker", "worker", "--concurrency", "2")
    celery = make_celery(Settings(broker_url=processes.broker))
    wait_until(lambda: celery.control.inspect(timeout=1).ping(), 60, "the worker", lambda: processes.log("worker"))
    client.set(schedule.SCHEDULED_RUN_LOCK, "a-killed-run", px=8_000)  # its renewals stopped: at most one life left
    celery.send_task(schedule.RUN, expires=6 * 3600)
    skipped = "scheduled run skipped: another scheduled run is in progress"
    wait_until(lambda: skipped in processes.log("worker"), 30, "the first try", lambda: processes.log("worker"))
    assert runs(ready.db) == []
    wait_until(lambda: runs(ready.db) == [(1, 6)], 60, "the second try", lambda: processes.log("worker"))
    assert processes.log("worker").count(skipped) == 1


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
