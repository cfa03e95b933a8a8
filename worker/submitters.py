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
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.service import UserError
from worker.store import repository as repo
from worker.store.repository import Repository
from worker.store import schema as t

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


def require_admin(conn: Connection, operator: str) -> None:
    """Who may register and revoke submitters: an admin."""
    from worker import access

    access.authorize(conn, operator, "admin")


def add(engine: Engine, name: str, providers: list[str], operator: str) -> str:
    """Register a submitter for some providers; returns its token (stored hashed, never shown again)."""
    name = name.strip()
    if not name or not name.isprintable() or any(c.isspace() for c in name):
        raise UserError("a submitter's name is one word of printable characters")
    wanted = sorted({p.strip() for p in providers if p.strip()})
    if not wanted:
        raise UserError("name the providers the submitter may post for (--provider P, repeatable)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        require_admin(conn, operator)
        if conn.execute(select(t.submitters.c.name).where(t.submitters.c.name == name)).first():
            raise UserError(f"submitter {name} exists (a revoked name is not reused)")
        known = set(conn.execute(select(t.providers.c.provider_id)
                                 .where(t.providers.c.provider_id.in_(wanted))).scalars())
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise UserError(f"unknown provider {', '.join(unknown)} (load providers.csv first)")
        conn.execute(insert(t.submitters).values(name=name, token_hash=hash_token(token), created_at=repo.now(),
                                                 created_by=operator))
        conn.execute(insert(t.submitter_providers), [{"submitter": name, "provider_id": p} for p in wanted])
        Repository(conn).audit(operator, "submitters.add", name, "providers=" + ",".join(wanted))
    return token


def revoke(engine: Engine, name: str, operator: str) -> None:
    with engine.begin() as conn:
        require_admin(conn, operator)
        revoked = conn.execute(select(t.submitters.c.revoked_at).where(t.submitters.c.name == name)).first()
        if revoked is None:
            raise UserError(f"no submitter {name}")
        if revoked.revoked_at is not None:
            raise UserError(f"submitter {name} is already revoked")
        conn.execute(update(t.submitters).where(t.submitters.c.name == name)
                     .values(revoked_at=repo.now(), revoked_by=operator))
        Repository(conn).audit(operator, "submitters.revoke", name, "token revoked")


def listing(engine: Engine) -> list[dict]:
    """Every submitter (revoked ones too) with its providers; never a token or its hash."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.submitters.c.name, t.submitters.c.created_at, t.submitters.c.created_by,
                                   t.submitters.c.revoked_at).order_by(t.submitters.c.name)).all()
        providers: dict[str, list[str]] = {}
        for submitter, provider in conn.execute(select(t.submitter_providers).order_by(
                t.submitter_providers.c.submitter, t.submitter_providers.c.provider_id)):
            providers.setdefault(submitter, []).append(provider)
    return [{"name": r.name, "providers": providers.get(r.name, []), "created_at": r.created_at,
             "created_by": r.created_by, "revoked_at": r.revoked_at} for r in rows]


def authenticate(engine: Engine, token: str) -> Submitter | None:
    """The submitter holding this token, unless it was revoked."""
    with engine.connect() as conn:
        name = conn.execute(select(t.submitters.c.name).where(
            t.submitters.c.token_hash == hash_token(token), t.submitters.c.revoked_at.is_(None))).scalar()
        if name is None:
            return None
        providers = conn.execute(select(t.submitter_providers.c.provider_id)
                                 .where(t.submitter_providers.c.submitter == name)).scalars()
        return Submitter(name, frozenset(providers))


def audit_refused(engine: Engine, target: str, why: str) -> None:
    """A request refused for want of a valid token: recorded, without the token's value."""
    with engine.begin() as conn:
        Repository(conn).audit("anonymous", "http.unauthorized", target, why)


def audit_action(engine: Engine, submitter: Submitter, action: str, target: str, note: str = "") -> None:
    with engine.begin() as conn:
        Repository(conn).audit(submitter.actor, action, target, note)


def owner_of(engine: Engine, batch_id: str) -> str | None:
    """The submitter that posted a batch (None when none did, or there is no such batch)."""
    with engine.connect() as conn:
        return conn.execute(select(t.batches.c.submitter).where(t.batches.c.batch_id == batch_id)).scalar()


# --- Idempotency-Key -------------------------------------------------------------------------

class KeyInUse(UserError):
    """Another post with this Idempotency-Key is still under way."""


def take_key(engine: Engine, submitter: Submitter, key: str) -> str | None:
    """Take an Idempotency-Key for a post about to be read: None when it is new (or a post holding it
    died); the batch id when an earlier post with it succeeded; KeyInUse while one is under way."""
    now = repo.now()
    where = (t.idempotency_keys.c.submitter == submitter.name, t.idempotency_keys.c.key == key)
    try:
        with engine.begin() as conn:
            held = conn.execute(select(t.idempotency_keys.c.batch_id, t.idempotency_keys.c.created_at)
                                .where(*where)).first()
            if held is None:
                conn.execute(insert(t.idempotency_keys).values(submitter=submitter.name, key=key, batch_id=None,
                                                               created_at=now))
                return None
            if held.batch_id is not None:
                return held.batch_id
            started = held.created_at if held.created_at.tzinfo else held.created_at.replace(tzinfo=dt.timezone.utc)
            if now - started < KEY_STALE_AFTER:
                raise KeyInUse("a post with this Idempotency-Key is still under way")
            conn.execute(update(t.idempotency_keys).where(*where).values(created_at=now))
            return None
    except IntegrityError:  # a concurrent post inserted it first
        raise KeyInUse("a post with this Idempotency-Key is still under way") from None


def settle_key(engine: Engine, submitter: Submitter, key: str, batch_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(t.idempotency_keys).where(
            t.idempotency_keys.c.submitter == submitter.name, t.idempotency_keys.c.key == key).values(batch_id=batch_id))


def release_key(engine: Engine, submitter: Submitter, key: str) -> None:
    """A refused post stored nothing: its key is free for the corrected file."""
    with engine.begin() as conn:
        conn.execute(delete(t.idempotency_keys).where(
            t.idempotency_keys.c.submitter == submitter.name, t.idempotency_keys.c.key == key,
            t.idempotency_keys.c.batch_id.is_(None)))
