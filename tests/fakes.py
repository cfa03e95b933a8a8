"""A fake unit of work and repository for use-case tests that gain nothing from a database: the
same methods as worker.store.repository.Repository that those use cases call, on plain Python
state. (Runs, submits and exports are tested on SQLite and PostgreSQL.)"""

from __future__ import annotations

import polars as pl

from worker.store.repository import SUSPENDED_SCHEMA


class FakeOperators(dict):
    """Operators and their roles, as repository.Operators answers access.authorize."""

    def roles(self, name: str) -> set[str] | None:
        return self.get(name)


class FakeRepository:
    def __init__(self):
        self.batches: dict[str, dict] = {}
        self.operators = FakeOperators()  # name -> roles granted
        self.suspended: list[dict] = []  # SUSPENDED_SCHEMA rows
        self.statuses: dict[int, str] = {}  # claim_pk -> latest status
        self.holder_pks: dict[str, int] = {}
        self.queue: list[tuple[int, str]] = []  # (claim_pk, kind), in order
        self.waivers: set[tuple[int, str]] = set()
        self.audit_rows: list[tuple[str, str, str, str]] = []
        self.locked_by: list[str] = []

    def lock(self, holder: str) -> None:
        self.locked_by.append(holder)

    def batch(self, batch_id: str) -> dict | None:
        return self.batches.get(batch_id)

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self.batches[batch_id]["status"] = status

    def suspended_claims(self, claim_pks: list[int] | None = None) -> pl.DataFrame:
        rows = [r for r in self.suspended if claim_pks is None or r["claim_pk"] in claim_pks]
        return pl.DataFrame(rows, schema=SUSPENDED_SCHEMA)

    def holders(self, claim_ids: list[str]) -> dict[str, int]:
        return {i: self.holder_pks[i] for i in claim_ids if i in self.holder_pks}

    def latest_status(self, claim_pk: int) -> str | None:
        return self.statuses.get(claim_pk)

    def enqueue(self, claim_pks: list[int], kind: str) -> None:
        self.queue = [q for q in self.queue if q[0] not in claim_pks] + [(pk, kind) for pk in claim_pks]

    def add_waiver(self, claim_pk: int, code: str, operator: str, note: str) -> bool:
        if (claim_pk, code) in self.waivers:
            return False
        self.waivers.add((claim_pk, code))
        return True

    def audit(self, operator: str, action: str, target: str, note: str) -> None:
        self.audit_rows.append((operator, action, target, note))


class FakeUnitOfWork:
    """Commits what a use case did only when it ends without an exception (as a transaction)."""

    def __init__(self, repo: FakeRepository | None = None):
        self.repo = repo or FakeRepository()
        self.committed = 0
        self._before = None

    def __enter__(self) -> FakeRepository:
        import copy

        self._before = copy.deepcopy(self.repo.__dict__)
        return self.repo

    def __exit__(self, kind, *_exc) -> None:
        if kind is None:
            self.committed += 1
        else:
            self.repo.__dict__.update(self._before)
