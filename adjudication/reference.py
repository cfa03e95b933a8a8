"""Reference data (providers, plans, CM enrollments, SPAs): parsing, the load rules, engine frames.

A load is all-or-nothing: rows are parsed and the merged result checked before anything is
stored, and the first problem is reported with its file, line and field. Rows are held as polars
frames and checked column-wise (a reference load of a large payer is a few hundred thousand rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Annotated, Iterable, Literal, get_args, get_origin

import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from adjudication.claim_file import UTF8_BOM, column_labels, line_and_column
from adjudication.claims import scaled_number
from adjudication.decimals import to_scaled
from adjudication.engine import PROVIDER_SCHEMA, ReferenceFrames
from adjudication.rules import Rules, default_rules


class ReferenceLoadError(ValueError):
    def __init__(self, file: str, line: int, field: str, message: str):
        self.file, self.line, self.field = file, line, field
        super().__init__(f"{file} line {line}, field {field}: {message}")


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


# A decimal as people write one (a sign only for a negative, which is then refused as negative): no
# exponent, underscore, NaN or infinity, which Decimal would read.
DECIMAL_TEXT = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)")


def _exact(value: object) -> object:
    value = _strip(value)
    if isinstance(value, str) and value:
        if not DECIMAL_TEXT.fullmatch(value):
            raise ValueError("is not a decimal number")
        to_scaled(value)  # at most 4 decimal places
    return value


def _iso_date(value: object) -> object:
    """Dates are YYYY-MM-DD (SPEC 3): pydantic alone would also take a Unix time or a midnight datetime."""
    value = _strip(value)
    if isinstance(value, str) and not re.match(DATE_TEXT, value):
        raise ValueError("must be a date YYYY-MM-DD")
    return value


Text = Annotated[str, BeforeValidator(_strip)]
def _required(value: object) -> object:
    value = _strip(value)
    return None if value == "" else value


Required = Annotated[str, BeforeValidator(_required)]
Amount = Annotated[Decimal, BeforeValidator(_exact)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class _Dated(_Row):
    start_date: IsoDate
    end_date: IsoDate

    @model_validator(mode="after")
    def _ordered(self):
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    def overlaps(self, other: _Dated) -> bool:
        return self.start_date <= other.end_date and other.start_date <= self.end_date


def _optional_date(value: object) -> object:
    value = _strip(value)
    return None if value == "" else _iso_date(value)


OptionalDate = Annotated[dt.date | None, BeforeValidator(_optional_date)]


class Provider(_Row):
    provider_id: Required
    name: Text = ""
    kind: Annotated[Literal["psw", "agency", "generic"], BeforeValidator(_strip)]
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
    status: Annotated[Literal["draft", "accepted", "closed", "void"], BeforeValidator(_strip)]
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
    unit_period: Annotated[Literal["month", "day", "total"], BeforeValidator(_strip)]
    rate: Amount
    status: Annotated[Literal["draft", "pending", "accepted", "closed", "void"], BeforeValidator(_strip)]


FILES: dict[str, type[_Row]] = {
    "providers.csv": Provider,
    "plans.csv": Plan,
    "enrollments.csv": Enrollment,
    "spas.csv": Spa,
}
# A non-negative amount: pydantic's Decimal accepts negatives, so these are checked by name.
NON_NEGATIVE = {"monthly_hours", "units", "rate"}
DATES = ("start_date", "end_date")
# The frame of one file's rows: the model's fields (dates as dates, everything else as the text
# pydantic's JSON dump gives, amounts exact) and `line`, the row's line in the file it was loaded
# from (null for rows already stored).
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    name: {f: pl.Date if f in DATES else pl.String for f in model.model_fields} | {"line": pl.Int64}
    for name, model in FILES.items()
}
ATTRS = {name: name.removesuffix(".csv") for name in FILES}  # a ReferenceSet's attribute for each file
KEYS = {"providers.csv": "provider_id", "plans.csv": "plan_id", "spas.csv": "spa_id"}


def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[name])


def rows_frame(name: str, rows: Iterable[dict], lines: Iterable[int | None] | None = None) -> pl.DataFrame:
    """A file's frame from rows as pydantic's JSON dump gives them (`lines`: null when omitted)."""
    schema = SCHEMAS[name]
    rows = list(rows)
    lines = list(lines) if lines is not None else [None] * len(rows)
    texts = {f: pl.String for f in schema if f != "line"} | {"line": pl.Int64}
    frame = pl.DataFrame([{**row, "line": line} for row, line in zip(rows, lines)], schema=texts, orient="row")
    return frame.with_columns(pl.col(f).str.to_date("%Y-%m-%d") for f in DATES)


@dataclass(frozen=True)
class ReferenceSet:
    """Reference rows, one frame per file (SCHEMAS), in the order a load meets them: stored rows
    first, a loaded row in the place of the stored one it replaces, new ones after."""
    providers: pl.DataFrame = field(default_factory=lambda: _empty("providers.csv"))
    plans: pl.DataFrame = field(default_factory=lambda: _empty("plans.csv"))
    enrollments: pl.DataFrame = field(default_factory=lambda: _empty("enrollments.csv"))
    spas: pl.DataFrame = field(default_factory=lambda: _empty("spas.csv"))

    @classmethod
    def from_rows(cls, providers: Iterable[Provider], plans: Iterable[Plan], enrollments: Iterable[Enrollment],
                  spas: Iterable[Spa]) -> ReferenceSet:
        return cls(*(rows_frame(name, (row.model_dump(mode="json") for row in rows))
                     for name, rows in zip(FILES, (providers, plans, enrollments, spas))))

    def of(self, name: str) -> pl.DataFrame:
        return getattr(self, ATTRS[name])

    def rows(self, name: str) -> list[_Row]:
        return [FILES[name].model_validate(row) for row in self.of(name).drop("line").iter_rows(named=True)]

    def frames(self) -> ReferenceFrames:
        plans = self.plans.with_columns(monthly_hours_s=scaled(self.plans.get_column("monthly_hours")))
        return ReferenceFrames(
            plans=plans.select("plan_id", "client_prime", "start_date", "end_date", "status", "monthly_hours_s"),
            enrollments=self.enrollments.select("client_prime", "start_date", "end_date"),
            providers=self.providers.select(*PROVIDER_SCHEMA).cast(PROVIDER_SCHEMA),
            spas=self.spas.with_columns(units_s=scaled(self.spas.get_column("units")),
                                        rate_s=scaled(self.spas.get_column("rate")))
            .join(self.plans.select("plan_id", "client_prime"), on="plan_id", how="left", maintain_order="left")
            .select("spa_id", "plan_id", "client_prime", "provider_id", "procedure_code", "modifier", "start_date",
                    "end_date", "units_s", "unit_period", "rate_s", "status"),
        )


def scaled(texts: pl.Series) -> pl.Series:
    """Exact decimal texts x10^4: vectorized for plain numbers, exact Decimal parsing for the rest."""
    fast = texts.to_frame("v").select(scaled_number("v")).to_series().alias(texts.name)
    odd = fast.is_null() & texts.is_not_null()
    if odd.any():
        fast = fast.scatter(odd.arg_true(), [to_scaled(v) for v in texts.filter(odd)])
    return fast


# --- reading a file ---------------------------------------------------------------------------

# The ASCII characters str.strip removes; a value with a non-ASCII character at either end is left
# to pydantic (Python and the Rust pydantic-core disagree on some Unicode spaces).
ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
NON_ASCII_END = r"^[^\x00-\x7f]|[^\x00-\x7f]$"
DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# An amount whose exact decimal text is itself (no sign, exponent or leading zero; at most 4 places;
# below decimals.LIMIT, so that a units x rate product fits in int64).
AMOUNT_TEXT = r"^(0|[1-9][0-9]{0,4})(\.[0-9]{1,4})?$"


def parse_file(name: str, text: str) -> pl.DataFrame:
    """Parse one reference CSV (header = line 1) into its frame; ReferenceLoadError on the first bad row.

    Columns are checked whole; a row they cannot vouch for (anything but the plain form of a value)
    is validated by its pydantic model, in line order, so the first problem and its message are the
    model's.
    """
    model = FILES[name]
    header, raw, broken = _raw(name, text)
    for column in (n for n, f in model.model_fields.items() if f.is_required()):
        if column not in header:
            raise ReferenceLoadError(name, 1, column, "column is missing from the header")
    values, plain = _plain_values(model, SCHEMAS[name], raw)
    doubtful = raw.filter(~plain)
    fixed = []
    for record in doubtful.iter_rows(named=True):
        line = record.pop("line")
        fixed.append((_validated(name, model, line, record), line))
    if broken is not None:
        raise broken
    rows = values.filter(plain).select(*SCHEMAS[name])
    if fixed:
        rows = pl.concat([rows, rows_frame(name, (row.model_dump(mode="json") for row, _ in fixed),
                                           (line for _, line in fixed))]).sort("line")
    return rows


def _validated(name: str, model: type[_Row], line: int, record: dict) -> _Row:
    try:
        row = model.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else _model_field(first["msg"], model)
        raise ReferenceLoadError(name, line, where, first["msg"].removeprefix("Value error, ")) from None
    for column in (c for c in model.model_fields if c in NON_NEGATIVE):
        if getattr(row, column) < 0:
            raise ReferenceLoadError(name, line, column, "must not be negative")
    return row


def _model_field(message: str, model: type[_Row]) -> str:
    return "end_date" if "end_date" in message else next(iter(model.model_fields))


def _raw(name: str, text: str) -> tuple[list[str], pl.DataFrame, ReferenceLoadError | None]:
    """The header, the records up to the first one that cannot be read (the model's fields present in
    the header as text, null where a short row has no field, and `line`), and the error that stopped
    the reading (raised once the rows before it are found good), as csv.DictReader reads the file.

    Reference files are small (the csv module reads 50,000 SPAs in about 0.3 s), so they are read
    by it only; the values are then checked column by column (_plain_values)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise ReferenceLoadError(name, 1, "(header)", f"not readable as CSV: {error}") from None
    reader.fieldnames = header
    fields = [f for f in FILES[name].model_fields if f in header]
    records, broken = [], None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            # line_num counts the lines read before the one that failed.
            broken = ReferenceLoadError(name, reader.line_num + 1, "(record)", f"not readable as CSV: {error}")
            break
        if None in record:
            broken = ReferenceLoadError(name, reader.line_num, header[-1] if header else "?",
                                        "row has more fields than the header")
            break
        records.append([record[f] for f in fields] + [reader.line_num])
    raw = pl.DataFrame(records, schema={f: pl.String for f in fields} | {"line": pl.Int64}, orient="row")
    return header, raw, broken


def _plain_values(model: type[_Row], schema: dict, raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """The rows' values where the columns can tell them (as the model would), and which rows those are."""
    values, oks = [], []
    for name, info in model.model_fields.items():
        if name not in raw.columns:
            values.append(pl.lit(info.default, dtype=schema[name]).alias(name))
            continue
        text = pl.col(name)
        stripped = text.str.strip_chars(ASCII_SPACE)
        strips = ~stripped.str.contains(NON_ASCII_END)
        kind = _kind(name, info)
        if kind == "literal":
            value, ok = text, text.is_in(list(get_args(info.annotation)))
        elif kind == "date":
            value = text.str.to_date("%Y-%m-%d", strict=False)
            ok = text.str.contains(DATE_TEXT) & ~text.str.starts_with("0000") & value.is_not_null()
        elif kind == "optional date":
            value = pl.when(stripped != "").then(stripped.str.to_date("%Y-%m-%d", strict=False))
            ok = strips & ((stripped == "") | (stripped.str.contains(DATE_TEXT) & ~stripped.str.starts_with("0000")
                                                & value.is_not_null()))
        elif kind == "amount":
            value, ok = stripped, stripped.str.contains(AMOUNT_TEXT)
        elif kind == "required":
            value, ok = stripped, strips & (stripped != "")
        else:
            value, ok = stripped, strips
        values.append(value.alias(name))
        oks.append((text.is_not_null() & ok).alias(name))
    frame = raw.select(*values, "line")
    plain = raw.select(pl.all_horizontal(oks) if oks else pl.lit(True)).to_series()
    # The models' own check: an end before its start.
    start, end = pl.col("start_date"), pl.col("end_date")
    plain = plain & frame.select(~(end < start).fill_null(False)).to_series()
    return frame, plain


def _kind(name: str, info) -> str:
    if get_origin(info.annotation) is Literal:
        return "literal"
    if name in NON_NEGATIVE:
        return "amount"
    if name in DATES:
        return "date" if info.is_required() else "optional date"
    return "required" if info.is_required() else "text"


def parse_content(name: str, data: bytes) -> pl.DataFrame:
    """One reference file's bytes (UTF-8, a byte-order mark allowed), parsed."""
    body = data.removeprefix(UTF8_BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = line_and_column(body, error.start)
        raise ReferenceLoadError(name, line, "-", f"not UTF-8: byte 0x{body[error.start]:02X} at column {column}; "
                                 "save the file as UTF-8") from None
    return parse_file(name, text)


def ignored_columns(name: str, data: bytes) -> str:
    """The header's names that are none of the file's columns (SPEC 2), for a one-line warning ("" if
    none): a load ignores them, and says so (a misspelt optional column, `start_dat` for
    `start_date`, would otherwise leave enrollment open without a word). A name that may be a value
    is given by its position, as in claim files. Reads the first line only, and never raises."""
    first = data.removeprefix(UTF8_BOM).split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    try:
        header = [h.strip() for h in next(csv.reader([first]), [])]
    except csv.Error:
        return ""  # a header the load refuses, saying why
    ignored = [(position, h) for position, h in enumerate(header, start=1) if h not in FILES[name].model_fields]
    return column_labels([h for _, h in ignored], [p for p, _ in ignored]) if ignored else ""


# --- a load merged into what is stored, and its rules -----------------------------------------

def merge(current: ReferenceSet, loaded: dict[str, pl.DataFrame], rules: Rules | None = None) -> ReferenceSet:
    """Upsert providers, plans and SPAs by id; replace the enrollments of every client in the new file.

    Checks the merged whole and raises ReferenceLoadError naming the new row that breaks a rule
    (`rules`: the in-home and residential service elements; the default rules when None).
    """
    updates = {}
    for name, key in KEYS.items():
        if name not in loaded:
            continue
        new = loaded[name]
        twice = new.filter(~pl.col(key).is_first_distinct())
        if twice.height:
            raise ReferenceLoadError(name, twice["line"][0], key, f"{twice[key][0]} appears twice in the file")
        old = current.of(name).with_row_index("pos")
        # A replaced row keeps its place; new ones follow in the file's order.
        new = (new.with_row_index("pos", offset=old.height).join(old.select(key, stored="pos"), on=key, how="left",
                                                                 maintain_order="left")
               .with_columns(pl.coalesce("stored", "pos").alias("pos")).drop("stored"))
        updates[ATTRS[name]] = (pl.concat([old.filter(~pl.col(key).is_in(new.get_column(key).implode())), new])
                                .sort("pos").drop("pos"))
    if "enrollments.csv" in loaded:
        new = loaded["enrollments.csv"]
        kept = current.enrollments.filter(~pl.col("client_prime").is_in(new.get_column("client_prime").implode()))
        updates["enrollments"] = pl.concat([kept, new])
    result = replace(current, **updates)
    _check(result, rules or default_rules(), _put_in_force(current, loaded.get("plans.csv")))
    return result


def _put_in_force(current: ReferenceSet, plans: pl.DataFrame | None) -> pl.DataFrame:
    """plan_id, field: the loaded plans that put their SPAs in force for a client they were not in
    force for: accepted now and stored as not accepted (`status`) or under another client
    (`client_prime`). A plan reloaded as it was puts nothing new in force."""
    schema = {"plan_id": pl.String, "field": pl.String}
    if plans is None:
        return pl.DataFrame(schema=schema)
    stored = current.plans.select("plan_id", was_status="status", was_client="client_prime")
    return (plans.filter(pl.col("status") == "accepted").join(stored, on="plan_id", how="left")
            .select("plan_id", field=pl.when(pl.col("was_status") != "accepted").then(pl.lit("status"))
                    .when(pl.col("was_client") != pl.col("client_prime")).then(pl.lit("client_prime")))
            .filter(pl.col("field").is_not_null()))


def _check(reference: ReferenceSet, rules: Rules, in_force: pl.DataFrame) -> None:
    """The first broken rule, in the order of the rules below and, within one, in the order the
    rows were met (ReferenceSet); the row blamed is the loaded one, the later line when both are."""
    plans = reference.plans.with_row_index("pos")
    spas = reference.spas.with_row_index("pos")
    new = spas.filter(pl.col("line").is_not_null())
    unknown = new.with_columns(
        no_plan=~pl.col("plan_id").is_in(plans.get_column("plan_id").implode()),
        no_provider=~pl.col("provider_id").is_in(reference.providers.get_column("provider_id").implode()),
    ).filter(pl.col("no_plan") | pl.col("no_provider"))
    if unknown.height:
        first = unknown.row(0, named=True)
        column = "plan_id" if first["no_plan"] else "provider_id"
        raise ReferenceLoadError("spas.csv", first["line"], column, f"unknown {column} {first[column]}")

    outside = (spas.join(plans.select("plan_id", plan_start="start_date", plan_end="end_date", plan_line="line"),
                         on="plan_id")
               .filter(pl.col("line").is_not_null() | pl.col("plan_line").is_not_null())
               .with_columns(**{side: ~pl.col(side).is_between("plan_start", "plan_end") for side in DATES})
               .filter(pl.col("start_date") | pl.col("end_date")).sort("pos"))
    if outside.height:
        first = outside.row(0, named=True)
        side = "start_date" if first["start_date"] else "end_date"
        file, line = ("spas.csv", first["line"]) if first["line"] is not None else ("plans.csv", first["plan_line"])
        raise ReferenceLoadError(file, line, side,
                                 f"SPA {first['spa_id']} is not inside the dates of its plan {first['plan_id']}")
    _no_in_home_and_residential_overlap(plans, spas, rules, in_force)

    accepted = pl.col("status") == "accepted"
    _no_overlap(plans.filter(accepted), ["client_prime"], "plans.csv", "plan_id",
                "accepted plan {other} of the same client covers overlapping dates")
    _no_overlap(spas.filter(accepted), ["plan_id", "provider_id", "procedure_code", "modifier"], "spas.csv", "spa_id",
                "accepted SPA {other} of the same plan, provider, procedure and modifier overlaps")


def _blamed(first: str, second: str) -> pl.Expr:
    """True where the row to name for a conflict is `first` (prefix of its columns), not `second`:
    the newly loaded one; when both are, the later line (`first` on the same line)."""
    a, b = pl.col(f"{first}line"), pl.col(f"{second}line")
    return b.is_null() | (a.is_not_null() & (a >= b))


def _raise_pair(pairs: pl.DataFrame, file: str, ident: str, message: str) -> None:
    """Raise for the first of `pairs` (columns of both rows: unprefixed and `o_`), if any."""
    if not pairs.height:
        return
    first = pairs.row(0, named=True)
    me, other = ("", "o_") if first["blame_first"] else ("o_", "")
    raise ReferenceLoadError(file, first[f"{me}line"], "start_date", message.format(other=first[f"{other}{ident}"]))


def _no_overlap(items: pl.DataFrame, group: list[str], file: str, ident: str, message: str) -> None:
    """No two rows of one group overlap, unless both were stored. Groups are taken in the order their
    first row was met, and a group's rows by start date (then as met)."""
    items = items.sort("start_date", "pos").with_columns(rank=pl.int_range(pl.len()),
                                                         group_pos=pl.col("pos").min().over(group))
    others = items.select(*group, *(pl.col(c).alias(f"o_{c}") for c in ("rank", "start_date", "line", ident)))
    pairs = (items.join(others, on=group)
             .filter((pl.col("rank") < pl.col("o_rank")) & (pl.col("o_start_date") <= pl.col("end_date"))
                     & (pl.col("line").is_not_null() | pl.col("o_line").is_not_null()))
             .sort("group_pos", "rank", "o_rank")
             .with_columns(blame_first=_blamed("", "o_")))
    _raise_pair(pairs, file, ident, message)


def _no_in_home_and_residential_overlap(plans: pl.DataFrame, spas: pl.DataFrame, rules: Rules,
                                        in_force: pl.DataFrame) -> None:
    """One client's accepted SPAs under accepted plans may not be in-home and residential on one
    day, except an in-home SPA ending on the day a residential one starts (moving day, seed 000:
    in-home services earlier that day can still be billed). Checked for the SPAs a load brings and
    those a loaded plan puts in force (`in_force`: _put_in_force)."""
    in_home = pl.col("service_element").is_in(sorted(rules.in_home_service_elements))
    residential = pl.col("service_element").is_in(sorted(rules.residential_service_elements)) & ~in_home
    accepted = (spas.filter(pl.col("status") == "accepted")
                .join(plans.filter(pl.col("status") == "accepted").select("plan_id", "client_prime", plan_line="line"),
                      on="plan_id")
                .join(in_force.select("plan_id", plan_field="field"), on="plan_id", how="left", maintain_order="left")
                .sort("pos"))
    clients = accepted.select("client_prime").unique(maintain_order=True).with_row_index("client_rank")
    homes = accepted.filter(in_home).join(clients, on="client_prime")
    stays = accepted.filter(residential).select("client_prime", *(pl.col(c).alias(f"o_{c}") for c in (
        "pos", "line", "plan_line", "plan_field", "plan_id", "spa_id", "start_date", "end_date")))
    # A pair this load touches: either SPA, or a plan that puts either in force.
    touched = [pl.col(c).is_not_null() for c in ("line", "o_line", "plan_field", "o_plan_field")]
    pairs = (homes.join(stays, on="client_prime")
             .filter((pl.col("start_date") <= pl.col("o_end_date")) & (pl.col("o_start_date") <= pl.col("end_date"))
                     & (pl.col("end_date") != pl.col("o_start_date")) & pl.any_horizontal(touched))
             .sort("client_rank", "pos", "o_pos")
             .with_columns(blame_first=_blamed("", "o_")))
    message = ("accepted in-home and residential SPAs of one client overlap ({other}); only an in-home SPA ending "
               "on the day the residential one starts may")
    if pairs.height and pairs.item(0, "line") is None and pairs.item(0, "o_line") is None:
        # Both SPAs were stored: the plan this load accepted (or moved to the client) is named.
        first = pairs.row(0, named=True)
        me = "" if _later(*[first[f"{p}plan_line"] if first[f"{p}plan_field"] else None for p in ("", "o_")]) else "o_"
        raise ReferenceLoadError("plans.csv", first[f"{me}plan_line"], first[f"{me}plan_field"],
                                 f"plan {first[f'{me}plan_id']} would put in force in-home and residential SPAs of "
                                 f"one client that overlap ({first['spa_id']}, {first['o_spa_id']})")
    _raise_pair(pairs, "spas.csv", "spa_id", message)


def _later(a: int | None, b: int | None) -> bool:
    """Whether line `a` is the one to name: given, and `b` not or not after it."""
    return a is not None and (b is None or a >= b)
