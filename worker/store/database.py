"""Engine creation and schema migration (alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text

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


def seal_audit(engine: Engine, owner: str) -> str:
    """PostgreSQL: make `owner` (created NOLOGIN when missing) the owner of the audit table, of its
    trigger function and of their schema (whose owner could drop the table), and leave the
    application's role (the owner of the other tables, which it needs: a run creates and attaches a
    partition of `attempts` each month) the right to read and append to the audit, and to create
    tables in the schema. That role can then neither change nor delete an entry, nor drop or disable
    the triggers, nor replace their function, nor drop the table: only `owner` (nobody logs in as it)
    or a superuser could. Refused where the application's role could undo it: a superuser, a role
    that may create roles (it could make itself a member of `owner`), one that may create schemas in
    the database (an `audit` table of its own would come first on its search path: the database
    must belong to another role), or a member of `owner`; and for an `owner` that can log in or has
    members. Run by a superuser. Returns the application's role.

    Every name is checked against ROLE_NAME and quoted; the schema is the one holding the tables
    (the one `db upgrade` put them in), read from the catalog with the search path pinned."""
    from sqlalchemy.exc import ProgrammingError

    if engine.dialect.name != "postgresql":
        raise SealRefused("db seal-audit is for PostgreSQL (on SQLite whoever can write the file can change it)")
    if not ROLE_NAME.fullmatch(owner) or owner.startswith("pg_"):
        raise SealRefused("--owner: a role name of lower-case letters, digits and _ (up to 63), not pg_...")
    try:
        return _seal_audit(engine, owner)
    except ProgrammingError as error:  # a role that may not create roles or change owners
        if getattr(error.orig, "sqlstate", None) != "42501":
            raise
        raise SealRefused("permission denied (the database refused it): run db seal-audit as a superuser") from None


# The names seal_audit puts into statements (PostgreSQL's unquoted identifiers, lower case).
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _seal_audit(engine: Engine, owner: str) -> str:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL search_path = pg_catalog")  # no object of anyone else's comes first
        found = conn.execute(text(
            "SELECT n.nspname, a.relowner::regrole::text FROM pg_class a JOIN pg_namespace n ON n.oid = a.relnamespace "
            "JOIN pg_class u ON u.relnamespace = a.relnamespace AND u.relname = 'audit' AND u.relkind = 'r' "
            "WHERE a.relname = 'attempts' AND a.relkind = 'p'")).all()
        if len(found) != 1:
            raise SealRefused("no schema here (run `adjudicate db upgrade` first)" if not found else
                              "the tables are in more than one schema: seal them by hand (docs/operations.md)")
        schema, app = found[0]
        if not (ROLE_NAME.fullmatch(schema) and ROLE_NAME.fullmatch(app)):
            raise SealRefused("the schema's or the application role's name is not a plain one: seal by hand")
        if owner == app:
            raise SealRefused(f"role {owner} owns the other tables (it is the application's): name another role")
        role = conn.execute(text("SELECT rolsuper, rolcreaterole, has_database_privilege(rolname, current_database(), "
                                 "'CREATE') FROM pg_roles WHERE rolname = :r"), {"r": app}).one()
        if role[0] or role[1]:
            raise SealRefused(f"role {app} is a superuser or may create roles: nothing would hold it back "
                              "(run the application as a role without SUPERUSER and CREATEROLE)")
        if role[2]:
            raise SealRefused(f"role {app} may create schemas in this database (it owns it?): an audit table of "
                              "its own would come first on its search path; give the database to another role")
        existing = conn.execute(text("SELECT rolcanlogin, EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = "
                                     "r.oid) FROM pg_roles r WHERE rolname = :r"), {"r": owner}).first()
        if existing is None:
            conn.exec_driver_sql(f'CREATE ROLE "{owner}" NOLOGIN')
        elif existing[0] or existing[1]:
            raise SealRefused(f"role {owner} can log in or has members: name a role nobody acts as")
        # The schema's owner may drop any table in it, the audit too: the schema goes to `owner` as
        # well, and the application keeps the right to create tables in it (a run's new partitions).
        conn.exec_driver_sql(f'ALTER SCHEMA "{schema}" OWNER TO "{owner}"')
        conn.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{app}"')
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".audit OWNER TO "{owner}"')
        conn.exec_driver_sql(f'ALTER FUNCTION "{schema}".audit_append_only() OWNER TO "{owner}"')
        conn.exec_driver_sql(f'REVOKE ALL ON "{schema}".audit FROM "{app}"')
        conn.exec_driver_sql(f'GRANT SELECT, INSERT ON "{schema}".audit TO "{app}"')
    return app
