"""Where SQL lives: only in worker/store (the repository, the unit of work, the bulk paths and the
small tables' records). The service layer and everything above it reach the database through
`unit_of_work(...)` and the repository it hands out, so a newcomer finds every statement in one
package, and use cases can be tested against a fake (tests/fakes.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "not_",
                      "literal", "literal_column", "table", "column", "bindparam", "any_", "exists", "case", "cast",
                      "null", "true", "false", "tuple_", "union", "union_all", "Table", "Column", "MetaData"}
# A connection's or an engine's calls; a Redis pipeline's execute() (worker/distributed.py) is not SQL.
DATABASE_CALLS = {"exec_driver_sql", "execute", "begin", "connect"}


def _receiver(call: ast.Call) -> str:
    """The source of what a method is called on: 'conn', 'app.engine', 'client.pipeline().sadd(...)'."""
    return ast.unparse(call.func.value)


def _sql_outside_the_store(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names
                      if a.name == "sqlalchemy" or a.name.startswith("worker.store.schema")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found += [f"imports sqlalchemy's {a.name}" for a in node.names if a.name in STATEMENT_BUILDERS]
        elif isinstance(node, ast.ImportFrom) and ((node.module or "").startswith("worker.store.schema") or (
                node.module == "worker.store" and any(a.name == "schema" for a in node.names))):
            found.append("imports the table definitions")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in DATABASE_CALLS and ".pipeline()" not in _receiver(node)):
            found.append(f"calls {_receiver(node)}.{node.func.attr}()")
    return [f"{path.relative_to(root)}:{problem}" for problem in sorted(found)]


def test_no_sql_outside_the_store():
    store = ROOT / "worker" / "store"
    modules = [p for p in sorted((ROOT / "worker").rglob("*.py")) if not p.is_relative_to(store)]
    assert len(modules) > 20  # the walk found the package
    problems = [problem for path in modules for problem in _sql_outside_the_store(path)]
    assert problems == []


def test_the_check_finds_sql(tmp_path):
    """The check itself: a module that builds and runs a statement is named, each way it can."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sqlalchemy as sa\nfrom sqlalchemy import case, Engine\nfrom sqlalchemy.exc import IntegrityError\n"
        "from worker.store import schema as t\nfrom worker.store.schema import runs\n"
        "def f(store, repo, client):\n"
        "    with store.begin() as conn:\n        conn.exec_driver_sql('SELECT 1')\n"
        "    repo.conn.execute(sa.select(runs))\n    client.pipeline().sadd('k', 1).execute()\n")
    found = [p.partition(":")[2] for p in _sql_outside_the_store(sample, tmp_path)]
    assert found == ["calls conn.exec_driver_sql()", "calls repo.conn.execute()", "calls store.begin()",
                     "imports sqlalchemy", "imports sqlalchemy's case", "imports the table definitions",
                     "imports the table definitions"]


# What reads or writes files or databases: the engine takes bytes and frames, and gives frames back.
IO_MODULES = {"os", "pathlib", "shutil", "tempfile", "sqlite3", "glob", "sqlalchemy", "psycopg", "redis", "worker"}
IO_CALLS = {"open", "read_bytes", "read_text", "write_bytes", "write_text", "exists", "glob", "rglob", "iterdir",
            "unlink", "mkdir", "rmdir", "touch", "load", "dump"}  # load, dump: json's, tomllib's, pickle's file ones
# polars readers and writers given what reads as a path: a text (literal or f-string), Path(...) or a
# `/` join. A path in a variable looks like bytes to this check; those the engine's tests would catch
# only by running (the engine is handed bytes everywhere it is called from).
POLARS_FILES = ("read_", "scan_", "write_", "sink_")


def _path_like(node: ast.expr) -> bool:
    return ((isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)
            or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
            or (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Path"))


def _io_in_the_engine(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in IO_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in IO_MODULES:
            found.append(f"imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in IO_CALLS:
                found.append(f"calls {name}()")
            elif name.startswith(POLARS_FILES) and any(_path_like(a) for a in [
                    *node.args[:1], *(k.value for k in node.keywords if k.arg in ("source", "file", "path"))]):
                found.append(f"calls {name}() with a path")
    return [f"{path.relative_to(root)}:{problem}" for problem in sorted(found)]


def test_the_engine_reads_no_file_and_no_database():
    """adjudication/ is the pure domain: the worker reads files and the store, and hands it bytes and
    frames (its own default rules are package data, read through importlib.resources)."""
    modules = sorted((ROOT / "adjudication").glob("*.py"))
    assert len(modules) > 8
    problems = [problem for path in modules for problem in _io_in_the_engine(path)]
    assert problems == ["adjudication/rules.py:calls read_text()"]  # default_rules_text, package data


def test_the_engine_check_finds_io(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom pathlib import Path\nfrom worker.store import repository\n"
                      "def f(p, data, folder):\n    open(p)\n    tomllib.load(p)\n    pl.read_csv(data)\n"
                      "    pl.read_csv('x.csv')\n    pl.scan_parquet(f'{p}.parquet')\n    pl.read_parquet(folder / 'a')\n"
                      "    pl.DataFrame().write_csv(Path(p))\n    pl.DataFrame().write_csv()\n"
                      "    pl.read_csv(source='y.csv')\n"
                      "    return Path(p).read_bytes()\n")
    found = [p.partition(":")[2] for p in _io_in_the_engine(sample, tmp_path)]
    assert found == ["calls load()", "calls open()", "calls read_bytes()", "calls read_csv() with a path",
                     "calls read_csv() with a path", "calls read_parquet() with a path", "calls scan_parquet() with a path",
                     "calls write_csv() with a path", "imports from pathlib", "imports from worker.store", "imports os"]


def _store_imports_above(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of worker modules other than the store's own and worker.errors, at any depth
    (relative ones resolved from the module's place under `root`)."""
    package = path.relative_to(root).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]
                            if node.level else [node.module or ""])
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [f"imports {n}" for n in names if n.split(".")[0] == "worker"
                  and not n.startswith(("worker.store.", "worker.errors"))]
    return [f"{path.relative_to(root)}:{problem}" for problem in sorted(found)]


def test_the_store_imports_nothing_above_it():
    """worker/store is the bottom layer: the service layer imports it, never the other way round
    (a store that called back into access or audit rules would hide an import cycle)."""
    modules = sorted((ROOT / "worker" / "store").rglob("*.py"))
    assert len(modules) > 15
    assert [problem for path in modules for problem in _store_imports_above(path)] == []


def test_the_store_check_finds_imports_above(tmp_path):
    sample = tmp_path / "worker" / "store" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("import worker.access\nfrom worker import audit\nfrom worker.store import chain\n"
                      "from worker.errors import UserError\nfrom worker import errors\nfrom . import records\n"
                      "from .. import runs\nfrom ..http import app\ndef f():\n    from worker.service import run\n")
    found = [p.partition(":")[2] for p in _store_imports_above(sample, tmp_path)]
    assert found == ["imports worker.access", "imports worker.audit", "imports worker.http.app", "imports worker.runs",
                     "imports worker.service.run"]
