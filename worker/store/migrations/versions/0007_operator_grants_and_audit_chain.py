"""roles as grants (an operator may hold several), and an audit trail nobody can rewrite: where each
command ran, a hash chain, and triggers refusing UPDATE and DELETE (and TRUNCATE on PostgreSQL)

Revision ID: 0007
Revises: 0004

Each existing operator's role becomes its one grant. Existing audit entries are chained in id
order (their operating-system user and host were not recorded: empty).
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

REFUSAL = "the audit trail is append-only"
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, '{REFUSAL}: UPDATE refused'); END",
    f"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE refused'); END",
)
POSTGRESQL_TRIGGERS = (
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"RAISE EXCEPTION '{REFUSAL}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$",
    "CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit FOR EACH ROW "
    "EXECUTE FUNCTION audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
)


def upgrade() -> None:
    from worker.store.chain import GENESIS, entry_hash

    bind = op.get_bind()
    op.create_table(
        "operator_grants",
        sa.Column("name", sa.String(), sa.ForeignKey("operators.name"), primary_key=True),
        sa.Column("role", sa.String(), primary_key=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String()),
    )
    op.execute("INSERT INTO operator_grants (name, role, granted_at, granted_by) "
               "SELECT name, role, added_at, NULL FROM operators")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("role")

    for column in ("os_user", "host", "prev_hash", "hash"):
        op.add_column("audit", sa.Column(column, sa.String(), nullable=True))
    audit = sa.table("audit", *[sa.column(c) for c in ("id", "at", "operator", "action", "target", "note", "os_user",
                                                       "host", "prev_hash", "hash")])
    previous = GENESIS
    for row in bind.execute(sa.select(audit).order_by(audit.c.id)).mappings().all():
        entry = {**row, "os_user": "", "host": ""}
        if isinstance(entry["at"], str):  # SQLite through a lightweight table: the stored text
            import datetime as dt
            entry["at"] = dt.datetime.fromisoformat(entry["at"])
        digest = entry_hash(entry, previous)
        bind.execute(audit.update().where(audit.c.id == row["id"]).values(os_user="", host="", prev_hash=previous,
                                                                           hash=digest))
        previous = digest
    with op.batch_alter_table("audit") as batch:
        for column in ("os_user", "host", "prev_hash", "hash"):
            batch.alter_column(column, existing_type=sa.String(), nullable=False)

    for statement in POSTGRESQL_TRIGGERS if bind.dialect.name == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_no_truncate ON audit")
        op.execute("DROP TRIGGER audit_no_update_delete ON audit")
        op.execute("DROP FUNCTION audit_append_only()")
    else:
        op.execute("DROP TRIGGER audit_no_update")
        op.execute("DROP TRIGGER audit_no_delete")
    with op.batch_alter_table("audit") as batch:
        for column in ("os_user", "host", "prev_hash", "hash"):
            batch.drop_column(column)
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("role", sa.String(), nullable=False, server_default="operator"))
    op.execute("UPDATE operators SET role = COALESCE((SELECT max(role) FROM operator_grants g "
               "WHERE g.name = operators.name AND g.role IN ('operator', 'override')), 'operator')")
    op.drop_table("operator_grants")
