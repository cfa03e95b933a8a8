"""Engine creation and schema migration (alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).with_name("migrations")

# The scratch files worker/store/bulk.py attaches to a SQLite connection for a bulk write are named
# so; they are detached when the connection goes back to the pool (SQLite refuses to detach one
# inside the transaction that read it).
STAGE_PREFIX = "stage_"


def normalize_url(url: str) -> str:
    """Plain postgresql:// URLs use psycopg 3, the driver this project ships."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, busy_timeout: float = 600.0) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # Only takes effect on a new, empty file: 16 KiB pages write the per-batch and per-run
            # blobs and the packed ledger with half the page overhead of the 4 KiB default.
            cursor.execute("PRAGMA page_size=16384")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Up to 256 MiB of page cache (the default is 2 MiB): a run appends a million attempt rows
            # to seven indexes, and with the default cache every insert into an index rereads and
            # rewrites pages evicted since (about twice the time). Memory is taken only as pages are used.
            cursor.execute("PRAGMA cache_size=-262144")
            # SQLite's default: foreign keys declared, not checked. The bulk writes only refer to rows
            # read in the same transaction, and checking them costs a third of a million-claim run.
            # PostgreSQL enforces them.
            cursor.execute("PRAGMA foreign_keys=OFF")
            # Helper threads for big sorts: a run builds the attempt indexes of a new database from a
            # million rows each (about a third faster with two).
            cursor.execute(f"PRAGMA threads={min(4, os.cpu_count() or 1)}")
            cursor.close()

        # As a connection goes back to the pool: a failure here is logged and the connection
        # discarded (SQLAlchemy invalidates it), never handed out again with scratch files attached.
        @event.listens_for(engine, "reset")
        def _detach_stages(dbapi_connection, _record, _state):
            attached = [row[1] for row in dbapi_connection.execute("PRAGMA database_list")]
            for name in attached:
                if name.startswith(STAGE_PREFIX):
                    dbapi_connection.execute(f"DETACH DATABASE {name}")

        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine):
    from alembic.config import Config  # imported here: every other command starts faster without it

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revisions() -> set[str]:
    """The newest migration(s), read from the revision files' `revision`/`down_revision` lines: the
    same answer as alembic's script directory without importing alembic (0.6 s on every command)."""
    import re

    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision\s*=\s*["\']([^"\']+)["\']', text, re.M)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if down:
            parents.update(re.findall(r'["\']([^"\']+)["\']', down.group(1)))
    return revisions - parents


def current_revisions(engine: Engine) -> set[str] | None:
    """The database's schema revision(s); None when it has no schema (no alembic_version table)."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """(the database's schema revisions, empty when it has no schema; the newest migrations): the
    schema is current when the two are equal."""
    return current_revisions(engine) or set(), head_revisions()


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database (None for PostgreSQL or an in-memory database)."""
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database)


class SealRefused(Exception):
    """The audit cannot be handed to another role here (one line, for the operator)."""


def seal_audit(engine: Engine, owner: str) -> tuple[str, bool]:
    """PostgreSQL: make `owner` (created NOLOGIN when missing) the owner of the audit table, of its
    trigger function and of the schema (whose owner could drop the table), and leave the
    application's role (the owner of the other tables, which it needs: a run creates and attaches a
    partition of `attempts` each month) the right to read and append to the audit, and to create
    tables in the schema. That role can then neither change nor delete an entry, nor drop or disable
    the triggers, nor replace their function, nor drop the table: only `owner` (nobody logs in as it)
    or a superuser could. Run by a role that may create roles and change owners (a superuser).
    Returns the application's role and whether it is a superuser (then nothing holds it back)."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    if engine.dialect.name != "postgresql":
        raise SealRefused("db seal-audit is for PostgreSQL (on SQLite whoever can write the file can change it)")
    try:
        return _seal_audit(engine, owner, text)
    except ProgrammingError as error:  # a role that may not create roles or change owners
        if getattr(error.orig, "sqlstate", None) != "42501":
            raise
        raise SealRefused("permission denied (the database refused it): run db seal-audit as a superuser") from None


def _seal_audit(engine: Engine, owner: str, text) -> tuple[str, bool]:
    with engine.begin() as conn:
        app = conn.execute(text("SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() "
                                "AND tablename = 'attempts'")).scalar()
        if app is None:
            raise SealRefused("no schema here: run `adjudicate db upgrade` first")
        if owner == app:
            raise SealRefused(f"role {owner} owns the other tables (it is the application's): name another role")
        if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": owner}).first() is None:
            conn.exec_driver_sql(f'CREATE ROLE "{owner}" NOLOGIN')
        elif conn.execute(text("SELECT pg_has_role(:app, :owner, 'MEMBER')"), {"app": app, "owner": owner}).scalar():
            raise SealRefused(f"role {app} is a member of {owner}: it could act as the audit's owner")
        # The schema's owner may drop any table in it, the audit too: the schema goes to `owner` as
        # well, and the application keeps the right to create tables in it (a run's new partitions).
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        conn.exec_driver_sql(f'ALTER SCHEMA "{schema}" OWNER TO "{owner}"')
        conn.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{app}"')
        conn.exec_driver_sql(f'ALTER TABLE audit OWNER TO "{owner}"')
        conn.exec_driver_sql(f'ALTER FUNCTION audit_append_only() OWNER TO "{owner}"')
        conn.exec_driver_sql(f'REVOKE ALL ON audit FROM "{app}"')
        conn.exec_driver_sql(f'GRANT SELECT, INSERT ON audit TO "{app}"')
        superuser = bool(conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": app}).scalar())
    return app, superuser
