"""The packed paid ledger gives back exactly what was packed, whatever the texts hold."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from adjudication.engine import LEDGER_SCHEMA
from adjudication.ledger_codec import pack, unpack

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ROW = st.fixed_dictionaries({
    "claim_id": TEXT,
    "client_prime": st.sampled_from(["a", "b,;", "-", ""]),
    "service_day": st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)),
    "provider_id": TEXT,
    "procedure_code": TEXT,
    "modifier": st.one_of(st.none(), TEXT),
    "start_min": st.one_of(st.none(), st.integers(0, 1440)),
    "end_min": st.one_of(st.none(), st.integers(0, 1440)),
    "units_s": st.integers(0, 10**12),
    "spa_id": st.one_of(TEXT, st.just("-"), st.just(",;")),
})


@settings(max_examples=200)
@given(rows=st.lists(ROW, max_size=30))
def test_unpack_inverts_pack_in_paid_order(rows):
    paid = pl.DataFrame([{"claim_pk": pk, **row} for pk, row in enumerate(rows)], schema=LEDGER_SCHEMA, orient="row")
    packed = pack(paid)
    assert packed.height == paid.select("client_prime", pl.col("service_day").dt.month_start()).n_unique()
    back = unpack(packed)
    assert back.schema == paid.schema
    # Each client and month comes back in the order it was packed.
    assert back.sort("client_prime", pl.col("service_day").dt.month_start(), maintain_order=True).equals(
        paid.sort("client_prime", pl.col("service_day").dt.month_start(), maintain_order=True))
