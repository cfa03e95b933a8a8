"""Run the engine the way the store does (run by run, carrying ledger and holders) for tests."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from adjudication.claims import CLAIM_COLUMNS, parse_fields
from adjudication.engine import Adjudication, Decider, check_records, decide
from adjudication.reference import ReferenceSet
from adjudication.rules import Rules
from sequential import DEFAULT_RECEIVED


def queue_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"claim_pk": r["claim_pk"], **{c: r.get(c) for c in CLAIM_COLUMNS}} for r in rows],
        schema={"claim_pk": pl.Int64, **{c: pl.String for c in CLAIM_COLUMNS}},
    )


def fields_frame(rows: list[dict]) -> pl.DataFrame:
    """The parsed fields of `rows` and their received dates, as a run reads them from the store."""
    received = pl.Series("received_day", [r.get("received_date") or DEFAULT_RECEIVED for r in rows], dtype=pl.Date)
    return parse_fields(queue_frame(rows).lazy()).collect().with_columns(received)


def comparable(result: Adjudication) -> list[dict]:
    """Engine outcomes in the shape the sequential reference returns."""
    reverses = {by: pk for pk, by in result.reversals.iter_rows()}
    return [
        dict(
            claim_pk=o["claim_pk"], status=o["status"], reasons=o["reasons"], carc=o["carc"], spa_id=o["spa_id"],
            paid_units=None if o["paid_units_s"] is None else Decimal(o["paid_units_s"]) / 10_000,
            paid_amount=None if o["paid_cents"] is None else Decimal(o["paid_cents"]) / 100,
            conflicts_with=sorted(o["conflicts_with"]), adjusts=o["adjusts"], reverses=reverses.get(o["claim_pk"]),
        )
        for o in result.outcomes.iter_rows(named=True)
    ]


def normalized(reference_outcomes: list[dict]) -> list[dict]:
    return [{**o, "conflicts_with": sorted(o["conflicts_with"])} for o in reference_outcomes]


class RunByRun:
    """Keeps the state the store would keep between runs: paid ledger, id holders, waivers."""

    def __init__(self, reference: ReferenceSet, rules: Rules, decider: Decider = decide):
        """decider: how the edits are decided (`decide`, or split in shards: adjudication.shards)."""
        self.frames, self.rules, self.decider = reference.frames(), rules, decider
        self.ledger: pl.DataFrame | None = None
        self.holders: dict[str, int] = {}
        self.waivers: list[tuple[int, str]] = []

    def run(self, rows: list[dict]) -> Adjudication:
        holders = pl.DataFrame(list(self.holders.items()), schema={"claim_id": pl.String, "holder_pk": pl.Int64},
                               orient="row")
        waivers = pl.DataFrame(self.waivers, schema={"claim_pk": pl.Int64, "code": pl.String}, orient="row")
        checked = check_records(fields_frame(rows), self.rules, holders)
        result = self.decider(checked, self.frames, self.rules, self.ledger, waivers)
        ledger = result.newly_paid if self.ledger is None else pl.concat([self.ledger, result.newly_paid])
        self.ledger = ledger.filter(~pl.col("claim_pk").is_in(result.reversals.get_column("claim_pk").implode()))
        by_pk = {r["claim_pk"]: r for r in rows}
        for outcome in result.outcomes.iter_rows(named=True):
            if outcome["status"] != "rejected":
                self.holders[by_pk[outcome["claim_pk"]]["claim_id"].strip()] = outcome["claim_pk"]
        return result
