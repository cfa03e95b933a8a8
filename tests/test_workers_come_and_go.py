"""Workers and the broker fail mid-run (issue 14): real worker processes killed with SIGKILL, and a
Redis server of the test's own (port 6391) restarted mid-run. The run ends within a bounded time
with the outcomes of an in-process run, and leaves no message or answer with claim data in Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from conftest import ADJUDICATE, ROOT, Cli, require_server, stop_processes
from worker.celery_app import make_celery
from worker.distributed import SHARDS_QUEUE, leftovers
from worker.settings import Settings

PORT = 6391
BROKER = f"redis://127.0.0.1:{PORT}/0"
CLAIMS = 40000
# A silent shard is sent again after 3 s (+ its size's share); a run that hangs fails the test in 2 min.
RUN_ENV = {"ADJUDICATION_RUN_SHARDS": "4", "ADJUDICATION_RUN_SHARD_RESEND_SECONDS": "3",
           "ADJUDICATION_RUN_TIMEOUT_SECONDS": "150"}


class RedisServer:
    """redis-server on its own port, without persistence: a restart loses every key."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=PORT)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def broker(tmp_path):
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (CI=true: server tests must run)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def queued(tmp_path):
    """Two databases holding the same generated queue: one for the distributed run, one for the
    in-process run it must equal."""
    sys.path.insert(0, str(ROOT / "ops"))
    from generate import generate

    data = tmp_path / "data"
    claims = generate(CLAIMS, data, seed=14)
    clis = []
    for name in ("there", "here"):
        cli = Cli(f"sqlite:///{tmp_path / (name + '.db')}", tmp_path)
        cli("db", "upgrade")
        cli("reference", "load", data)
        cli("submit", claims)
        clis.append(cli)
    there, here = clis
    expected = here("run").out, here("outcomes", "--format", "csv").out
    return there, expected


class Workers:
    def __init__(self, db: str, folder: Path):
        self.db, self.folder = db, folder
        self.processes: dict[str, subprocess.Popen] = {}
        self.control = make_celery(Settings(broker_url=BROKER)).control

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.folder / f"worker-{name}.log", "wb")
        process = subprocess.Popen(
            [str(ADJUDICATE), "--db", self.db, "--broker", BROKER, "worker", "-n", f"{name}@test", "-c", "1",
             "-Q", "adjudication.shards"],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        deadline = time.monotonic() + 90
        while not self.answers(name):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start: " + self.log(name)[-2000:])
        return process

    def answers(self, name: str) -> bool:
        try:
            return any(f"{name}@test" in reply for reply in self.control.ping(timeout=0.5))
        except redis.ConnectionError:  # a connection pooled in this process to a Redis since restarted
            return False

    def log(self, name: str) -> str:
        return (self.folder / f"worker-{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop_all(self) -> None:
        stop_processes(list(self.processes.values()))


@pytest.fixture
def workers(queued, broker, tmp_path):
    there, _ = queued
    pool = Workers(there.db, tmp_path)
    yield pool
    pool.stop_all()


def start_run(cli: Cli) -> subprocess.Popen:
    return subprocess.Popen([str(ADJUDICATE), "--db", cli.db, "--broker", BROKER, "run"], cwd=cli.cwd,
                            env={**os.environ, **RUN_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.01)


def clean(client: redis.Redis) -> None:
    """No message or answer with claim data of the run is left in Redis."""
    assert leftovers(client) == []
    assert client.llen(SHARDS_QUEUE) == 0
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    assert not list(client.scan_iter("adjudication:run:*"))


def test_a_shard_whose_worker_is_killed_is_decided_by_another(queued, workers):
    require_server("Redis", "127.0.0.1", PORT)
    there, (summary, outcomes) = queued
    client = redis.Redis(port=PORT)
    workers.start("a")
    run = start_run(there)
    # Worker a holds a shard (delivered, not acknowledged): kill it outright.
    wait_for(lambda: client.hlen("unacked") > 0, 60, "worker a to take a shard")
    workers.kill("a")
    killed = time.monotonic()
    assert client.hlen("unacked") > 0  # its shard: Redis would give it back only after an hour
    workers.start("b")
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert time.monotonic() - killed < 60  # not the run's timeout
    assert out == summary
    assert there("outcomes", "--format", "csv").out == outcomes
    assert "has not answered; sending it again" in err  # the killed worker's shard
    clean(client)


def test_a_broker_restart_mid_run_is_survived(queued, workers, broker):
    require_server("Redis", "127.0.0.1", PORT)
    there, (summary, outcomes) = queued
    client = redis.Redis(port=PORT)
    workers.start("a")
    workers.start("b")
    run = start_run(there)
    wait_for(lambda: client.hlen("unacked") > 0, 60, "a worker to take a shard")
    broker.kill()  # every key lost: queued shards, the run's keys, the answers
    time.sleep(2)
    broker.start()
    restarted = time.monotonic()
    out, err = run.communicate(timeout=180)
    assert time.monotonic() - restarted < 60
    assert run.returncode == 0, err
    assert out == summary
    assert there("outcomes", "--format", "csv").out == outcomes
    clean(client)


def test_a_run_killed_outright_leaves_its_shards_to_the_next_run(queued, broker, tmp_path):
    """A run process killed with SIGKILL cannot clean up: the next run removes its shard messages."""
    require_server("Redis", "127.0.0.1", PORT)
    from worker.distributed import CeleryShards
    from test_celery_runs import RULES, worked_example_shards

    client = redis.Redis(port=PORT)
    celery = make_celery(Settings(broker_url=BROKER))
    # What a killed run leaves: its shard messages queued, its open key expired (or never refreshed).
    orphan = CeleryShards(celery, timeout=1, resend_seconds=100)
    orphan._close = lambda token, unanswered: None  # killed: no clean-up
    with pytest.raises(Exception, match="did not decide"):
        orphan(worked_example_shards(1), RULES)
    assert client.llen(SHARDS_QUEUE) == 1
    for key in client.scan_iter("adjudication:run:*:open"):
        client.delete(key)  # its keys expire after the run's deadline
    assert client.llen(SHARDS_QUEUE) == 1
    with pytest.raises(Exception, match="did not decide"):
        CeleryShards(celery, timeout=1, resend_seconds=100)(worked_example_shards(1), RULES)
    clean(client)


def test_a_run_whose_shards_never_came_back_says_why():
    """Past the run's timeout: a shard sent again and again while the others came back took its
    workers down (no broker trouble: exit 1, naming it); nothing came back at all: no worker took
    the shards (a service unavailable: exit 3)."""
    from worker.distributed import BrokerUnavailable, ShardsFailed, _missing, _Pending

    lost = _missing(4, 120, [_Pending(2, 250_000, sends=3)])
    assert type(lost) is ShardsFailed
    assert str(lost) == ("the workers did not decide all 4 shards within 120 s (1 missing: shard 2 of 250,000 claims "
                         "sent 3 times, never answered while the others were: the workers that took it may have "
                         "died deciding it (out of memory?); see the workers' logs)")
    for missing in ([_Pending(i, 10, sends=3) for i in range(4)], [_Pending(1, 10, sends=1)]):
        idle = _missing(4, 120, missing)
        assert type(idle) is BrokerUnavailable and "is a worker running" in str(idle)
