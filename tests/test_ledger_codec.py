"""The packed paid ledger gives back exactly what was packed, whatever the texts hold, and texts
stored in the first format are still read."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from adjudication.engine import LEDGER_SCHEMA
from adjudication.ledger_codec import PACKED_FIELDS, PACKED_SCHEMA, pack, unpack

# Texts that look like the packing's own marks, next to arbitrary ones.
TEXT = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "%", "%_", "%25", "%2C", "%3B", "%%2C", ",", ";", ",;", "-", "v2|", "P1", "OR526"]),
)
# Most rows share a few clients and months, so that fields repeat from row to row as in real ledgers.
DAY = st.one_of(st.dates(dt.date(2026, 2, 27), dt.date(2026, 3, 2)), st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)))
SMALL = st.one_of(st.none(), st.sampled_from([0, 540, 720]), st.integers(-(10**6), 10**12))
ROW = st.fixed_dictionaries({
    "claim_id": TEXT,
    "client_prime": st.sampled_from(["a", "b,;", "-", "", "%"]),
    "service_day": DAY,
    "provider_id": st.one_of(st.sampled_from(["P1", "P2"]), TEXT),
    "procedure_code": st.one_of(st.sampled_from(["OR526", "T1016"]), TEXT),
    "modifier": st.one_of(st.none(), st.sampled_from(["NA", "ZE", ""]), TEXT),
    "start_min": SMALL,
    "end_min": SMALL,
    "units_s": st.one_of(st.sampled_from([10000, 20000]), st.integers(0, 10**12)),
    "spa_id": st.one_of(st.none(), st.sampled_from(["S-1", "S-2"]), TEXT),
})
# Claim pks in any order (a re-queued claim is paid after later ones): differences can be negative.
PKS = st.lists(st.integers(1, 10**12), unique=True, max_size=40)


def ledger(pks: list[int], rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{"claim_pk": pk, **row} for pk, row in zip(pks, rows)], schema=LEDGER_SCHEMA, orient="row")


def by_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows grouped by client and month, each group in its own order (what a text keeps)."""
    return frame.sort("client_prime", pl.col("service_day").dt.month_start(), maintain_order=True)


@settings(max_examples=400)
@given(pks=PKS, rows=st.lists(ROW, max_size=40))
def test_unpack_inverts_pack_in_paid_order(pks, rows):
    paid = ledger(pks, rows)
    packed = pack(paid)
    assert packed.schema == PACKED_SCHEMA
    assert packed.height == paid.select("client_prime", pl.col("service_day").dt.month_start()).n_unique()
    back = unpack(packed)
    assert back.schema == paid.schema
    assert by_text(back).equals(by_text(paid))


def test_a_field_as_in_the_row_before_is_left_empty():
    paid = ledger([7, 8, 10], [
        {"claim_id": "C1", "client_prime": "a", "service_day": dt.date(2026, 3, 1), "provider_id": "P1",
         "procedure_code": "OR526", "modifier": "NA", "start_min": 540, "end_min": 720, "units_s": 30000,
         "spa_id": "S-1"},
        {"claim_id": "C2", "client_prime": "a", "service_day": dt.date(2026, 3, 1), "provider_id": "P1",
         "procedure_code": "OR526", "modifier": "NA", "start_min": 540, "end_min": 780, "units_s": 30000,
         "spa_id": "S-1"},
        {"claim_id": "C3", "client_prime": "a", "service_day": dt.date(2026, 3, 2), "provider_id": "P1",
         "procedure_code": "T1016", "modifier": None, "start_min": None, "end_min": None, "units_s": 30000,
         "spa_id": "S,2"},
    ])
    assert pack(paid).get_column("claims").to_list() == [
        "v2|7,C1,1,P1,OR526,NA,540,720,30000,S-1;1,C2,,,,,,780,,;2,C3,2,,T1016,%,%,%,,S%2C2"]


# --- format 1, written until 2026-12-01: every text base64, a missing value '-' ------------------

def pack_v1(paid: pl.DataFrame) -> pl.DataFrame:
    """The first format's packing, kept here as the reference for texts stored with it."""
    def encoded(name: str) -> pl.Expr:
        dtype, column = LEDGER_SCHEMA[name], pl.col(name)
        if dtype == pl.String:
            text = column.str.encode("base64")
        elif dtype == pl.Date:
            text = column.cast(pl.Int32).cast(pl.String)
        else:
            text = column.cast(pl.String)
        return text.fill_null("-")

    return (
        paid.lazy()
        .select("client_prime", month=pl.col("service_day").dt.month_start(),
                row=pl.concat_str([encoded(name) for name in PACKED_FIELDS], separator=","))
        .group_by("client_prime", "month").agg("row")
        .select("client_prime", "month", claims=pl.col("row").list.join(";"))
        .sort("client_prime", "month")
        .collect()
    )


def test_a_text_of_the_first_format_is_read():
    packed = pl.DataFrame({"client_prime": ["x1"], "month": [dt.date(2026, 3, 1)], "claims": [
        "41,QzAwMQ==,20513,UDc=,T1I1MjY=,TkE=,540,720,30000,Uy0x;42,QzAwMg==,20514,UDc=,VDEwMTY=,-,-,-,10000,-"]},
        schema=PACKED_SCHEMA)
    assert unpack(packed).rows() == [
        (41, "C001", "x1", dt.date(2026, 3, 1), "P7", "OR526", "NA", 540, 720, 30000, "S-1"),
        (42, "C002", "x1", dt.date(2026, 3, 2), "P7", "T1016", None, None, None, 10000, None),
    ]


@settings(max_examples=200)
@given(pks=PKS, rows=st.lists(ROW, max_size=40), first_format=st.lists(st.booleans(), min_size=40, max_size=40))
def test_texts_of_both_formats_are_read_together_in_the_order_given(pks, rows, first_format):
    """A database written before format 2 holds texts of both: a run reads them in run order."""
    paid = ledger(pks, rows)
    texts = []
    for run, (old, part) in enumerate(zip(first_format, paid.iter_slices(3))):
        texts.append((pack_v1 if old else pack)(part).with_columns(run=pl.lit(run)))
    packed = pl.concat([pl.DataFrame(schema={**PACKED_SCHEMA, "run": pl.Int32}), *texts]).sort("run", maintain_order=True)
    back = unpack(packed.drop("run"))
    expected = pl.concat([pl.DataFrame(schema=LEDGER_SCHEMA), *(by_text(part) for part in paid.iter_slices(3))])
    assert back.equals(expected)
