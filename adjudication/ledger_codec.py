"""The paid ledger packed as one text per client and month, the unit of state a run reads.

A nightly run pays about a million claims; storing them as a million indexed rows costs more than
the rest of the run (BENCHMARKS.md). Later runs only ever need the paid claims of the clients and
months they touch, so the store keeps one row per (client, month, run) whose text holds those
claims, in the order they were paid.

The text is most of what a run writes, so it is kept short (format 2, texts starting "v2|"): rows
are separated by ';' and fields by ',' in PACKED_FIELDS order, and within one text
- a field left empty holds what the row before holds (the first row spells every field out);
- '%' is a missing value, '%_' the empty text;
- texts are written with '%', ',' and ';' escaped as %25, %2C and %3B, so no value breaks the packing;
- claim_pk is the difference from the row before, the service day its day of the text's month.
Format 1 (every text base64, every field spelled out, a missing value '-': 2.3 times longer) was
written until 2026-12-01; stored texts of it are still read.
"""

from __future__ import annotations

import polars as pl

from adjudication.engine import LEDGER_SCHEMA

ROW_SEPARATOR = ";"
FIELD_SEPARATOR = ","
VERSION_2 = "v2|"
MISSING = "%"
EMPTY_TEXT = "%_"
ESCAPES = (("%", "%25"), (",", "%2C"), (";", "%3B"))  # '%' first when escaping, last when unescaping
PACKED_FIELDS = tuple(name for name in LEDGER_SCHEMA if name != "client_prime")
PACKED_SCHEMA = {"client_prime": pl.String, "month": pl.Date, "claims": pl.String}
TEXT_FIELDS = tuple(name for name in PACKED_FIELDS if LEDGER_SCHEMA[name] == pl.String)
KEY = ("client_prime", "month")
FIRST = "first"  # in pack: whether a row is the first of its client and month (rows sorted by KEY)


def _spelled(name: str, special: bool) -> pl.Expr:
    """A field of format 2 spelled out (before the row-to-row shortening). special: the text column
    holds a character to escape or an empty text (most do not: they skip those passes)."""
    dtype, column = LEDGER_SCHEMA[name], pl.col(name)
    if name == "claim_pk":
        text = pl.when(pl.col(FIRST)).then(column).otherwise(column - column.shift(1)).cast(pl.String)
    elif name == "service_day":
        text = column.dt.day().cast(pl.String)
    elif dtype == pl.String:
        text = column
        if special:
            for plain, escaped in ESCAPES:
                text = text.str.replace_all(plain, escaped, literal=True)
            text = pl.when(text == "").then(pl.lit(EMPTY_TEXT)).otherwise(text)
    else:
        text = column.cast(pl.String)
    return text.fill_null(MISSING)


def _shortened(name: str, special: bool) -> pl.Expr:
    """Empty where the row before (of the same client and month) holds the same; claim_pk never."""
    text = _spelled(name, special)
    if name == "claim_pk":
        return text
    same = ~pl.col(FIRST) & pl.col(name).eq_missing(pl.col(name).shift(1))
    return pl.when(same).then(pl.lit("")).otherwise(text)


def pack(paid: pl.DataFrame) -> pl.DataFrame:
    """LEDGER_SCHEMA rows -> one row per (client_prime, month) with the claims packed in `claims`
    (format 2), in the order they come (the order they were paid)."""
    if paid.get_column("claim_pk").null_count():
        raise ValueError("a paid claim without claim_pk cannot be packed")
    first = (pl.int_range(pl.len()) == 0) | pl.any_horizontal(pl.col(k).ne_missing(pl.col(k).shift(1)) for k in KEY)
    ordered = paid.with_columns(month=pl.col("service_day").dt.month_start())
    starts, keys = ordered.select(first.sum().alias("starts"), pl.struct(*KEY).n_unique().alias("keys")).row(0)
    if starts != keys:  # each client and month together, in paid order (a file sorted by client already is)
        ordered = ordered.sort(*KEY, maintain_order=True)
    ordered = ordered.with_columns(first.alias(FIRST))
    special = ordered.select((pl.col(name).str.contains("[%,;]") | (pl.col(name) == "")).any()
                             for name in TEXT_FIELDS).row(0)
    escape = dict(zip(TEXT_FIELDS, special))
    return (
        ordered.lazy()
        .select(*KEY, row=pl.concat_str([_shortened(name, escape.get(name, False)) for name in PACKED_FIELDS],
                                        separator=FIELD_SEPARATOR))
        .group_by(*KEY, maintain_order=True)
        .agg(claims=pl.lit(VERSION_2) + pl.col("row").str.join(ROW_SEPARATOR))
        .sort(*KEY)
        .collect()
    )


def unpack(packed: pl.DataFrame) -> pl.DataFrame:
    """The inverse of `pack`, for texts of either format: PACKED_SCHEMA rows -> LEDGER_SCHEMA rows,
    text by text in the order given, each text's rows in the order they were packed."""
    packed = packed.with_row_index("text")
    is_v2 = pl.col("claims").str.starts_with(VERSION_2)
    v2 = packed.filter(is_v2)
    v1 = packed.filter(~is_v2)
    if v1.height == 0:
        return _unpack_v2(v2).drop("text")
    if v2.height == 0:
        return _unpack_v1(v1).drop("text")
    return pl.concat([_unpack_v1(v1), _unpack_v2(v2)]).sort("text", maintain_order=True).drop("text")


def _rows(packed: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """One row per packed claim: text, client_prime, month and each field's text."""
    return (
        packed.lazy()
        .select("text", *KEY, row=pl.col("claims").str.strip_prefix(prefix).str.split(ROW_SEPARATOR))
        .explode("row")
        .select("text", *KEY, pl.col("row").str.split_exact(FIELD_SEPARATOR, len(PACKED_FIELDS) - 1)
                .struct.rename_fields(list(PACKED_FIELDS)))
        .unnest("row")
        .collect()
    )


def _read_v2(name: str, special: bool) -> pl.Expr:
    """special: the field's texts hold a '%' (a missing value, an empty or an escaped text)."""
    if name == "claim_pk":  # each text's first row holds its claim_pk, the others a difference
        total = pl.col(name).cast(pl.Int64).cum_sum()
        before = pl.when(pl.col("text").ne_missing(pl.col("text").shift(1))).then(total - pl.col(name).cast(pl.Int64))
        return (total - before.forward_fill()).alias(name)
    # A text's first row spells every field out, so filling forward never reaches into another text.
    value = pl.when(pl.col(name) != "").then(pl.col(name)).forward_fill()
    if special:
        value = pl.when(value != MISSING).then(value)
    dtype = LEDGER_SCHEMA[name]
    if name == "service_day":
        return (pl.col("month").cast(pl.Int32) + value.cast(pl.Int32) - 1).cast(pl.Date).alias(name)
    if dtype == pl.String:
        if special:
            value = pl.when(value == EMPTY_TEXT).then(pl.lit("")).otherwise(value)
            for plain, escaped in reversed(ESCAPES):
                value = value.str.replace_all(escaped, plain, literal=True)
        return value.alias(name)
    return value.cast(dtype).alias(name)


def _unpack_v2(packed: pl.DataFrame) -> pl.DataFrame:
    rows = _rows(packed, VERSION_2)
    special = rows.select(pl.col(name).str.contains(MISSING, literal=True).any() for name in PACKED_FIELDS).row(0)
    return rows.select("text", "client_prime", *[_read_v2(name, flag) for name, flag in zip(PACKED_FIELDS, special)]
                       ).select("text", *LEDGER_SCHEMA.keys())


# --- format 1 (read only) ---------------------------------------------------------------------------

V1_MISSING = "-"  # base64 never produces it


def _read_v1(name: str) -> pl.Expr:
    dtype = LEDGER_SCHEMA[name]
    field = pl.when(pl.col(name) != V1_MISSING).then(pl.col(name))
    if dtype == pl.String:
        return field.str.decode("base64").cast(pl.String).alias(name)
    if dtype == pl.Date:
        return field.cast(pl.Int32).cast(pl.Date).alias(name)
    return field.cast(dtype).alias(name)


def _unpack_v1(packed: pl.DataFrame) -> pl.DataFrame:
    return _rows(packed, "").select("text", "client_prime", *[_read_v1(name) for name in PACKED_FIELDS]).select(
        "text", *LEDGER_SCHEMA.keys())
