"""What every text export shares (outcomes, acknowledgements and remittances, from the command line
and over HTTP): cells a spreadsheet would run as formulas are defused in CSV; outcomes in JSON carry
lists as arrays and amounts as numbers, the same from both."""

from __future__ import annotations

import polars as pl


def safe_for_spreadsheets(frame: pl.DataFrame) -> pl.DataFrame:
    """Cells a spreadsheet would run as a formula get a leading apostrophe."""
    pattern = r"^[=+\-@\t\r]"
    return frame.with_columns(
        [pl.when(pl.col(c).str.contains(pattern)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
         for c, dtype in frame.schema.items() if dtype == pl.String]
    )


# The outcome columns that are `;`-separated lists in CSV (arrays in JSON), and the numbers.
LIST_COLUMNS = ("reasons", "conflicts_with", "carc")
NUMBER_COLUMNS = ("paid_units", "paid_amount")


def outcomes_for_json(frame: pl.DataFrame) -> pl.DataFrame:
    """Outcome rows (export texts) as JSON and JSON Lines carry them: lists as arrays (empty for
    none), units and amounts as numbers."""
    return frame.with_columns(
        *[pl.when(pl.col(c) == "").then(pl.lit([], pl.List(pl.String))).otherwise(pl.col(c).str.split(";"))
          .alias(c) for c in LIST_COLUMNS],
        *[pl.col(c).cast(pl.Float64) for c in NUMBER_COLUMNS])
