"""Where SQL lives: only in worker/store (the repository, the unit of work, the bulk paths and the
small tables' records). The service layer and everything above it reach the database through
`unit_of_work(...)` and the repository it hands out, so a newcomer finds every statement in one
package, and use cases can be tested against a fake (tests/fakes.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "literal_column",
                      "table", "column", "bindparam", "any_", "exists"}
DATABASE_CALLS = {"exec_driver_sql", "begin", "connect"}


def _sql_outside_the_store(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found += [f"imports sqlalchemy's {a.name}" for a in node.names if a.name in STATEMENT_BUILDERS]
        elif isinstance(node, ast.ImportFrom) and node.module == "worker.store" and any(
                a.name == "schema" for a in node.names):
            found.append("imports the table definitions")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in DATABASE_CALLS):
            target = node.func.value
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if node.func.attr == "exec_driver_sql" or name == "engine":
                found.append(f"calls {ast.unparse(node.func)}()")
    return [f"{path.relative_to(root)}:{problem}" for problem in found]


def test_no_sql_outside_the_store():
    modules = [p for p in sorted((ROOT / "worker").rglob("*.py")) if "store" not in p.relative_to(ROOT).parts]
    assert len(modules) > 20  # the walk found the package
    problems = [problem for path in modules for problem in _sql_outside_the_store(path)]
    assert problems == []


def test_the_check_finds_sql(tmp_path):
    """The check itself: a module that builds and runs a statement is named, each way it can."""
    sample = tmp_path / "sample.py"
    sample.write_text("from sqlalchemy import select, Engine\nfrom worker.store import schema as t\n"
                      "def f(engine):\n    with engine.begin() as conn:\n        conn.exec_driver_sql('SELECT 1')\n")
    found = [p.partition(":")[2] for p in _sql_outside_the_store(sample, tmp_path)]
    assert found == ["imports sqlalchemy's select", "imports the table definitions", "calls engine.begin()",
                     "calls conn.exec_driver_sql()"]

