"""The unit of work (cosmicpython): one transaction, and the repository that works inside it.

A use case does `with uow as repo:`; leaving the block commits, an exception rolls everything back.
Tests of use cases that gain nothing from a database pass a fake with the same shape
(tests/fakes.py)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Protocol

from sqlalchemy import Engine

from worker.store.repository import Repository


class UnitOfWork(Protocol):
    def __enter__(self) -> Repository: ...

    def __exit__(self, *exc) -> None: ...


class SqlUnitOfWork:
    """One transaction on the engine: `begin` for use cases that write, `connect` for reads."""

    def __init__(self, engine: Engine, write: bool = True, commit: bool = True):
        self.engine = engine
        self.write = write
        self.commit = commit  # False: everything is rolled back at the end (a dry run)
        self._stack: ExitStack | None = None

    def __enter__(self) -> Repository:
        self._stack = ExitStack()
        if self.write and self.commit:
            conn = self._stack.enter_context(self.engine.begin())
        else:
            conn = self._stack.enter_context(self.engine.connect())
            if self.write:  # the transaction is left open: closing the connection rolls it back
                self._stack.callback(conn.rollback)
        return Repository(conn)

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        stack.__exit__(*exc)


def unit_of_work(store, write: bool = True, commit: bool = True) -> UnitOfWork:
    """The unit of work for `store`: an Engine (the product) or a unit of work already (a test's fake).

    commit=False: the work is rolled back at the end instead of committed (a dry run)."""
    if isinstance(store, Engine):
        return SqlUnitOfWork(store, write, commit)
    return store
