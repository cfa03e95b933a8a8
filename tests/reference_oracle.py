"""The row-by-row reference load (csv.DictReader, one pydantic model per row, Python loops over the
merged rows), as it was before the load became column-wise: the oracle tests/test_reference_fast.py
holds `adjudication.reference` to, message for message."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from adjudication.reference import FILES, NON_NEGATIVE, ReferenceLoadError, _model_field, _Row
from adjudication.rules import Rules


@dataclass(frozen=True)
class Located:
    """A parsed row and where it came from (None for rows already stored)."""

    row: _Row
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ReferenceSet:
    providers: dict[str, Located] = field(default_factory=dict)
    plans: dict[str, Located] = field(default_factory=dict)
    enrollments: tuple[Located, ...] = ()
    spas: dict[str, Located] = field(default_factory=dict)
def parse_file(name: str, text: str) -> list[Located]:
    """Parse one reference CSV (header = line 1); ReferenceLoadError on the first bad row."""
    model = FILES[name]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise ReferenceLoadError(name, 1, "(header)", f"not readable as CSV: {error}") from None
    reader.fieldnames = header
    needed = [n for n, f in model.model_fields.items() if f.is_required()]
    for column in needed:
        if column not in header:
            raise ReferenceLoadError(name, 1, column, "column is missing from the header")
    rows: list[Located] = []
    for record in _records(name, reader):
        line = reader.line_num
        if None in record:
            raise ReferenceLoadError(name, line, header[-1] if header else "?", "row has more fields than the header")
        try:
            row = model.model_validate(record)
        except ValidationError as error:
            first = error.errors()[0]
            where = str(first["loc"][0]) if first["loc"] else _model_field(first["msg"], model)
            raise ReferenceLoadError(name, line, where, first["msg"].removeprefix("Value error, ")) from None
        for column in (c for c in model.model_fields if c in NON_NEGATIVE):
            if getattr(row, column) < 0:
                raise ReferenceLoadError(name, line, column, "must not be negative")
        rows.append(Located(row, name, line))
    return rows


def _records(name: str, reader: csv.DictReader):
    """The reader's records; a CSV structure error (a field over the csv module's size limit, a NUL)
    becomes a ReferenceLoadError naming the line it was found on."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # line_num counts the lines read before the one that failed.
            raise ReferenceLoadError(name, reader.line_num + 1, "(record)", f"not readable as CSV: {error}") from None


def merge(current: ReferenceSet, loaded: dict[str, list[Located]], rules: Rules) -> ReferenceSet:
    """Upsert providers, plans and SPAs by id; replace the enrollments of every client in the new file.

    Checks the merged whole and raises ReferenceLoadError naming the new row that breaks a rule
    (`rules`: the in-home and residential service elements).
    """
    updates = {}
    for name, key, attr in (("providers.csv", "provider_id", "providers"), ("plans.csv", "plan_id", "plans"),
                            ("spas.csv", "spa_id", "spas")):
        if name not in loaded:
            continue
        merged = dict(getattr(current, attr))
        seen: set[str] = set()
        for item in loaded[name]:
            ident = getattr(item.row, key)
            if ident in seen:
                raise ReferenceLoadError(name, item.line, key, f"{ident} appears twice in the file")
            seen.add(ident)
            merged[ident] = item
        updates[attr] = merged
    if "enrollments.csv" in loaded:
        new = loaded["enrollments.csv"]
        replaced = {item.row.client_prime for item in new}
        kept = tuple(item for item in current.enrollments if item.row.client_prime not in replaced)
        updates["enrollments"] = kept + tuple(new)
    result = replace(current, **updates)
    # The loaded plans that put their SPAs in force for a client: accepted now, and stored as not
    # accepted or under another client (a plan reloaded as it was changes nothing).
    in_force = {}
    for item in loaded.get("plans.csv", []):
        stored = current.plans.get(item.row.plan_id)
        if item.row.status == "accepted" and stored is not None:
            if stored.row.status != "accepted":
                in_force[item.row.plan_id] = "status"
            elif stored.row.client_prime != item.row.client_prime:
                in_force[item.row.plan_id] = "client_prime"
    _check(result, rules, in_force)
    return result


def _blame(first: Located, second: Located) -> Located:
    """The row to name for a conflict: the newly loaded one, the later line when both are new."""
    if first.line is None:
        return second
    if second.line is None:
        return first
    return max(first, second, key=lambda item: item.line)


def _check(reference: ReferenceSet, rules: Rules, in_force: dict[str, str]) -> None:
    for item in reference.spas.values():
        spa = item.row
        if item.line is None:
            continue
        if spa.plan_id not in reference.plans:
            raise ReferenceLoadError(item.file, item.line, "plan_id", f"unknown plan_id {spa.plan_id}")
        if spa.provider_id not in reference.providers:
            raise ReferenceLoadError(item.file, item.line, "provider_id", f"unknown provider_id {spa.provider_id}")

    for item in reference.spas.values():
        plan = reference.plans.get(item.row.plan_id)
        if plan is None or (item.line is None and plan.line is None):
            continue
        spa = item.row
        for side in ("start_date", "end_date"):
            if not plan.row.start_date <= getattr(spa, side) <= plan.row.end_date:
                blamed = item if item.line is not None else plan
                raise ReferenceLoadError(blamed.file, blamed.line, side,
                                         f"SPA {spa.spa_id} is not inside the dates of its plan {plan.row.plan_id}")
    _no_in_home_and_residential_overlap(reference, rules, in_force)

    accepted_plans: dict[str, list[Located]] = {}
    for item in reference.plans.values():
        if item.row.status == "accepted":
            accepted_plans.setdefault(item.row.client_prime, []).append(item)
    for items in accepted_plans.values():
        _no_overlap(items, "accepted plan {other} of the same client covers overlapping dates")

    accepted_spas: dict[tuple, list[Located]] = {}
    for item in reference.spas.values():
        s = item.row
        if s.status == "accepted":
            accepted_spas.setdefault((s.plan_id, s.provider_id, s.procedure_code, s.modifier), []).append(item)
    for items in accepted_spas.values():
        _no_overlap(items, "accepted SPA {other} of the same plan, provider, procedure and modifier overlaps")


def _no_overlap(items: list[Located], message: str) -> None:
    items = sorted(items, key=lambda item: item.row.start_date)
    for index, item in enumerate(items):
        for other in items[index + 1:]:
            if other.row.start_date > item.row.end_date:
                break
            if (item.line is None) and (other.line is None):
                continue
            blamed = _blame(item, other)
            partner = other if blamed is item else item
            ident = getattr(partner.row, "spa_id", None) or getattr(partner.row, "plan_id")
            raise ReferenceLoadError(blamed.file, blamed.line, "start_date", message.format(other=ident))


def _no_in_home_and_residential_overlap(reference: ReferenceSet, rules: Rules, in_force: dict[str, str]) -> None:
    """One client's accepted SPAs under accepted plans may not be in-home and residential on one
    day, except an in-home SPA ending on the day a residential one starts (moving day, seed 000:
    in-home services earlier that day can still be billed)."""
    by_client: dict[str, tuple[list[Located], list[Located]]] = {}
    for item in reference.spas.values():
        plan = reference.plans.get(item.row.plan_id)
        if item.row.status != "accepted" or plan is None or plan.row.status != "accepted":
            continue
        element = item.row.service_element
        kinds = by_client.setdefault(plan.row.client_prime, ([], []))
        if element in rules.in_home_service_elements:
            kinds[0].append(item)
        elif element in rules.residential_service_elements:
            kinds[1].append(item)
    for in_home, residential in by_client.values():
        for home in in_home:
            for stay in residential:
                if not home.row.overlaps(stay.row) or home.row.end_date == stay.row.start_date:
                    continue
                plans = [reference.plans[item.row.plan_id] for item in (home, stay)
                         if item.row.plan_id in in_force]
                if home.line is None and stay.line is None:
                    if not plans:
                        continue
                    plan = _blame(*plans) if len(plans) == 2 else plans[0]  # it puts two stored SPAs in force
                    raise ReferenceLoadError(
                        plan.file, plan.line, in_force[plan.row.plan_id],
                        f"plan {plan.row.plan_id} would put in force in-home and residential SPAs of one client "
                        f"that overlap ({home.row.spa_id}, {stay.row.spa_id})")
                blamed = _blame(home, stay)
                partner = stay if blamed is home else home
                raise ReferenceLoadError(
                    blamed.file, blamed.line, "start_date",
                    f"accepted in-home and residential SPAs of one client overlap ({partner.row.spa_id}); only an "
                    f"in-home SPA ending on the day the residential one starts may")
