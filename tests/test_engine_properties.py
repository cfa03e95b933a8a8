"""The engine equals the sequential reference on dense random data, however the work is split."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.rules import default_rules
from conftest import examples
from engine_helpers import RunByRun, comparable, normalized
from scenarios import batches, reference_sets
from sequential import adjudicate_sequentially

RULES = default_rules()
SETTINGS = settings(max_examples=int(os.environ.get("ENGINE_EXAMPLES", examples(300))), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def numbered(groups: list[list[dict]]) -> list[list[dict]]:
    pk = 0
    out = []
    for group in groups:
        out.append([])
        for row in group:
            pk += 1
            out[-1].append({"claim_pk": pk, **row})
    return out


@SETTINGS
@given(reference=reference_sets(), groups=batches())
def test_all_batches_in_one_run_equal_the_sequential_reference(reference, groups):
    queue = [row for group in numbered(groups) for row in group]
    engine = RunByRun(reference, RULES).run(queue)
    assert comparable(engine) == normalized(adjudicate_sequentially(queue, reference, RULES))


@SETTINGS
@given(reference=reference_sets(), groups=batches())
def test_one_run_per_batch_equals_the_sequential_reference(reference, groups):
    check_one_run_per_batch(RunByRun(reference, RULES), reference, groups)


def check_one_run_per_batch(runner: RunByRun, reference, groups) -> None:
    """A run per batch, carrying the state between runs, against the sequential reference."""
    got = []
    for group in numbered(groups):
        got += comparable(runner.run(group))
    queue = [row for group in numbered(groups) for row in group]
    assert got == normalized(adjudicate_sequentially(queue, reference, RULES))


@SETTINGS
@given(reference=reference_sets(), groups=batches(), data=st.data())
def test_requeues_and_overrides_take_their_place_in_the_order(reference, groups, data):
    """Suspended claims re-queued (some with a waiver) run alone, or in one run with the next batch,
    before or after it in the order depending on whether the re-queue or the submission came first."""
    check_requeues_and_overrides(RunByRun(reference, RULES), reference, groups, data)


def check_requeues_and_overrides(runner: RunByRun, reference, groups, data) -> None:
    """Runs with re-queued claims (some with a waiver) drawn from `data`, against the sequential reference."""
    waivers: dict[int, set[str]] = {}
    order: list[dict] = []
    got: list[dict] = []
    pending: list[dict] = []  # re-queued, waiting for the next run
    for group in numbered(groups):
        if pending and data.draw(st.booleans()):
            queue = pending + list(group)  # re-queued before this batch was submitted
        else:
            queue = list(group) + pending
        pending = []
        outcomes = comparable(runner.run(queue))
        order += queue
        got += outcomes
        suspended = [o for o in outcomes if o["status"] == "suspended"]
        chosen = data.draw(st.lists(st.sampled_from(suspended), unique_by=lambda o: o["claim_pk"])) if suspended else []
        rows = {r["claim_pk"]: r for r in queue}
        for outcome in chosen:
            waivable = sorted(set(outcome["reasons"]) & RULES.waivable)
            if waivable and data.draw(st.booleans()):
                code = data.draw(st.sampled_from(waivable))
                waivers.setdefault(outcome["claim_pk"], set()).add(code)
                runner.waivers.append((outcome["claim_pk"], code))
        pending = [{**rows[o["claim_pk"]], "waived": set(waivers.get(o["claim_pk"], ()))} for o in chosen]
    if pending:
        got += comparable(runner.run(pending))
        order += pending
    expected = normalized(adjudicate_sequentially(order, reference, RULES))
    assert got == expected
