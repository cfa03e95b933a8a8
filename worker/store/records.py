"""The store's small tables, behind the repository: who may act (operators and their grants,
submitters, their providers and Idempotency-Keys), the audit trail's rows, and the runs' lease and
records (with what metrics and health read from them).

Each class works on the caller's connection (one transaction, the unit of work's): the rules live in
the modules that use them (worker.access, worker.submitters, worker.audit, worker.runs,
worker.metrics); this module holds their SQL and nothing else. `Repository` offers one of each
(`repo.operators`, `repo.submitters`, `repo.trail`, `repo.runs`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import OperationalError

from worker.store import schema as t

AUDIT_LOCK_KEY = 0x61756469  # 'audi': the PostgreSQL advisory lock that serializes audit appends
RUNS_LOCK_KEY = 0x72756E73  # 'runs': the one that numbers runs


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def utc(value):
    """A stored time as an aware UTC datetime (SQLite gives naive UTC); other values unchanged."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def serialize(conn: Connection, key: int) -> None:
    """Writers of one kind (audit appends, run numbering) one transaction at a time, until it ends.
    On PostgreSQL a transaction-scoped advisory lock `key`: it needs no privilege on a table (a
    deployment may grant the application nothing but SELECT and INSERT on the audit), and reads go
    on. SQLite has one writer: a write makes this transaction it, before it reads what it extends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        take_write_lock(conn)


def take_write_lock(conn: Connection) -> None:
    """Take the lock row's database lock for this transaction: writers that must be alone (and, on
    SQLite, a transaction that must become the one writer before it reads) serialize on it. The row's
    holder and since (the run lease) are left as they are."""
    conn.execute(update(t.run_lock).where(t.run_lock.c.id == 1).values(holder=t.run_lock.c.holder))


def write_lock_held(engine: Engine, wait_seconds: float) -> bool:
    """Whether another transaction holds the lock row's database lock (a run, or a writer), waiting
    at most `wait_seconds`. Takes nothing: the row is updated in a transaction that is rolled back."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        before = conn.exec_driver_sql("PRAGMA busy_timeout").scalar() if sqlite else None
        try:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
            else:
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'"))
            take_write_lock(conn)
            return False
        except OperationalError:
            return True
        finally:
            conn.rollback()
            if sqlite:  # back to the engine's own busy timeout for the pooled connection
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(before)}")


class Operators:
    """Registered operator names and the roles granted to them."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def roles(self, name: str) -> set[str] | None:
        """The roles a name holds; None when it is not registered."""
        if self.conn.execute(select(t.operators.c.name).where(t.operators.c.name == name)).first() is None:
            return None
        return set(self.conn.execute(select(t.operator_grants.c.role)
                                     .where(t.operator_grants.c.name == name)).scalars())

    def register(self, name: str) -> None:
        """Register a name (nothing when it is registered already)."""
        if self.conn.execute(select(t.operators.c.name).where(t.operators.c.name == name)).first() is None:
            self.conn.execute(insert(t.operators).values(name=name, added_at=now()))

    def admins(self) -> int:
        return self.conn.execute(select(func.count()).select_from(t.operator_grants)
                                 .where(t.operator_grants.c.role == "admin")).scalar_one()

    def grant(self, name: str, role: str, by: str | None) -> None:
        self.conn.execute(insert(t.operator_grants).values(name=name, role=role, granted_at=now(), granted_by=by))

    def revoke(self, name: str, role: str) -> None:
        self.conn.execute(delete(t.operator_grants).where(t.operator_grants.c.name == name,
                                                          t.operator_grants.c.role == role))

    def listing(self) -> list[tuple[str, dt.datetime, list[str]]]:
        """(name, added_at, roles held) of every registered name, by name."""
        names = self.conn.execute(select(t.operators.c.name, t.operators.c.added_at)
                                  .order_by(t.operators.c.name)).all()
        held: dict[str, list[str]] = {}
        for name, role in self.conn.execute(select(t.operator_grants.c.name, t.operator_grants.c.role)):
            held.setdefault(name, []).append(role)
        return [(name, added_at, held.get(name, [])) for name, added_at in names]


class Submitters:
    """Upstream systems that post over HTTP: their hashed tokens, providers and Idempotency-Keys."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def exists(self, name: str) -> bool:
        """Whether the name was ever registered (a revoked name too)."""
        return self.conn.execute(select(t.submitters.c.name).where(t.submitters.c.name == name)).first() is not None

    def revoked_at(self, name: str) -> dt.datetime | None:
        """When a registered submitter was revoked; None while it is active."""
        return self.conn.execute(select(t.submitters.c.revoked_at).where(t.submitters.c.name == name)).scalar()

    def known_providers(self, provider_ids: list[str]) -> set[str]:
        """Those of `provider_ids` that are loaded reference providers."""
        return set(self.conn.execute(select(t.providers.c.provider_id)
                                     .where(t.providers.c.provider_id.in_(provider_ids))).scalars())

    def add(self, name: str, token_hash: str, providers: list[str], by: str) -> None:
        self.conn.execute(insert(t.submitters).values(name=name, token_hash=token_hash, created_at=now(),
                                                      created_by=by))
        self.conn.execute(insert(t.submitter_providers), [{"submitter": name, "provider_id": p} for p in providers])

    def revoke(self, name: str, by: str) -> None:
        self.conn.execute(update(t.submitters).where(t.submitters.c.name == name)
                          .values(revoked_at=now(), revoked_by=by))

    def listing(self) -> list[dict]:
        """Every submitter (revoked ones too) with its providers, by name; never a token's hash."""
        s = t.submitters.c
        rows = self.conn.execute(select(s.name, s.created_at, s.created_by, s.revoked_at).order_by(s.name)).all()
        providers: dict[str, list[str]] = {}
        for submitter, provider in self.conn.execute(select(t.submitter_providers).order_by(
                t.submitter_providers.c.submitter, t.submitter_providers.c.provider_id)):
            providers.setdefault(submitter, []).append(provider)
        return [{"name": r.name, "providers": providers.get(r.name, []), "created_at": r.created_at,
                 "created_by": r.created_by, "revoked_at": r.revoked_at} for r in rows]

    def holding(self, token_hash: str) -> tuple[str, frozenset[str]] | None:
        """(name, providers) of the active submitter whose token has this hash; None when none."""
        name = self.conn.execute(select(t.submitters.c.name).where(
            t.submitters.c.token_hash == token_hash, t.submitters.c.revoked_at.is_(None))).scalar()
        if name is None:
            return None
        providers = self.conn.execute(select(t.submitter_providers.c.provider_id)
                                      .where(t.submitter_providers.c.submitter == name)).scalars()
        return name, frozenset(providers)

    def owner_of(self, batch_id: str) -> str | None:
        """The submitter that posted a batch (None when none did, or there is no such batch)."""
        return self.conn.execute(select(t.batches.c.submitter).where(t.batches.c.batch_id == batch_id)).scalar()

    # Idempotency-Keys: (submitter, key) -> the batch a post made (None while it is under way)
    def _key(self, submitter: str, key: str):
        k = t.idempotency_keys.c
        return k.submitter == submitter, k.key == key

    def key(self, submitter: str, key: str) -> tuple[str | None, dt.datetime] | None:
        """(batch_id, taken at) of a key; None when it was never taken."""
        k = t.idempotency_keys.c
        row = self.conn.execute(select(k.batch_id, k.created_at).where(*self._key(submitter, key))).first()
        return None if row is None else (row.batch_id, utc(row.created_at))

    def take_key(self, submitter: str, key: str, at: dt.datetime) -> None:
        """A new key, under way (IntegrityError when a concurrent post took it first)."""
        self.conn.execute(insert(t.idempotency_keys).values(submitter=submitter, key=key, batch_id=None,
                                                            created_at=at))

    def retake_key(self, submitter: str, key: str, at: dt.datetime) -> None:
        self.conn.execute(update(t.idempotency_keys).where(*self._key(submitter, key)).values(created_at=at))

    def settle_key(self, submitter: str, key: str, batch_id: str) -> None:
        self.conn.execute(update(t.idempotency_keys).where(*self._key(submitter, key)).values(batch_id=batch_id))

    def release_key(self, submitter: str, key: str) -> None:
        """Free a key still under way (a key that made a batch stays)."""
        self.conn.execute(delete(t.idempotency_keys).where(*self._key(submitter, key),
                                                           t.idempotency_keys.c.batch_id.is_(None)))


class AuditTrail:
    """The audit table's rows (worker.audit chains and checks them)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def serialize(self) -> None:
        """Only one transaction appends at a time, until it ends: the chain stays one line."""
        serialize(self.conn, AUDIT_LOCK_KEY)

    def head(self) -> tuple[int, str] | None:
        """(id, hash) of the newest entry; None when the trail is empty."""
        row = self.conn.execute(select(t.audit.c.id, t.audit.c.hash).order_by(t.audit.c.id.desc()).limit(1)).first()
        return None if row is None else (row.id, row.hash)

    def insert(self, rows: list[dict]) -> None:
        self.conn.execute(insert(t.audit), rows)

    def entries(self) -> Iterator[dict]:
        """Every entry (every column), in id order, read as it goes."""
        for row in self.conn.execute(select(t.audit).order_by(t.audit.c.id)):
            yield dict(row._mapping)


class RunRecords:
    """The run lease (the `run_lock` row) and the `runs` table's records."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def lease(self) -> tuple[str | None, dt.datetime | None]:
        """(holder, since) of the run lease; holder None when it is free."""
        row = self.conn.execute(select(t.run_lock.c.holder, t.run_lock.c.since).where(t.run_lock.c.id == 1)).one()
        return row.holder, utc(row.since)

    def take_lease(self, me: str, held_by: str | None) -> bool:
        """Take the lease from `held_by` (None: free), only if it still is held so: True when taken."""
        lock = t.run_lock.c
        return self.conn.execute(update(t.run_lock).where(
            lock.id == 1, lock.holder.is_(None) if held_by is None else lock.holder == held_by,
        ).values(holder=me, since=now())).rowcount == 1

    def stored_since(self, moment: dt.datetime) -> bool:
        """Whether a run started at or after `moment` stored its work (status done). Only such a run
        records while it holds the lease: failed and dry runs record after they let it go."""
        return self.conn.execute(select(func.count()).select_from(t.runs).where(
            t.runs.c.started_at >= moment, t.runs.c.status == "done")).scalar_one() > 0

    def release_lease(self, holder: str) -> None:
        """Free the lease if `holder` still holds it."""
        self.conn.execute(update(t.run_lock).where(t.run_lock.c.id == 1, t.run_lock.c.holder == holder)
                          .values(holder=None, since=None))

    def add(self, started: dt.datetime, status: str, *, finished: bool = True, claims: int = 0, paid: int = 0,
            suspended: int = 0, rejected: int = 0, paid_cents: int = 0, voids: int = 0, reversed_cents: int = 0,
            failure: str | None = None, wait_seconds: float | None = None) -> int:
        """A run's record: finished now (a failed or a dry run), or not yet (a run storing its work,
        which Repository.store_run finishes).

        Runs are numbered 1, 2, 3, ... without gaps, as a billing office counts them: the next number
        is the highest stored + 1, taken by one transaction at a time (a sequence would leave a gap
        for every run rolled back: a dry run, a killed one). A run rolled back frees its number.
        A run storing its work holds the numbering until it commits; wait_seconds: give up waiting
        for it after that long (the database's lock timeout error) instead of waiting it out."""
        postgres = self.conn.dialect.name == "postgresql"
        if postgres and wait_seconds is not None:
            self.conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'")
        serialize(self.conn, RUNS_LOCK_KEY)
        next_id = self.conn.execute(select(func.coalesce(func.max(t.runs.c.run_id), 0) + 1)).scalar_one()
        if postgres:  # the sequence kept in step: a version before this one numbers runs by it
            self.conn.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'run_id'), :n)"), {"n": next_id})
        return self.conn.execute(insert(t.runs).values(
            run_id=next_id, started_at=started, finished_at=now() if finished else None, claims=claims, paid=paid,
            suspended=suspended, rejected=rejected, paid_cents=paid_cents, voids=voids,
            reversed_cents=reversed_cents, status=status, failure=failure,
        ).returning(t.runs.c.run_id)).scalar_one()

    def listing(self) -> list[tuple]:
        """Every run, newest first: (run_id, started, finished, status, claims, paid, suspended, rejected,
        voids, paid_cents, reversed_cents, failure), times in UTC."""
        r = t.runs.c
        rows = self.conn.execute(select(r.run_id, r.started_at, r.finished_at, r.status, r.claims, r.paid,
                                        r.suspended, r.rejected, r.voids, r.paid_cents, r.reversed_cents, r.failure)
                                 .order_by(r.run_id.desc())).all()
        return [tuple(utc(v) for v in row) for row in rows]

    def last(self) -> dict | None:
        """The newest run's record (every column, times in UTC); None before the first."""
        row = self.conn.execute(select(t.runs).order_by(t.runs.c.run_id.desc()).limit(1)).first()
        return None if row is None else {k: utc(v) for k, v in row._mapping.items()}

    def figures(self) -> dict:
        """What the metrics show: claims decided by done runs, runs by status, the newest run and the
        newest real one, suspended claims by reasons, and the queue."""
        r = t.runs.c
        conn = self.conn
        decided = conn.execute(select(func.coalesce(func.sum(r.paid), 0), func.coalesce(func.sum(r.suspended), 0),
                                      func.coalesce(func.sum(r.rejected), 0)).where(r.status == "done")).one()
        last = conn.execute(select(r.status, r.started_at, r.finished_at).order_by(r.run_id.desc()).limit(1)).first()
        queued_batches, queued_claims = conn.execute(
            select(func.count(), func.coalesce(func.sum(t.batches.c.claims), 0))
            .where(t.batches.c.status == "queued")).one()
        return {
            "decided": dict(zip(("paid", "suspended", "rejected"), (int(v) for v in decided))),
            "runs": dict(conn.execute(select(r.status, func.count()).group_by(r.status)).all()),
            "last": None if last is None else (last.status, utc(last.started_at), utc(last.finished_at)),
            "last_real": conn.execute(select(r.status).where(r.status != "dry-run").order_by(r.run_id.desc())
                                      .limit(1)).scalar(),
            "last_done": utc(conn.execute(select(func.max(r.finished_at)).where(r.status == "done")).scalar()),
            "by_reasons": conn.execute(select(t.suspended.c.reasons, func.count())
                                       .group_by(t.suspended.c.reasons)).all(),
            "queued_batches": int(queued_batches), "queued_claims": int(queued_claims),
            "requeued": int(conn.execute(select(func.count()).select_from(t.requeues)).scalar() or 0),
        }
