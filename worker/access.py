"""Who may act: registered operators, their roles, and the one permission check every use case calls.

Roles (SPEC section 5): `admin` registers operators and grants or revokes roles; `operator`
re-queues, withdraws and exports; `override` waives an edit. An operator may hold several roles
(one grant each); a role is never implied by another (an admin who is to re-queue is also granted
`operator`). Exports (outcomes, audit, acknowledgements, reports, remittances) need any role.
Nobody grants a role to themselves: the first admin is created when the database is set up
(`db upgrade --admin NAME`), every later grant is made by an admin, and not to the admin's own name.

Names are ASCII only, `NAME_PATTERN`: a lower-case letter, then up to 31 lower-case letters, digits,
'.', '_' or '-' (no look-alike letters from other scripts, no spaces, no line breaks).

Every use case that acts for an operator calls `authorize(repo, operator, role)` first, inside its
unit of work, and records what it did with `repo.audit` (the hash chain: worker/store/chain.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
from worker.errors import UserError
from worker.store.repository import Repository
from worker.store.unit_of_work import unit_of_work

ROLES = ("admin", "operator", "override")
ANY_ROLE = None
NAME_PATTERN = r"[a-z][a-z0-9._-]{0,31}"
_NAME = re.compile(NAME_PATTERN)


class NotAllowed(UserError):
    """The operator is not registered, or does not hold the role the action needs."""


def shown(name: str) -> str:
    """A name as it can be put in a one-line message (escaped, cut short)."""
    text = name if _NAME.fullmatch(name) else ascii(name)
    return text if len(text) <= 40 else text[:37] + "..."


# Names the audit trail uses for actors that are not operators: the nightly run and reference
# loads (worker.service.SYSTEM), a request without a valid token (the HTTP service). Never granted.
RESERVED = frozenset({"system", "anonymous"})


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"operator name {shown(str(name))} is not valid: a lower-case letter, then up to 31 "
                        f"lower-case letters, digits, '.', '_' or '-' (ASCII only)")
    return name


def not_reserved(name: str) -> str:
    if name in RESERVED:
        raise NotAllowed(f"{name} is the audit's name for actions no operator takes: choose another name")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {shown(role)} (one of {', '.join(ROLES)})")
    return role


def acting(flag: str | None, configured: str | None) -> str:
    """The acting operator's name: `--operator NAME`, else ADJUDICATION_OPERATOR; refused when neither."""
    name = flag if flag is not None else configured
    if name is None or not name.strip():
        raise NotAllowed("name the acting operator: --operator NAME (or ADJUDICATION_OPERATOR)")
    return check_name(name)


def authorize(repo: Repository, operator: str | None, role: str | None = ANY_ROLE) -> str:
    """The permission check: `operator` is a valid, registered name holding `role` (any role when
    ANY_ROLE). Returns the name; raises NotAllowed (a UserError: exit 1, one line) otherwise.
    Call it inside the transaction that acts, before acting."""
    if operator is None or not str(operator).strip():
        raise NotAllowed("name the acting operator: --operator NAME (or ADJUDICATION_OPERATOR)")
    check_name(operator)
    return permitted(operator, role, repo.operators.roles(operator))


def permitted(operator: str, role: str | None, held: set[str] | None) -> str:
    """The rule of `authorize` on the roles `operator` holds (None: not registered)."""
    if held is None:
        raise NotAllowed(f"operator {operator} is not registered (an admin adds it: adjudicate operators add)")
    if role is ANY_ROLE:
        if not held:
            raise NotAllowed(f"operator {operator} holds no role")
    elif role not in held:
        raise NotAllowed(f"operator {operator} does not have the {role} role")
    return operator


def check(engine, operator: str | None, role: str | None = ANY_ROLE) -> str:
    """`authorize` in a transaction of its own: before work that only reads."""
    with unit_of_work(engine, write=False) as repo:
        return authorize(repo, operator, role)


def require_note(note: str) -> None:
    """Every operator action says why (the audit keeps it)."""
    if not note or not note.strip():
        raise UserError("--note must say why")


def bootstrap_admin(engine, name: str) -> bool:
    """The first admin, when the database has none (`db upgrade --admin NAME`). True when created;
    False when NAME is already an admin; refused when another admin exists."""
    not_reserved(check_name(name))
    with unit_of_work(engine) as repo:
        repo.trail.serialize()  # two set-ups at once: one first admin
        held = repo.operators.roles(name) or set()
        if "admin" in held:
            return False
        if repo.operators.admins():
            raise NotAllowed("an admin exists already: roles are granted by an admin (adjudicate operators add "
                             "NAME --role admin --operator ADMIN --note TEXT)")
        repo.operators.register(name)
        repo.operators.grant(name, "admin", by=None)
        repo.audit(name, "operators.grant", f"name={name} role=admin", "first admin, at database set-up")
    return True


@contextmanager
def _by_admin(engine, name: str, role: str, by: str, note: str) -> Iterator[Repository]:
    """A change of `name`'s `role` by the admin `by`, with a note: checked, then one unit of work."""
    check_name(name)
    check_role(role)
    require_note(note)
    with unit_of_work(engine) as repo:
        authorize(repo, by, "admin")
        yield repo


def grant(engine, name: str, role: str, by: str, note: str) -> bool:
    """An admin grants `role` to `name` (registering it when new). False when it held it already."""
    with _by_admin(engine, name, role, by, note) as repo:
        if name == by:
            raise NotAllowed("nobody grants a role to themselves: another admin grants it")
        not_reserved(name)
        if role in (repo.operators.roles(name) or set()):
            return False
        repo.operators.register(name)
        repo.operators.grant(name, role, by)
        repo.audit(by, "operators.grant", f"name={name} role={role}", note)
    return True


def revoke(engine, name: str, role: str, by: str, note: str) -> None:
    """An admin takes a role back; the last admin's admin role cannot be revoked."""
    with _by_admin(engine, name, role, by, note) as repo:
        if role not in (repo.operators.roles(name) or set()):
            raise UserError(f"operator {name} does not hold the {role} role")
        if role == "admin" and repo.operators.admins() == 1:
            raise UserError(f"{name} is the last admin: grant admin to another operator first")
        repo.operators.revoke(name, role)
        repo.audit(by, "operators.revoke", f"name={name} role={role}", note)


def listing(engine) -> pl.DataFrame:
    """Every registered operator with the roles it holds (';'-separated, empty when none)."""
    with unit_of_work(engine, write=False) as repo:
        names = repo.operators.listing()
    return pl.DataFrame(
        [{"name": name, "roles": ";".join(r for r in ROLES if r in held), "added_at": added_at}
         for name, added_at, held in names],
        schema={"name": pl.String, "roles": pl.String, "added_at": pl.Datetime("us", "UTC")}, orient="row")


def record_export(engine, operator: str | None, action: str, target: str, fmt: str) -> None:
    """An export by a registered operator of any role, audited (the note is the format)."""
    with unit_of_work(engine) as repo:
        authorize(repo, operator, ANY_ROLE)
        repo.audit(operator, action, target, fmt)
