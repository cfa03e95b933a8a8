"""The audit trail: append-only and tamper-evident.

Every entry carries the SHA-256 of a canonical serialization of itself and the previous entry's hash
(`entry_hash`), so an entry changed, removed or slipped in after the fact breaks the chain from that
point on, and `verify` names the first entry where it breaks. The database refuses UPDATE and
DELETE on the table (and TRUNCATE on PostgreSQL) with triggers (migration 0007); the chain shows it
when someone with the rights to drop those triggers edits the table anyway. Appends are serialized
(an advisory lock on PostgreSQL, SQLite's single writer) so concurrent commands extend one chain.

Each entry records the operator (a registered name, or `system` for a run or a reference load and
`anonymous` for an HTTP request without a valid token: names no operator may take), what was done,
to what, why, and the operating-system user and host of the process that did it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from worker.store.chain import GENESIS, entry_hash
from worker.store.unit_of_work import unit_of_work

TRAIL_SCHEMA = {"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "operator": pl.String, "action": pl.String,
                "target": pl.String, "note": pl.String, "os_user": pl.String, "host": pl.String,
                "prev_hash": pl.String, "hash": pl.String}


def trail(engine) -> pl.DataFrame:
    with unit_of_work(engine, write=False) as repo:
        rows = list(repo.trail.entries())
    return pl.DataFrame([{name: row[name] for name in TRAIL_SCHEMA} for row in rows], schema=TRAIL_SCHEMA,
                        orient="row")


@dataclass(frozen=True)
class Verified:
    entries: int
    broken_at: int | None = None  # id of the first entry that does not verify
    problem: str = ""
    head: str = GENESIS  # the last entry's hash: kept elsewhere, it shows a cut end too

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify(engine) -> Verified:
    """Check every entry's hash and link, in id order; the first one that fails is named."""
    expected_prev = GENESIS
    count = 0
    with unit_of_work(engine, write=False) as repo:
        for entry in repo.trail.entries():
            count += 1
            if entry["prev_hash"] != expected_prev:
                return Verified(count, entry["id"], "it does not follow the entry before it (an entry was removed, "
                                                    "inserted or reordered)")
            if entry_hash(entry, entry["prev_hash"]) != entry["hash"]:
                return Verified(count, entry["id"], "its content does not match its hash (the entry was changed)")
            expected_prev = entry["hash"]
    return Verified(count, head=expected_prev)
