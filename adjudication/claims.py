"""Claim record checks, vectorized: raw text columns -> typed columns plus the invalid fields.

A claim is kept as posted (every column text); this turns those texts into the values the edits
need and lists, per row, every field that fails (`INVALID_RECORD:<field>`, in column order). Two
steps: `parse_fields`, the text work, which needs no rules (submit does it once and stores the
result with the batch), and `check_fields`, which applies the rules (each run, on stored fields).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from adjudication.decimals import CLAIM_NUMBER_PATTERN, SCALE
from adjudication.reasons import INVALID_RECORD
from adjudication.rules import Rules

CLAIM_COLUMNS = (
    "claim_id",
    "client_prime",
    "provider_id",
    "staff_id",
    "procedure_code",
    "modifier",
    "service_date",
    "start_time",
    "end_time",
    "units",
    "billed_rate",
    "frequency",
    "original_claim_id",
)
# Columns a claim file may leave out (read as empty): the X12 claim frequency code and the claim a
# replacement (7) or void (8) adjusts.
OPTIONAL_COLUMNS = ("frequency", "original_claim_id")
ORIGINAL, REPLACEMENT, VOID = "1", "7", "8"

# ASCII digits only: polars' \d also matches other scripts' digits, which no exporter sends.
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Service dates a run can compute with (months, periods, days before the received date): anything
# outside is a typing error (`0000-03-09`, `9999-12-31`), rejected at submit, never read by a run.
FIRST_SERVICE_DAY = dt.date(1900, 1, 1)
LAST_SERVICE_DAY = dt.date(2099, 12, 31)
# Ids (claim, client, provider, staff, procedure, modifier): 1 to 64 printable ASCII characters,
# spaces inside allowed (trimmed at the ends): no control characters, no look-alike letters, no
# megabyte ids. A row breaking this is rejected (INVALID_RECORD:<field>).
ID_FIELDS = ("claim_id", "client_prime", "provider_id", "procedure_code", "modifier")  # and staff_id: length only
MAX_ID_CHARS = 64
ID_PATTERN = rf"^[\x20-\x7E]{{1,{MAX_ID_CHARS}}}$"
TIME_PATTERN = r"^[0-9]{2}:[0-9]{2}$"
# Hourly units may differ from the billed span by 0.01 h: |units*60 - minutes| <= 0.6 min, scaled.
HOURLY_TOLERANCE = 60 * SCALE // 100
CHECKED_FIELDS = ("claim_id", "client_prime", "provider_id", "staff_id", "procedure_code", "modifier", "service_date",
                  "start_time", "end_time", "units", "billed_rate", "frequency", "original_claim_id")
# The only fields a void is checked on (SPEC 3: a void needs no other field).
VOID_FIELDS = ("claim_id", "client_prime", "provider_id", "frequency", "original_claim_id")
VOID_FIELDS_MASK = sum(1 << CHECKED_FIELDS.index(name) for name in VOID_FIELDS)
# The reason of each failing field, in column order (bit i of a row's invalid_mask: the i-th).
INVALID_REASONS = tuple(f"{INVALID_RECORD}:{field}" for field in CHECKED_FIELDS)


def reasons_by_mask(codes: tuple[str, ...]) -> pl.Series:
    """Every combination of `codes` (bit i: codes[i]; codes hold no space) -> its codes in order:
    the series' item i is the list of mask i. Built by polars from joined texts: built from 2^13
    Python lists, it took 0.2 s and some 50 MB, each time."""
    joined = [" ".join(code for bit, code in enumerate(codes) if mask >> bit & 1) for mask in range(1 << len(codes))]
    return pl.Series(joined).str.split(" ").list.filter(pl.element() != "")


REASONS_BY_MASK = reasons_by_mask(INVALID_REASONS)


def scaled_number(column: str) -> pl.Expr:
    """Text '12.5' -> 125000 (x10^4); null when it is not a plain non-negative decimal.

    Whole part and places are parsed as integers: exact, with no float in between.
    """
    text = pl.col(column)
    parts = text.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    fraction = parts.struct.field("field_1").fill_null("").str.slice(0, 4).str.pad_end(4, "0").cast(pl.Int64,
                                                                                                 strict=False)
    return pl.when(text.str.contains(CLAIM_NUMBER_PATTERN)).then(whole * SCALE + fraction)


def minutes(column: str, allow_24: bool) -> pl.Expr:
    """'HH:MM' -> minutes after midnight; null when malformed ('24:00' only as an end)."""
    text = pl.col(column)
    hour = text.str.slice(0, 2).cast(pl.Int64, strict=False)
    minute = text.str.slice(3, 2).cast(pl.Int64, strict=False)
    ok = text.str.contains(TIME_PATTERN) & (minute < 60) & (hour < 24)
    if allow_24:
        ok = ok | (text == "24:00")
    return pl.when(ok).then(hour * 60 + minute)


# What `parse_fields` gives: the texts trimmed (empty -> missing; modifier '' when none) and the
# values the edits compare. None of it depends on the rules, so it is computed once, at submit, and
# stored with the batch; a run reads it back instead of parsing the texts again.
TYPED_FIELDS = {
    "service_day": pl.Date,
    "start_min": pl.Int64,
    "end_min": pl.Int64,
    "units_s": pl.Int64,
    "rate_s": pl.Int64,
}
FIELDS_SCHEMA = {**{c: pl.String for c in CLAIM_COLUMNS}, **TYPED_FIELDS}
# Raise when parse_fields comes to read some text differently: fields stored by another version
# are then parsed again from the posted texts instead of being trusted.
PARSE_VERSION = 2  # 2: service dates outside FIRST_SERVICE_DAY..LAST_SERVICE_DAY are not dates
POSTED = "posted."


def as_read(column: str, text: pl.Expr) -> pl.Expr:
    """A claim text as the checks read it: empty is missing, except a modifier, which is '' when none."""
    present = text.str.len_bytes() > 0
    if column == "modifier":
        return pl.when(present).then(text).otherwise(pl.lit("")).alias(column)
    return pl.when(present).then(text).alias(column)


def parse_fields(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Raw text columns -> FIELDS_SCHEMA (other columns kept): the text work of the record checks.

    Typed values are null where the text is not a well-formed date, time or decimal.
    """
    stripped = raw.with_columns([as_read(c, pl.col(c).cast(pl.String).str.strip_chars()) for c in CLAIM_COLUMNS])
    day = pl.when(pl.col("service_date").str.contains(DATE_PATTERN)).then(
        pl.col("service_date").str.to_date("%Y-%m-%d", strict=False))
    return stripped.with_columns(
        service_day=pl.when(day.is_between(FIRST_SERVICE_DAY, LAST_SERVICE_DAY)).then(day),
        start_min=minutes("start_time", allow_24=False),
        end_min=minutes("end_time", allow_24=True),
        units_s=scaled_number("units"),
        rate_s=scaled_number("billed_rate"),
    )


def fields_to_keep(raw: pl.DataFrame, rules: Rules) -> tuple[pl.DataFrame, int]:
    """What a batch keeps of its parsing, and how many of its rows fail the record checks.

    Kept: the typed values, and the trimmed texts of the columns where a posted text had space
    around it. Every other text is its posted one read with `as_read`, so a clean file's texts are
    not stored twice (nor built twice here: at 5M claims that doubled the cost of `submit`).
    """
    posted = raw.lazy().with_columns([pl.col(c).cast(pl.String).alias(POSTED + c) for c in CLAIM_COLUMNS])
    padded = pl.sum_horizontal([
        pl.when(pl.col(c).ne_missing(as_read(c, pl.col(POSTED + c)))).then(1 << bit).otherwise(0)
        for bit, c in enumerate(CLAIM_COLUMNS)
    ])
    parsed = check_fields(parse_fields(posted), rules).select(
        *TYPED_FIELDS, invalid=pl.col("invalid_mask") != 0, padded=padded).collect()
    bits = int(parsed.get_column("padded").bitwise_or() or 0)
    trimmed = [c for bit, c in enumerate(CLAIM_COLUMNS) if bits >> bit & 1]
    texts = parse_fields(raw.lazy().select(CLAIM_COLUMNS)).select(trimmed).collect() if trimmed else None
    kept = parsed.select(*TYPED_FIELDS)
    return (kept.hstack(texts) if texts is not None else kept), int(parsed.get_column("invalid").sum())


def parse_claims(raw: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """`check_fields(parse_fields(raw))`: raw texts -> typed columns and the failing fields."""
    return check_fields(parse_fields(raw), rules)


def check_fields(fields: pl.LazyFrame, rules: Rules) -> pl.LazyFrame:
    """Add to parsed fields (FIELDS_SCHEMA) what depends on the rules, and the record checks:
    hourly, timed, group (overlap group), span, invalid_mask (a bit per failing field of
    CHECKED_FIELDS) and invalid (its INVALID_RECORD reasons, empty when valid).
    """
    group_of = {proc: index for index, group in enumerate(rules.overlap_groups) for proc in group}
    typed = fields.with_columns(
        hourly=pl.col("procedure_code").is_in(sorted(rules.hourly_procedures)).fill_null(False),
        group=pl.col("procedure_code").replace_strict(group_of, default=None, return_dtype=pl.Int32),
        span=pl.col("end_min") - pl.col("start_min"),
    )
    frequency = pl.col("frequency").fill_null(ORIGINAL)
    known = frequency.is_in([ORIGINAL, REPLACEMENT, VOID])
    has_start = pl.col("start_time").is_not_null()
    has_end = pl.col("end_time").is_not_null()
    needs_times = pl.col("group").is_not_null()
    span = pl.col("span")
    timed_ok = pl.col("start_min").is_not_null() & pl.col("end_min").is_not_null() & (span > 0)
    def bad_id(column: str) -> pl.Expr:
        return ~pl.col(column).str.contains(ID_PATTERN)

    checks = {
        "claim_id": pl.col("claim_id").is_null() | bad_id("claim_id"),
        "client_prime": pl.col("client_prime").is_null() | bad_id("client_prime"),
        "provider_id": pl.col("provider_id").is_null() | bad_id("provider_id"),
        # Read by no edit, kept as posted (a name may be there, line breaks and all): only bounded.
        "staff_id": pl.col("staff_id").is_not_null() & (pl.col("staff_id").str.len_chars() > MAX_ID_CHARS),
        "procedure_code": pl.col("procedure_code").is_null() | bad_id("procedure_code"),
        "modifier": (pl.col("modifier") != "") & bad_id("modifier"),
        "service_date": pl.col("service_day").is_null(),
        "start_time": (has_start & pl.col("start_min").is_null())
        | (~has_start & (has_end | needs_times)),
        "end_time": (has_end & pl.col("end_min").is_null())
        | (~has_end & (has_start | needs_times))
        | (span <= 0).fill_null(False),
        "units": pl.col("units_s").is_null()
        | (pl.col("units_s") <= 0)
        | (
            pl.col("hourly")
            & timed_ok
            & ((pl.col("units_s") * 60 - span * SCALE).abs() > HOURLY_TOLERANCE)
        ),
        "billed_rate": pl.col("billed_rate").is_not_null() & pl.col("rate_s").is_null(),
        "frequency": ~known,
        # Required on a replacement or void, empty on an original (not checked when the frequency is unknown).
        "original_claim_id": known & (pl.col("original_claim_id").is_null() == (frequency != ORIGINAL)),
    }
    assert tuple(checks) == CHECKED_FIELDS
    mask = pl.sum_horizontal(
        [pl.when(failed.fill_null(True)).then(1 << bit).otherwise(0) for bit, failed in enumerate(checks.values())]
    ).cast(pl.Int32)
    mask = pl.when(frequency == VOID).then(mask & VOID_FIELDS_MASK).otherwise(mask)
    return typed.with_columns(
        invalid_mask=mask,
        timed=timed_ok.fill_null(False),
        adjustment=known & (frequency != ORIGINAL),
        void=frequency == VOID,
    ).with_columns(
        invalid=pl.lit(REASONS_BY_MASK).gather("invalid_mask")
    )
