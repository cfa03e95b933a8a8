"""The audit trail: append-only and tamper-evident.

Every entry carries the SHA-256 of a canonical serialization of itself and the previous entry's hash
(`entry_hash`), so an entry changed, removed or slipped in after the fact breaks the chain from that
point on, and `verify` names the first entry where it breaks. The database refuses UPDATE and
DELETE on the table (and TRUNCATE on PostgreSQL) with triggers (migration 0007); the chain shows it
when someone with the rights to drop those triggers edits the table anyway. Appends are serialized
(an advisory lock on PostgreSQL, SQLite's single writer) so concurrent commands extend one chain.

Each entry records the operator (a registered name), what was done, to what, why, and the
operating-system user and host of the process that did it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass

import polars as pl
from worker.store.records import AuditTrail
from worker.store.unit_of_work import unit_of_work

GENESIS = "0" * 64  # the previous hash of the first entry
HASHED = ("id", "at", "operator", "action", "target", "note", "os_user", "host")
TRAIL_SCHEMA = {"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "operator": pl.String, "action": pl.String,
                "target": pl.String, "note": pl.String, "os_user": pl.String, "host": pl.String,
                "prev_hash": pl.String, "hash": pl.String}


def origin() -> tuple[str, str]:
    """The operating-system user and host this process runs as."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container without a passwd entry)
        user = f"uid {os.getuid()}"
    return user, socket.gethostname()


def _utc_text(at: dt.datetime) -> str:
    """The entry's time as hashed: UTC, microseconds (SQLite hands it back without its zone)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def entry_hash(entry: dict, prev_hash: str) -> str:
    """SHA-256 (hex) of the entry's fields (HASHED, in that order) and the previous hash, as a JSON array."""
    values = [_utc_text(entry[name]) if name == "at" else entry[name] for name in HASHED]
    canonical = json.dumps([*values, prev_hash], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def append_many(trail: AuditTrail, operator: str, action: str, entries: list[tuple[str, str]]) -> None:
    """Add one entry per (target, note), chained in that order, in one statement (a run's
    remittances are thousands of entries), inside the caller's transaction (kept only if the action
    is). Use cases call it as `repo.audit` / `repo.audit_many`."""
    if not entries:
        return
    trail.serialize()
    head = trail.head()
    os_user, host = origin()
    at = dt.datetime.now(dt.timezone.utc)
    next_id, prev_hash = ((head[0] + 1) if head else 1), (head[1] if head else GENESIS)
    rows = []
    for target, note in entries:
        entry = {"id": next_id, "at": at, "operator": operator, "action": action, "target": target, "note": note,
                 "os_user": os_user, "host": host}
        digest = entry_hash(entry, prev_hash)
        rows.append({**entry, "prev_hash": prev_hash, "hash": digest})
        next_id, prev_hash = next_id + 1, digest
    trail.insert(rows)


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
