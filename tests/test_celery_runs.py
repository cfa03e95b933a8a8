"""Runs through Celery (SPEC 6): a real worker process on the real Redis broker decides the
shards; what is stored equals an in-process run, and the sequential reference on random data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.rules import default_rules
from adjudication.shards import sharded
from conftest import ADJUDICATE, FIXTURES, ROOT, Cli, examples, require_server
from engine_helpers import RunByRun
from scenarios import batches, reference_sets
from test_engine_properties import check_one_run_per_batch
from test_store_properties import check_stored_runs
from worker import bootstrap
from worker.celery_app import make_celery
from worker.distributed import CeleryShards, leftovers, redis_client
from worker.settings import Settings

BROKER = "redis://127.0.0.1:6379/6"
SILENT_BROKER = "redis://127.0.0.1:6379/7"  # no worker listens here
RULES = default_rules()
CLIENTS = ["c01", "c02", "c03", "c04", "c05"]


@pytest.fixture(scope="module")
def celery_app(tmp_path_factory):
    """A Celery app whose broker has a running worker (`adjudicate worker`, two processes)."""
    require_server("Redis", "127.0.0.1", 6379)
    app = make_celery(Settings(broker_url=BROKER))
    app.control.purge()  # tasks a crashed earlier session left behind
    cwd = tmp_path_factory.mktemp("worker")
    worker = subprocess.Popen([str(ADJUDICATE), "--broker", BROKER, "worker", "--concurrency", "2", "--no-beat"],
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while not app.control.ping(timeout=1.0):
            if worker.poll() is not None or time.time() > deadline:
                raise AssertionError("the worker did not start:\n" + worker.communicate(timeout=30)[0].decode()[-3000:])
        yield app
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        log = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert leftovers(redis_client(BROKER)) == []  # no claim data left in the broker
    # The worker took tasks, and its log names them without their results (claim data).
    assert "adjudication.decide_shard[" in log and " received" in log, log[-3000:]
    assert "succeeded in" not in log, log[-3000:]


def stored(cli: Cli) -> str:
    return cli("outcomes", "--history", "--format", "csv").out


def two_batches(folder: Path, claims: int) -> tuple[Path, Path]:
    """A generated month of claims (with its reference data in `folder`) cut into two files, so the
    second run reads the ledger the first one wrote."""
    sys.path.insert(0, str(ROOT / "ops"))
    from generate import generate

    generate(claims, folder, seed=11)
    rows = pl.read_csv(folder / "claims.csv", infer_schema=False)
    halves = folder / "first.csv", folder / "second.csv"
    rows.gather_every(2).write_csv(halves[0])
    rows.gather_every(2, offset=1).write_csv(halves[1])
    (folder / "claims.csv").unlink()
    return halves


def test_a_run_through_workers_stores_what_an_in_process_run_stores(celery_app, db_url, tmp_path):
    data = tmp_path / "data"
    batches_ = two_batches(data, 6000)
    here = Cli(f"sqlite:///{tmp_path / 'here.db'}", tmp_path)
    there = Cli(db_url, tmp_path)
    for cli in (here, there):
        cli("db", "upgrade")
        cli("reference", "load", data)
    shards = {"ADJUDICATION_RUN_SHARDS": "3"}
    summaries = []
    for batch in batches_:
        here("submit", batch)
        summaries.append(here("run").out)
        there("submit", batch)
        assert there("--broker", BROKER, "run", env=shards).out == summaries[-1]  # same run id and counts
    assert stored(there) == stored(here)
    outcomes = pl.read_csv(stored(there).encode(), infer_schema=False)
    assert outcomes.height == 6000
    assert set(outcomes.get_column("status")) == {"paid", "suspended", "rejected"}
    assert outcomes.get_column("conflicts_with").drop_nulls().len() > 0  # colliding claims were decided


def test_a_run_through_workers_reports_each_shard_as_it_comes_back(celery_app, tmp_path):
    from adjudication.reference import ReferenceSet, merge
    from worker.files import read_reference_dir

    first, _second = two_batches(tmp_path, 800)
    rows = pl.read_csv(first, infer_schema=False).with_row_index("claim_pk").to_dicts()
    reported = []
    workers = CeleryShards(celery_app, timeout=60, progress=lambda *call: reported.append(call))
    result = RunByRun(merge(ReferenceSet(), read_reference_dir(tmp_path)), RULES, sharded(3, workers)).run(rows)
    assert result.outcomes.height == len(rows) == 400
    # One report per shard (10 clients in 3 shards: 2 or 3 of them), each counting the claims decided so far.
    assert 2 <= len(reported) <= 3
    done = [claims for _stage, claims, _total in reported]
    assert done == sorted(set(done)) and done[-1] == len(rows)
    assert {(stage, total) for stage, _claims, total in reported} == {("adjudicate", len(rows))}


def test_a_run_with_no_live_worker_fails_within_seconds(ready):
    require_server("Redis", "127.0.0.1", 6379)
    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    started = time.monotonic()
    failed = ready("--broker", SILENT_BROKER, "run", ok=False)
    assert time.monotonic() - started < 45  # not the hour of the timeout: the workers were pinged first
    assert failed.code == 3, failed.err  # a service unavailable
    assert "no worker answers on the broker" in failed.err and "nothing was stored" in failed.err
    assert len(failed.err.strip().splitlines()) == 1
    assert ready("outcomes", "--format", "csv").rows() == []
    [record] = ready("runs", "--format", "csv").rows()
    assert record["status"] == "failed" and "no worker answers on the broker" in record["failure"]
    assert "6 claims" in ready("run").out  # still queued, all of them


def test_a_timed_out_run_leaves_no_shard_in_the_broker():
    """The shards of a run that timed out are taken back: a worker started later finds none of them,
    and no message or answer with claim data is left in Redis."""
    require_server("Redis", "127.0.0.1", 6379)
    from worker.distributed import BrokerUnavailable

    client = redis_client(SILENT_BROKER)
    client.flushdb()
    with pytest.raises(BrokerUnavailable, match="did not decide all"):
        CeleryShards(make_celery(Settings(broker_url=SILENT_BROKER)), timeout=3, resend_seconds=0.5)(
            worked_example_shards(3), RULES)
    assert leftovers(client) == []
    assert client.llen("adjudication.shards") == 0 and client.hlen("unacked") == 0
    assert not list(client.scan_iter("adjudication:run:*"))


def worked_example_shards(count: int):
    """The worked example's claims in shards, as a run sends them."""
    from adjudication.engine import LEDGER_SCHEMA, check_records
    from adjudication.reference import ReferenceSet, merge
    from worker.files import read_reference_dir
    from adjudication.shards import split
    from engine_helpers import fields_frame

    reference = merge(ReferenceSet(), read_reference_dir(FIXTURES / "worked_example")).frames()
    rows = pl.read_csv(FIXTURES / "worked_example" / "claims.csv", infer_schema=False).with_row_index("claim_pk")
    checked = check_records(fields_frame(rows.with_columns(pl.col("claim_pk").cast(pl.Int64)).to_dicts()), RULES)
    return split(checked, reference, pl.DataFrame(schema=LEDGER_SCHEMA),
                 pl.DataFrame(schema={"claim_pk": pl.Int64, "code": pl.String}), count)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(reference=reference_sets(clients=CLIENTS), groups=batches(max_claims=30, clients=CLIENTS),
       count=st.integers(1, 5))
def test_runs_decided_by_the_workers_equal_the_sequential_reference(celery_app, reference, groups, count):
    runner = RunByRun(reference, RULES, sharded(count, CeleryShards(celery_app, timeout=60)))
    check_one_run_per_batch(runner, reference, groups)


def test_stored_runs_through_the_workers_equal_the_sequential_reference(celery_app, store, db_url, tmp_path):
    """The path of `adjudicate --broker URL run` (bootstrap.App.run: the shards decided by the worker)
    on the store, SQLite and PostgreSQL: batches of replacements and voids (of paid, suspended,
    unknown and reversed claims, of another client or provider), received dates at the timely
    filing boundary, enrollment boundaries, re-queues and overrides between runs, as the sequential
    reference decides them."""
    @settings(max_examples=examples(12), deadline=None, suppress_health_check=list(HealthCheck))
    @given(reference=reference_sets(clients=CLIENTS), groups=batches(max_claims=30, clients=CLIENTS),
           count=st.integers(1, 5), data=st.data())
    def check(reference, groups, count, data):
        app = bootstrap.build(database_url=db_url, broker_url=BROKER, run_shards=count, run_timeout_seconds=120)
        try:
            check_stored_runs(store, tmp_path, reference, groups, data, app.run)
        finally:
            app.engine.dispose()

    check()


def test_a_run_with_an_unreachable_broker_refuses_in_one_line(ready):
    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    dry = ready("--broker", "redis://127.0.0.1:1/0", "run", "--dry-run", ok=False)
    assert dry.code == 3 and ready("runs", "--format", "csv").rows() == []  # a dry run is no failed night
    refused = ready("--broker", "redis://127.0.0.1:1/0", "run", ok=False)
    assert refused.code == 3
    assert refused.err.startswith("error: unavailable: cannot reach the broker") and "the claims stay queued" in refused.err
    # Recorded as a failed run (the nightly alert reads the last run's status), then the claims run.
    [record] = ready("runs", "--format", "csv").rows()
    assert record["status"] == "failed" and record["failure"].startswith("cannot reach the broker")
    assert "6 claims" in ready("run").out


def test_a_shard_failing_on_its_worker_fails_the_run(celery_app):
    from adjudication.engine import Checked
    from adjudication.reference import ReferenceSet
    from adjudication.shards import Shard
    from worker.distributed import ShardsFailed

    frames = ReferenceSet().frames()
    broken = Shard(checked=Checked(pl.DataFrame({"order": [0]}), pl.Series([], dtype=pl.Int64)), reference=frames,
                   ledger=pl.DataFrame(), waivers=pl.DataFrame())
    with pytest.raises(ShardsFailed, match="a worker failed on a shard"):
        CeleryShards(celery_app, timeout=60)([broken], RULES)
