"""`adjudicate health` through the command line: exit 0 when all is well, 3 (a service unavailable)
with the failing check named when not; `--format json` for monitoring."""

from __future__ import annotations

import json
import shutil

from conftest import FIXTURES, ROOT, Cli


def report(cli: Cli, *args: str) -> tuple[int, dict]:
    checked = cli(*args, "health", "--format", "json", ok=False)
    return checked.code, json.loads(checked.out)


def failing(found: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in found["checks"] if not c["ok"]}


def test_a_ready_database_without_a_broker_is_healthy_and_then_its_last_run_grows_old(ready):
    code, found = report(ready)
    assert code == 0 and found["healthy"] and found["last_run"] is None
    assert [c["check"] for c in found["checks"]] == ["database", "schema", "last run", "broker"]
    ready("submit", FIXTURES / "worked_example" / "claims.csv")
    ready("run")
    code, found = report(ready)
    assert code == 0 and found["last_run"]["run_id"] == 1 and found["last_run"]["status"] == "done"
    assert 0 <= found["last_run"]["age_seconds"] < 600
    stale = ready("health", "--max-run-age", "0.00001", ok=False)
    assert stale.code == 3 and "FAIL  last run: run 1 done, 0 min ago (older than 1e-05 h)" in stale.out


def test_a_missing_database_is_unhealthy_and_not_created(tmp_path):
    cli = Cli(f"sqlite:///{tmp_path / 'nowhere.db'}", tmp_path)
    code, found = report(cli)
    assert code == 3 and "no database file" in failing(found)["database"]
    assert not (tmp_path / "nowhere.db").exists()


def test_a_database_at_an_old_schema_says_to_upgrade(tmp_path):
    shutil.copy(ROOT / "tests" / "legacy" / "rev0002.db", tmp_path / "old.db")
    cli = Cli(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)
    code, found = report(cli)
    assert code == 3 and "run `adjudicate db upgrade`" in failing(found)["schema"]


def test_an_unreachable_broker_is_unhealthy(ready):
    code, found = report(ready, "--broker", "redis://127.0.0.1:1/0")
    assert code == 3 and set(failing(found)) == {"broker", "workers"}
    text = ready("--broker", "redis://127.0.0.1:1/0", "health", ok=False)
    assert text.code == 3 and "FAIL  broker: cannot reach the broker" in text.out
