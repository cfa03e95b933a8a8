"""A run's edits split by client, so that several workers can decide the parts at once.

Every edit compares a claim only with claims of its own client: the plan, enrollment and SPAs are
the client's, the caps count per SPA (of one client's plan) or per client and month, and overlaps
and duplicate services are per client and day. The one rule that reaches across clients, the
duplicate claim id, is a record check: `check_records` settles it for the whole queue before the
split, except where an earlier claim carrying an id is a replacement or void (it holds the id
only if the walk accepts it): the clients of such an id (`id_open`) go to one shard. A replacement
or void names a claim of its own client (one of another client is an INVALID_ADJUSTMENT, which its
shard finds as well: it does not have that claim). So deciding each shard's claims apart, in queue
order, gives exactly the outcomes of deciding them all together (tests/test_shards.py checks it
against the sequential reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from adjudication import reasons as R
from adjudication.engine import LEDGER_SCHEMA, Adjudication, Checked, Decider, ReferenceFrames, decide
from adjudication.rules import Rules

# Fixed, so that one process always splits a queue the same way (the split is never stored).
SEED = 0x5EED


@dataclass(frozen=True)
class Shard:
    """The claims of some clients, with the state of those clients only."""

    checked: Checked
    reference: ReferenceFrames
    ledger: pl.DataFrame
    waivers: pl.DataFrame
    # The rows of the run's queue it holds, in order: what puts its outcomes back in queue order.
    # Only the run's process needs them; a worker's copy has none.
    rows: pl.Series = field(default_factory=lambda: pl.Series("row", [], dtype=pl.Int64))


def split(checked: Checked, reference: ReferenceFrames, ledger: pl.DataFrame, waivers: pl.DataFrame,
          count: int) -> list[Shard]:
    """At most `count` shards, none empty, each with its clients' claims in queue order."""
    if count < 1:
        raise ValueError("count must be at least 1")
    claims = checked.claims.with_columns(
        shard=(pl.col("client_prime").replace(_together(checked.claims)).hash(SEED) % count).cast(pl.Int64))
    shards = []
    for _key, part in claims.partition_by("shard", maintain_order=True, include_key=False, as_dict=True).items():
        rows = part.get_column("order")  # the claims' rows in the queue (check_records numbers them so)
        part = part.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64))  # the engine's row index
        clients = part.get_column("client_prime").drop_nulls().unique().implode()
        mine = pl.col("client_prime").is_in(clients)
        shards.append(Shard(
            checked=Checked(part, checked.held_pks),
            reference=ReferenceFrames(plans=reference.plans.filter(mine),
                                      enrollments=reference.enrollments.filter(mine),
                                      spas=reference.spas.filter(mine),
                                      providers=None if reference.providers is None else reference.providers.filter(
                                          pl.col("provider_id").is_in(part.get_column("provider_id").implode()))),
            ledger=ledger.filter(mine),
            waivers=waivers.filter(pl.col("claim_pk").is_in(part.get_column("claim_pk").implode())),
            rows=rows.rename("row"),
        ))
    return shards


def _together(claims: pl.DataFrame) -> dict[str, str]:
    """client -> the client whose shard it goes to, for the clients that share an open claim id
    (joined transitively); every other client goes to its own."""
    groups = (claims.filter("id_open").group_by("claim_id").agg(pl.col("client_prime").unique().sort())
              .get_column("client_prime").to_list())
    parent: dict[str, str] = {}

    def root(client: str) -> str:
        while parent.get(client, client) != client:
            client = parent[client]
        return client

    for clients in groups:
        first = root(clients[0])
        for other in clients[1:]:
            parent[root(other)] = first
    return {client: root(client) for client in parent}


def merge(shards: list[Shard], parts: list[Adjudication], queue_pks: pl.Series) -> Adjudication:
    """The shards' results (`parts[i]` decided `shards[i]`) as one run's: outcomes in queue order,
    claims paid in queue order.

    Each part comes in its shard's order, so its rows are sorted back by the queue rows the shard
    holds. A part's newly paid claims are its paid outcomes'.
    """
    def in_queue_order(frames: list[pl.DataFrame], rows: list[pl.Series]) -> pl.DataFrame:
        # A sort: a join on claim_pk, or a gather by index of the concatenated parts (list columns
        # over several chunks), took 15x longer at 1M claims.
        numbered = [frame.with_columns(row.alias("queue_row")) for frame, row in zip(frames, rows, strict=True)]
        return pl.concat(numbered).sort("queue_row").drop("queue_row")

    paid_rows, reversal_rows = [], []
    for shard, part in zip(shards, parts, strict=True):
        pks = part.outcomes.get_column("claim_pk")
        reversed_here = pks.is_in(part.reversals.get_column("claim_pk").implode())
        paid = (part.outcomes.get_column("status") == R.PAID) & ~reversed_here
        if not part.newly_paid.get_column("claim_pk").equals(pks.filter(paid)):
            raise AssertionError("a shard's newly paid claims are not its paid outcomes")
        paid_rows.append(shard.rows.filter(paid))
        # A reversal takes the place of the replacement or void that made it.
        at = pl.DataFrame({"claim_pk": pks, "row": shard.rows})
        reversal_rows.append(part.reversals.select(claim_pk="reversed_by").join(
            at, on="claim_pk", how="left", maintain_order="left").get_column("row"))
    outcomes = in_queue_order([p.outcomes for p in parts], [s.rows for s in shards])
    if not outcomes.get_column("claim_pk").equals(queue_pks.rename("claim_pk")):
        raise AssertionError("the shards' outcomes are not one per queued claim")
    return Adjudication(outcomes=outcomes, newly_paid=in_queue_order([p.newly_paid for p in parts], paid_rows),
                        reversals=in_queue_order([p.reversals for p in parts], reversal_rows))


ShardDecider = Callable[[list[Shard], Rules], list[Adjudication]]


def decide_each(shards: list[Shard], rules: Rules) -> list[Adjudication]:
    """The shards decided one after the other, in this process."""
    return [decide(s.checked, s.reference, rules, s.ledger, s.waivers) for s in shards]


def sharded(count: int, decide_shards: ShardDecider = decide_each) -> Decider:
    """A `decide` that splits the work into `count` shards and has `decide_shards` decide them."""
    def decider(checked: Checked, reference: ReferenceFrames, rules: Rules, ledger: pl.DataFrame | None = None,
                waivers: pl.DataFrame | None = None) -> Adjudication:
        if checked.claims.height == 0:
            return decide(checked, reference, rules, ledger, waivers)
        ledger = pl.DataFrame(schema=LEDGER_SCHEMA) if ledger is None else ledger
        waivers = pl.DataFrame(schema={"claim_pk": pl.Int64, "code": pl.String}) if waivers is None else waivers
        parts = split(checked, reference, ledger, waivers, count)
        return merge(parts, decide_shards(parts, rules), checked.claims.get_column("claim_pk"))

    return decider
