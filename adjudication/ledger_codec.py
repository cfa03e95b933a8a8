"""The paid ledger packed as one text per client and month, the unit of state a run reads.

A nightly run pays about a million claims; storing them as a million indexed rows costs more than
the rest of the run (BENCHMARKS.md). Later runs only ever need the paid claims of the clients and
months they touch, so the store keeps one row per (client, month, run) whose text holds those
claims. Texts are base64-encoded so that no claim value can contain a separator; a missing value
is '-', which base64 never produces.
"""

from __future__ import annotations

import polars as pl

from adjudication.engine import LEDGER_SCHEMA

ROW_SEPARATOR = ";"
FIELD_SEPARATOR = ","
MISSING = "-"
PACKED_FIELDS = tuple(name for name in LEDGER_SCHEMA if name != "client_prime")
PACKED_SCHEMA = {"client_prime": pl.String, "month": pl.Date, "claims": pl.String}


def _encoded(name: str) -> pl.Expr:
    dtype = LEDGER_SCHEMA[name]
    column = pl.col(name)
    if dtype == pl.String:
        text = column.str.encode("base64")
    elif dtype == pl.Date:
        text = column.cast(pl.Int32).cast(pl.String)
    else:
        text = column.cast(pl.String)
    return text.fill_null(MISSING)


def _decoded(name: str) -> pl.Expr:
    dtype = LEDGER_SCHEMA[name]
    field = pl.when(pl.col(name) != MISSING).then(pl.col(name))
    if dtype == pl.String:
        return field.str.decode("base64").cast(pl.String).alias(name)
    if dtype == pl.Date:
        return field.cast(pl.Int32).cast(pl.Date).alias(name)
    return field.cast(dtype).alias(name)


def pack(paid: pl.DataFrame) -> pl.DataFrame:
    """LEDGER_SCHEMA rows -> one row per (client_prime, month) with the claims packed in `claims`,
    in the order they come (the order they were paid)."""
    return (
        paid.lazy()
        .select(
            "client_prime",
            month=pl.col("service_day").dt.month_start(),
            row=pl.concat_str([_encoded(name) for name in PACKED_FIELDS], separator=FIELD_SEPARATOR),
        )
        .group_by("client_prime", "month")
        .agg("row")
        .select("client_prime", "month", claims=pl.col("row").list.join(ROW_SEPARATOR))
        .sort("client_prime", "month")
        .collect()
    )


def unpack(packed: pl.DataFrame) -> pl.DataFrame:
    """The inverse of `pack`: rows (client_prime, claims) -> LEDGER_SCHEMA rows."""
    return (
        packed.lazy()
        .select("client_prime", row=pl.col("claims").str.split(ROW_SEPARATOR))
        .explode("row")
        .select(
            "client_prime",
            pl.col("row").str.split_exact(FIELD_SEPARATOR, len(PACKED_FIELDS) - 1).struct.rename_fields(
                list(PACKED_FIELDS)),
        )
        .unnest("row")
        .select([pl.col("client_prime")] + [_decoded(name) for name in PACKED_FIELDS])
        .select(LEDGER_SCHEMA.keys())
        .collect()
    )
