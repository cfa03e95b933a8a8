"""Reference data (providers, plans, CM enrollments, SPAs): parsing, the load rules, engine frames.

A load is all-or-nothing: rows are parsed and the merged result checked before anything is
stored, and the first problem is reported with its file, line and field.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Iterable, Literal

import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from adjudication.decimals import to_scaled
from adjudication.engine import PROVIDER_SCHEMA, ReferenceFrames
from adjudication.rules import Rules, load_rules


class ReferenceLoadError(ValueError):
    def __init__(self, file: str, line: int, field: str, message: str):
        self.file, self.line, self.field = file, line, field
        super().__init__(f"{file} line {line}, field {field}: {message}")


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _exact(value: object) -> object:
    value = _strip(value)
    if isinstance(value, str) and value:
        to_scaled(value)  # at most 4 decimal places
    return value


Text = Annotated[str, BeforeValidator(_strip)]
def _required(value: object) -> object:
    value = _strip(value)
    return None if value == "" else value


Required = Annotated[str, BeforeValidator(_required)]
Amount = Annotated[Decimal, BeforeValidator(_exact)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class _Dated(_Row):
    start_date: dt.date
    end_date: dt.date

    @model_validator(mode="after")
    def _ordered(self):
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    def overlaps(self, other: _Dated) -> bool:
        return self.start_date <= other.end_date and other.start_date <= self.end_date


def _optional_date(value: object) -> object:
    value = _strip(value)
    return None if value == "" else value


OptionalDate = Annotated[dt.date | None, BeforeValidator(_optional_date)]


class Provider(_Row):
    provider_id: Required
    name: Text = ""
    kind: Literal["psw", "agency", "generic"]
    # The provider's enrollment (None: open-ended on that side).
    start_date: OptionalDate = None
    end_date: OptionalDate = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class Plan(_Dated):
    plan_id: Required
    client_prime: Required
    status: Literal["draft", "accepted", "closed", "void"]
    monthly_hours: Amount


class Enrollment(_Dated):
    client_prime: Required
    cme_id: Text = ""


class Spa(_Dated):
    spa_id: Required
    plan_id: Required
    provider_id: Required
    service_element: Text = ""
    procedure_code: Required
    modifier: Text = ""
    units: Amount
    unit_period: Literal["month", "day", "total"]
    rate: Amount
    status: Literal["draft", "pending", "accepted", "closed", "void"]


FILES: dict[str, type[_Row]] = {
    "providers.csv": Provider,
    "plans.csv": Plan,
    "enrollments.csv": Enrollment,
    "spas.csv": Spa,
}
# A non-negative amount: pydantic's Decimal accepts negatives, so these are checked by name.
NON_NEGATIVE = {"monthly_hours", "units", "rate"}


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

    @classmethod
    def from_rows(cls, providers: Iterable[Provider], plans: Iterable[Plan], enrollments: Iterable[Enrollment],
                  spas: Iterable[Spa]) -> ReferenceSet:
        return cls(
            providers={p.provider_id: Located(p) for p in providers},
            plans={p.plan_id: Located(p) for p in plans},
            enrollments=tuple(Located(e) for e in enrollments),
            spas={s.spa_id: Located(s) for s in spas},
        )

    def rows(self, name: str) -> list[_Row]:
        held = {"providers.csv": self.providers, "plans.csv": self.plans, "spas.csv": self.spas}.get(name)
        located = held.values() if held is not None else self.enrollments
        return [item.row for item in located]

    def frames(self) -> ReferenceFrames:
        plans = self.rows("plans.csv")
        client_of = {p.plan_id: p.client_prime for p in plans}
        return ReferenceFrames(
            plans=pl.DataFrame(
                [(p.plan_id, p.client_prime, p.start_date, p.end_date, p.status, to_scaled(p.monthly_hours))
                 for p in plans],
                schema={"plan_id": pl.String, "client_prime": pl.String, "start_date": pl.Date,
                        "end_date": pl.Date, "status": pl.String, "monthly_hours_s": pl.Int64},
                orient="row",
            ),
            enrollments=pl.DataFrame(
                [(e.client_prime, e.start_date, e.end_date) for e in self.rows("enrollments.csv")],
                schema={"client_prime": pl.String, "start_date": pl.Date, "end_date": pl.Date},
                orient="row",
            ),
            providers=pl.DataFrame(
                [(p.provider_id, p.start_date, p.end_date) for p in self.rows("providers.csv")],
                schema=PROVIDER_SCHEMA, orient="row",
            ),
            spas=pl.DataFrame(
                [(s.spa_id, s.plan_id, client_of.get(s.plan_id), s.provider_id, s.procedure_code, s.modifier,
                  s.start_date, s.end_date, to_scaled(s.units), s.unit_period, to_scaled(s.rate), s.status)
                 for s in self.rows("spas.csv")],
                schema={"spa_id": pl.String, "plan_id": pl.String, "client_prime": pl.String,
                        "provider_id": pl.String, "procedure_code": pl.String, "modifier": pl.String,
                        "start_date": pl.Date, "end_date": pl.Date, "units_s": pl.Int64,
                        "unit_period": pl.String, "rate_s": pl.Int64, "status": pl.String},
                orient="row",
            ),
        )


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
        for column in NON_NEGATIVE & set(model.model_fields):
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


def _model_field(message: str, model: type[_Row]) -> str:
    return "end_date" if "end_date" in message else next(iter(model.model_fields))


def read_dir(folder: Path) -> dict[str, list[Located]]:
    """The reference files present in `folder`, parsed (a file left out is simply absent)."""
    found = {}
    for name in FILES:
        path = folder / name
        if path.exists():
            try:
                text = path.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise ReferenceLoadError(name, 1, "-", f"not UTF-8 (byte {error.start})") from None
            found[name] = parse_file(name, text)
    return found


def merge(current: ReferenceSet, loaded: dict[str, list[Located]], rules: Rules | None = None) -> ReferenceSet:
    """Upsert providers, plans and SPAs by id; replace the enrollments of every client in the new file.

    Checks the merged whole and raises ReferenceLoadError naming the new row that breaks a rule
    (`rules`: the in-home and residential service elements; the default rules when None).
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
    _check(result, rules or load_rules())
    return result


def _blame(first: Located, second: Located) -> Located:
    """The row to name for a conflict: the newly loaded one, the later line when both are new."""
    if first.line is None:
        return second
    if second.line is None:
        return first
    return max(first, second, key=lambda item: item.line)


def _check(reference: ReferenceSet, rules: Rules) -> None:
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
    _no_in_home_and_residential_overlap(reference, rules)

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


def _no_in_home_and_residential_overlap(reference: ReferenceSet, rules: Rules) -> None:
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
                if home.line is None and stay.line is None:
                    continue
                blamed = _blame(home, stay)
                partner = stay if blamed is home else home
                raise ReferenceLoadError(
                    blamed.file, blamed.line, "start_date",
                    f"accepted in-home and residential SPAs of one client overlap ({partner.row.spa_id}); only an "
                    f"in-home SPA ending on the day the residential one starts may")
