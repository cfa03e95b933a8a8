"""Who may act, and an audit trail nobody can rewrite (SPEC section 5), through the command line."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess

import pytest
from sqlalchemy import create_engine, text

from conftest import ADJUDICATE, FIXTURES, Cli

CLAIMS = FIXTURES / "worked_example" / "claims.csv"
NOBODY = {"ADJUDICATION_OPERATOR": ""}  # no operator configured in the environment


def one_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result
    return lines[0]


def test_roles_are_granted_by_an_admin_never_taken(tmp_path):
    cli = Cli(f"sqlite:///{tmp_path / 't.db'}", tmp_path, staff=False)
    assert "first admin boss registered" in cli("db", "upgrade", "--admin", "boss").out
    assert "already an admin" in cli("db", "upgrade", "--admin", "boss").out
    assert "an admin exists already" in one_line(cli("db", "upgrade", "--admin", "eve", ok=False))
    cli("reference", "load", FIXTURES / "worked_example")
    cli("submit", CLAIMS)
    cli("run")
    # mallory cannot register herself, nor be registered by a name that is not an admin's.
    for by in ("mallory", "nobody"):
        refused = cli("operators", "add", "mallory", "--role", "override", "--operator", by, "--note", "x", ok=False)
        assert "is not registered" in one_line(refused)
    assert "name the acting operator" in one_line(
        cli("operators", "add", "mallory", "--role", "override", "--note", "x", ok=False, env=NOBODY))
    # Names: ASCII, lower case, no spaces or line breaks; a Cyrillic look-alike is not `ann`.
    for name in ("\u0430nn", "ann\nroot", "", " ", "Ann", "ann smith", "a" * 33, "9ann", "ann@x"):
        refused = cli("operators", "add", name, "--role", "operator", "--operator", "boss", "--note", "x", ok=False)
        assert "is not valid" in one_line(refused), name
    # The audit's names for actors that are not operators (the run, reference loads, HTTP without a token).
    for name in ("system", "anonymous"):
        refused = cli("operators", "add", name, "--role", "operator", "--operator", "boss", "--note", "x", ok=False)
        assert "the audit's name for actions no operator takes" in one_line(refused), name
    assert "nobody grants a role to themselves" in one_line(
        cli("operators", "add", "boss", "--role", "override", "--operator", "boss", "--note", "x", ok=False))
    cli("operators", "add", "ann", "--role", "operator", "--operator", "boss", "--note", "clerk")
    assert "already holds" in cli("operators", "add", "ann", "--role", "operator", "--operator", "boss",
                                  "--note", "again").out
    assert "does not have the admin role" in one_line(
        cli("operators", "add", "ann", "--role", "admin", "--operator", "ann", "--note", "x", ok=False))
    # Acting needs the role: ann re-queues; unregistered, empty and blank names do not.
    for who in ("eve", "", "  "):
        assert one_line(cli("requeue", "--claim", "WX-3", "--operator", who, "--note", "n", ok=False))
    assert "does not have the override role" in one_line(
        cli("override", "WX-5", "--waive", "OVERLAP_SAME_PROVIDER", "--operator", "ann", "--note", "n", ok=False))
    assert "re-queued 1 claims" in cli("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "n").out
    # Clearing the run lock is an operator's action too; a look-alike or multi-line name is no name.
    for who in ("eve", "\u0430nn", "ann\nroot"):
        assert one_line(cli("unlock", "--operator", who, "--note", "n", ok=False))
        assert one_line(cli("run", "--dry-run", "--operator", who, ok=False))
    # ADJUDICATION_OPERATOR names the operator when --operator is absent (a scheduled job's service operator).
    cli("operators", "add", "nightly", "--role", "operator", "--operator", "boss", "--note", "cron exports")
    assert cli("outcomes", "--format", "json", env={"ADJUDICATION_OPERATOR": "nightly"}).out.startswith("[")
    # Exports need a registered operator of any role; an unregistered one gets nothing.
    for args in (("outcomes",), ("ack", "B0"), ("audit",), ("run", "--dry-run")):
        refused = cli(*args, ok=False, env={"ADJUDICATION_OPERATOR": "eve"})
        assert "is not registered" in one_line(refused) and refused.out == ""
        assert "name the acting operator" in one_line(cli(*args, ok=False, env=NOBODY))
    batch = cli("outcomes", "--format", "json", "--operator", "ann").out and json.loads(
        cli("outcomes", "--format", "json", "--operator", "ann").out)[0]["batch_id"]
    cli("ack", batch, "--operator", "ann")
    # Several roles at once, listed; revoked roles stop working; the last admin stays.
    cli("operators", "add", "ann", "--role", "override", "--operator", "boss", "--note", "override desk too")
    listed = {r["name"]: r["roles"] for r in cli("operators", "list").rows()}
    assert listed == {"ann": "operator;override", "boss": "admin", "nightly": "operator"}
    cli("operators", "revoke", "ann", "--role", "operator", "--operator", "boss", "--note", "moved to override desk")
    assert "does not have the operator role" in one_line(
        cli("requeue", "--claim", "WX-3", "--operator", "ann", "--note", "n", ok=False))
    assert "last admin" in one_line(
        cli("operators", "revoke", "boss", "--role", "admin", "--operator", "boss", "--note", "x", ok=False))

    trail = json.loads(cli("audit", "--format", "json", "--operator", "ann").out)
    done = [(r["operator"], r["action"], r["target"]) for r in trail]
    assert done[0] == ("boss", "operators.grant", "name=boss role=admin")
    assert ("boss", "operators.grant", "name=ann role=operator") in done
    assert ("boss", "operators.revoke", "name=ann role=operator") in done
    assert ("ann", "requeue", "claims=WX-3 -> 1 claims") in done
    assert ("nightly", "outcomes.export", "batch=* status=* history=False rows=6") in done
    assert ("ann", "ack.export", f"batch={batch}") in done and done[-1] == ("ann", "audit.export", "audit")
    assert {(r["os_user"], r["host"]) for r in trail} == {(getpass.getuser(), socket.gethostname())}
    assert not any(action.startswith(("operators.add", "requeue")) and who in ("mallory", "eve")
                   for who, action, _ in done)  # refusals change nothing


def _tamper(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def test_the_audit_trail_cannot_be_changed_and_a_change_behind_its_back_is_named(db_url, tmp_path):
    cli = Cli(db_url, tmp_path)
    cli("db", "upgrade")  # the test operators' grants are the first entries
    cli("reference", "load", FIXTURES / "worked_example")
    cli("submit", CLAIMS)
    cli("run")
    cli("requeue", "--claim", "WX-3", "--note", "recheck")
    cli("outcomes")
    entries = len(json.loads(cli("audit", "--format", "json").out))
    trail = json.loads(cli("audit", "--format", "json").out)
    assert cli("audit", "verify").out.strip() == (  # the second export is the last entry
        f"audit trail intact: {entries + 1} entries, last hash {trail[-1]['hash']}")
    postgres = db_url.startswith("postgresql")
    # Through the database, with the application's own rights: refused.
    for statement in ("UPDATE audit SET note = 'nothing happened' WHERE action = 'requeue'",
                      "DELETE FROM audit WHERE action = 'requeue'",
                      *(["TRUNCATE audit"] if postgres else [])):
        with pytest.raises(Exception, match="append-only"):
            _tamper(db_url, statement)
    assert "intact" in cli("audit", "verify").out
    # Someone able to drop the triggers edits an entry: the chain names it.
    requeue_id = next(r["id"] for r in json.loads(cli("audit", "--format", "json").out) if r["action"] == "requeue")
    if postgres:
        drop = ["ALTER TABLE audit DISABLE TRIGGER audit_no_update_delete"]
        restore = ["ALTER TABLE audit ENABLE TRIGGER audit_no_update_delete"]
    else:
        drop = ["DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete"]
        restore = []
    _tamper(db_url, *drop, "UPDATE audit SET note = 'nothing happened' WHERE action = 'requeue'", *restore)
    broken = cli("audit", "verify", ok=False)
    assert one_line(broken) == (f"error: audit trail broken at entry {requeue_id}: its content does not match its "
                                "hash (the entry was changed)")
    # Put back, then a forged entry slipped in at the end (its own hash computed, but not chained).
    _tamper(db_url, *drop, "UPDATE audit SET note = 'recheck' WHERE action = 'requeue'", *restore)
    assert "intact" in cli("audit", "verify").out
    last = json.loads(cli("audit", "--format", "json").out)[-1]
    forged_id = last["id"] + 1
    _tamper(db_url, "INSERT INTO audit (id, at, operator, action, target, note, os_user, host, prev_hash, hash) "
                    f"VALUES ({forged_id}, '2026-01-01 00:00:00', 'ann', 'override', 'claim=WX-5 waive=X', 'ok', "
                    f"'ann', 'h', '{'0' * 64}', '{'1' * 64}')")
    assert f"broken at entry {forged_id}: it does not follow the entry before it" in one_line(
        cli("audit", "verify", ok=False))


def test_concurrent_commands_extend_one_chain(db_url, tmp_path):
    cli = Cli(db_url, tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    cli("submit", CLAIMS)
    cli("run")
    import os

    from conftest import STAFF_ENV
    procs = [subprocess.Popen([str(ADJUDICATE), "--db", db_url, *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **STAFF_ENV}, cwd=tmp_path)
             for args in [("outcomes",), ("audit",), ("outcomes", "--history"), ("operators", "list")] * 2]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert "intact" in cli("audit", "verify").out


@pytest.fixture
def app_role_db():
    """A PostgreSQL database and a fresh role without SUPERUSER or CREATEROLE that may create tables
    in its public schema (the application's, as docs/operations.md sets it up): (the role's URL, the
    superuser's URL, the role, a name for the audit's owner). Dropped afterwards, roles included."""
    import uuid

    import psycopg

    from conftest import PG_ADMIN, require_server

    require_server("PostgreSQL", "127.0.0.1", 5432)
    tag = uuid.uuid4().hex[:10]
    name, role, owner = f"adj_seal_{tag}", f"adj_app_{tag}", f"adj_audit_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB")
        admin.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True) as admin:
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    try:
        yield (f"postgresql+psycopg://{role}@127.0.0.1:5432/{name}",
               f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", role, owner)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {owner}")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_a_sealed_audit_cannot_be_changed_by_the_role_that_owns_every_other_table(app_role_db, tmp_path):
    app_url, superuser_url, role, owner = app_role_db
    cli = Cli(app_url, tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    dba = Cli(superuser_url, tmp_path)
    # Refused for the application's own role (it cannot create roles), for a name it owns under, and
    # where the application's role could undo the seal: it may create roles, or create schemas (an
    # `audit` of its own would come first on its search path).
    assert "permission denied" in one_line(cli("db", "seal-audit", "--owner", owner, ok=False)).lower()
    assert "owns the other tables" in one_line(dba("db", "seal-audit", "--owner", role, ok=False))
    assert "not pg_" in one_line(dba("db", "seal-audit", "--owner", "pg_write_all_data", ok=False))
    database = app_url.rsplit("/", 1)[1]
    for grant, revoke, said in ((f"ALTER ROLE {role} CREATEROLE", f"ALTER ROLE {role} NOCREATEROLE", "may create roles"),
                                (f"GRANT CREATE ON DATABASE {database} TO {role}",
                                 f"REVOKE CREATE ON DATABASE {database} FROM {role}", "may create schemas")):
        _tamper(superuser_url, grant)
        assert said in one_line(dba("db", "seal-audit", "--owner", owner, ok=False))
        _tamper(superuser_url, revoke)
    _tamper(superuser_url, f"CREATE ROLE {owner}_login LOGIN")
    try:
        assert "can log in" in one_line(dba("db", "seal-audit", "--owner", f"{owner}_login", ok=False))
    finally:
        _tamper(superuser_url, f"DROP ROLE {owner}_login")
    sealed = dba("db", "seal-audit", "--owner", owner).out
    assert f"the audit belongs to role {owner}; role {role} may read it and append to it" in sealed
    # The application goes on: a run (its first of the month creates and attaches a partition),
    # re-queues and exports, each audited, and the chain holds.
    cli("submit", CLAIMS)
    cli("run")
    cli("requeue", "--claim", "WX-3", "--note", "recheck")
    cli("outcomes")
    actions = [row["action"] for row in json.loads(cli("audit", "--format", "json").out)]
    assert "db.seal-audit" in actions and actions[-3:] == ["requeue", "outcomes.export", "audit.export"]
    assert "intact" in cli("audit", "verify").out
    # With the application's rights, every way around the triggers is closed.
    for statement in ("ALTER TABLE audit DISABLE TRIGGER audit_no_update_delete",
                      "DROP TRIGGER audit_no_update_delete ON audit",
                      "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql "
                      "AS $$ BEGIN RETURN NEW; END $$",
                      "SET session_replication_role = replica",
                      "ALTER TABLE audit OWNER TO CURRENT_USER",
                      "DROP TABLE audit",
                      "ALTER TABLE audit RENAME TO audit_before",
                      "DROP SCHEMA public CASCADE",
                      f"CREATE SCHEMA {role}",  # an audit table of its own, first on its search path
                      "TRUNCATE audit",
                      "DELETE FROM audit",
                      "UPDATE audit SET note = 'nothing happened' WHERE action = 'requeue'"):
        with pytest.raises(Exception, match="must be owner|permission denied|append-only"):
            _tamper(app_url, statement)
    assert "intact" in cli("audit", "verify").out
    # On SQLite there is no role to hand it to: said in one line.
    sqlite = Cli(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    sqlite("db", "upgrade")
    assert "for PostgreSQL" in one_line(sqlite("db", "seal-audit", "--owner", "auditor", ok=False))
