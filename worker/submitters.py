"""Submitters: the upstream systems (agency billing software, EVV vendors, clearinghouses) that post
claim files over HTTP, each with its own token and the providers it may post claims for.

A token is 256 random bits (`adj_` + 43 URL-safe characters) shown once; only its SHA-256 is stored.
A slow password hash (argon2, bcrypt) protects secrets people choose, which can be guessed; a
256-bit random token cannot be, so a plain SHA-256 is as safe, needs no server key to keep (an HMAC
key lost or rotated would invalidate every token), and lets a request be authenticated by one
indexed lookup instead of a deliberately slow computation on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from worker import access
from worker.service import UserError
from worker.store.records import now
from worker.store.unit_of_work import unit_of_work

TOKEN_PREFIX = "adj_"
# A post under way holds its Idempotency-Key; one that died (the process stopped mid-upload) is
# taken over after this long, so a retry is never refused for ever.
KEY_STALE_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Submitter:
    name: str
    providers: frozenset[str]

    @property
    def actor(self) -> str:
        """How the submitter is named in the audit trail."""
        return f"submitter:{self.name}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add(engine, name: str, providers: list[str], operator: str, note: str = "") -> str:
    """Register a submitter for some providers (by an admin); returns its token (stored hashed, never
    shown again)."""
    name = name.strip()
    if not name or not name.isprintable() or any(c.isspace() for c in name):
        raise UserError("a submitter's name is one word of printable characters")
    wanted = sorted({p.strip() for p in providers if p.strip()})
    if not wanted:
        raise UserError("name the providers the submitter may post for (--provider P, repeatable)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "admin")
        if repo.submitters.exists(name):
            raise UserError(f"submitter {name} exists (a revoked name is not reused)")
        known = repo.submitters.known_providers(wanted)
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise UserError(f"unknown provider {', '.join(unknown)} (load providers.csv first)")
        repo.submitters.add(name, hash_token(token), wanted, by=operator)
        repo.audit(operator, "submitters.add", name, "; ".join(filter(None, ["providers=" + ",".join(wanted),
                                                                         note.strip()])))
    return token


def revoke(engine, name: str, operator: str, note: str = "") -> None:
    """Revoke a submitter's token (by an admin); the name stays, and is not reused."""
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "admin")
        if not repo.submitters.exists(name):
            raise UserError(f"no submitter {name}")
        if repo.submitters.revoked_at(name) is not None:
            raise UserError(f"submitter {name} is already revoked")
        repo.submitters.revoke(name, by=operator)
        repo.audit(operator, "submitters.revoke", name, note.strip() or "token revoked")


def listing(engine) -> list[dict]:
    """Every submitter (revoked ones too) with its providers; never a token or its hash."""
    with unit_of_work(engine, write=False) as repo:
        return repo.submitters.listing()


def authenticate(engine, token: str) -> Submitter | None:
    """The submitter holding this token, unless it was revoked."""
    with unit_of_work(engine, write=False) as repo:
        found = repo.submitters.holding(hash_token(token))
    return None if found is None else Submitter(*found)


class RefusedRequests:
    """Requests refused for want of a valid token, as the audit records them: at most one entry
    every `window` seconds (in one service process), the next one counting those left out since.
    Anyone can send such a request, and the audit can only grow: one entry per request would let a
    client without a token fill it (and hold its chain's lock while doing so). Every refusal is
    still answered 401 and logged."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.lock = threading.Lock()
        self.last: float | None = None
        self.left_out = 0

    def to_record(self) -> int | None:
        """None when this refusal is left out of the audit (counted); else how many were left out
        since the last entry (this one is recorded)."""
        with self.lock:
            moment = time.monotonic()
            if self.last is not None and moment - self.last < self.window:
                self.left_out += 1
                return None
            self.last, left_out, self.left_out = moment, self.left_out, 0
            return left_out


def audit_refused(engine, target: str, why: str, left_out: int = 0) -> None:
    """A request refused for want of a valid token: recorded, without the token's value, with the
    number of refusals left out of the audit since the last entry (RefusedRequests)."""
    note = why if not left_out else f"{why} (and {left_out} more refused requests since the last entry)"
    with unit_of_work(engine) as repo:
        repo.audit("anonymous", "http.unauthorized", target, note)


def audit_action(engine, submitter: Submitter, action: str, target: str, note: str = "") -> None:
    with unit_of_work(engine) as repo:
        repo.audit(submitter.actor, action, target, note)


def owner_of(engine, batch_id: str) -> str | None:
    """The submitter that posted a batch (None when none did, or there is no such batch)."""
    with unit_of_work(engine, write=False) as repo:
        return repo.submitters.owner_of(batch_id)


# --- Idempotency-Key -------------------------------------------------------------------------

class KeyInUse(UserError):
    """Another post with this Idempotency-Key is still under way."""


def take_key(engine, submitter: Submitter, key: str) -> str | None:
    """Take an Idempotency-Key for a post about to be read: None when it is new (or a post holding it
    died); the batch id when an earlier post with it succeeded; KeyInUse while one is under way."""
    at = now()
    try:
        with unit_of_work(engine) as repo:
            held = repo.submitters.key(submitter.name, key)
            if held is None:
                repo.submitters.take_key(submitter.name, key, at)
                return None
            batch_id, taken_at = held
            if batch_id is not None:
                return batch_id
            if at - taken_at < KEY_STALE_AFTER:
                raise KeyInUse("a post with this Idempotency-Key is still under way")
            repo.submitters.retake_key(submitter.name, key, at)
            return None
    except IntegrityError:  # a concurrent post inserted it first
        raise KeyInUse("a post with this Idempotency-Key is still under way") from None


def settle_key(engine, submitter: Submitter, key: str, batch_id: str) -> None:
    with unit_of_work(engine) as repo:
        repo.submitters.settle_key(submitter.name, key, batch_id)


def release_key(engine, submitter: Submitter, key: str) -> None:
    """A refused post stored nothing: its key is free for the corrected file."""
    with unit_of_work(engine) as repo:
        repo.submitters.release_key(submitter.name, key)
