"""Shared fixtures: the real `adjudicate` entry point on a temporary SQLite database."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ADJUDICATE = Path(sys.executable).with_name("adjudicate")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def rows(self) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.out)))


@dataclass
class Cli:
    db: str
    cwd: Path

    def __call__(self, *args: str, ok: bool = True, env: dict | None = None) -> Result:
        done = subprocess.run([str(ADJUDICATE), "--db", self.db, *map(str, args)], capture_output=True, text=True,
                              cwd=self.cwd, env={**os.environ, **(env or {})}, timeout=300)
        result = Result(done.returncode, done.stdout, done.stderr)
        if ok:
            assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(f"sqlite:///{tmp_path / 'test.db'}", tmp_path)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    """A database with the schema and the worked example's reference data."""
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    return cli
