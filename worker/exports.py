"""What every text export shares (outcomes, acknowledgements and remittances as CSV, from the
command line and over HTTP): cells a spreadsheet would run as formulas are defused."""

from __future__ import annotations

import polars as pl


def safe_for_spreadsheets(frame: pl.DataFrame) -> pl.DataFrame:
    """Cells a spreadsheet would run as a formula get a leading apostrophe."""
    pattern = r"^[=+\-@\t\r]"
    return frame.with_columns(
        [pl.when(pl.col(c).str.contains(pattern)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
         for c, dtype in frame.schema.items() if dtype == pl.String]
    )
