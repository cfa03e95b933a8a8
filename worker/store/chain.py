"""The audit trail's hash chain (worker/audit.py says why): each entry's SHA-256 over its fields
and the previous entry's hash, and the append that extends the chain inside the caller's
transaction. The store's own code: the repository appends through it, `audit verify` checks with it."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
import socket

from worker.store.records import AuditTrail

GENESIS = "0" * 64  # the previous hash of the first entry
HASHED = ("id", "at", "operator", "action", "target", "note", "os_user", "host")


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
