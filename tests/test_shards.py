"""Runs split by client (adjudication.shards) equal the sequential reference, decided here or
through the Celery task's messages, on dense random data with more clients than shards."""

from __future__ import annotations

import os

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.engine import check_records
from adjudication.rules import default_rules
from adjudication.shards import decide_each, sharded, split
from engine_helpers import RunByRun, fields_frame
from scenarios import batches, reference_sets
from test_engine_properties import check_one_run_per_batch, check_requeues_and_overrides, numbered
from worker.distributed import decide_message, read_result, shard_message

RULES = default_rules()
SETTINGS = settings(max_examples=int(os.environ.get("ENGINE_EXAMPLES", 150)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENTS = ["c01", "c02", "c03", "c04", "c05"]


def through_messages(shards, rules):
    """What a worker does with a shard, without the broker: encode, run the task body, decode."""
    return [read_result(decide_message(shard_message(shard, rules))) for shard in shards]


@SETTINGS
@given(reference=reference_sets(clients=CLIENTS), groups=batches(max_claims=30, clients=CLIENTS),
       count=st.integers(1, 6), messages=st.booleans())
def test_one_run_per_batch_in_shards_equals_the_sequential_reference(reference, groups, count, messages):
    runner = RunByRun(reference, RULES, sharded(count, through_messages if messages else decide_each))
    check_one_run_per_batch(runner, reference, groups)


@SETTINGS
@given(reference=reference_sets(clients=CLIENTS), groups=batches(max_claims=30, clients=CLIENTS),
       count=st.integers(1, 6), data=st.data())
def test_requeues_and_overrides_in_shards_take_their_place_in_the_order(reference, groups, count, data):
    runner = RunByRun(reference, RULES, sharded(count, through_messages))
    check_requeues_and_overrides(runner, reference, groups, data)


@SETTINGS
@given(reference=reference_sets(clients=CLIENTS), groups=batches(max_claims=30, clients=CLIENTS),
       count=st.integers(1, 6))
def test_shards_hold_whole_clients_and_every_claim_once(reference, groups, count):
    queue = fields_frame([row for group in numbered(groups) for row in group])
    checked = check_records(queue, RULES)
    frames = reference.frames()
    ledger = RunByRun(reference, RULES).run([row for group in numbered(groups)[:1] for row in group]).newly_paid
    shards = split(checked, frames, ledger, pl.DataFrame(schema={"claim_pk": pl.Int64, "code": pl.String}), count)
    assert 1 <= len(shards) <= count
    pks = [pk for shard in shards for pk in shard.checked.claims.get_column("claim_pk").to_list()]
    assert sorted(pks) == queue.get_column("claim_pk").to_list()
    owners: dict = {}
    for index, shard in enumerate(shards):
        claims = shard.checked.claims
        assert claims.get_column("order").to_list() == list(range(claims.height))
        assert claims.get_column("claim_pk").is_sorted()  # queue order kept
        # The queue rows it holds, by which the run puts its outcomes back in queue order.
        assert queue.get_column("claim_pk").gather(shard.rows).equals(claims.get_column("claim_pk"))
        for client in claims.get_column("client_prime").unique().to_list():
            assert owners.setdefault(client, index) == index
        mine = set(claims.get_column("client_prime").drop_nulls().to_list())
        assert set(shard.ledger.get_column("client_prime").to_list()) <= mine
        assert set(shard.reference.spas.get_column("client_prime").to_list()) <= mine


def test_an_empty_queue_in_shards_decides_nothing():
    from adjudication.reference import ReferenceSet

    result = RunByRun(ReferenceSet(), RULES, sharded(3, through_messages)).run([])
    assert result.outcomes.height == 0 and result.newly_paid.height == 0
