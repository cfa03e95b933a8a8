"""The claim file reader on the hostile corpus (tests/hostile/): what is refused, with which message,
and what awkward-but-legitimate files are read as. The command-line side is in test_intake_cli.py."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from pathlib import Path
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adjudication import claim_file
from adjudication.claim_file import ClaimFileError, Limits, read_claim_file
from adjudication.claims import CLAIM_COLUMNS, OPTIONAL_COLUMNS
from hostile.make_corpus import (ACCEPTED_LINES, HEADER, MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES, REFUSALS, accepted,
                                 refused)

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(MAX_FILE_BYTES, MAX_DECOMPRESSED_BYTES)

def test_corpus_on_disk_is_what_the_generator_makes():
    """The committed files and tests/hostile/make_corpus.py agree, and every file has an expectation."""
    on_disk = {p.name for p in (HOSTILE / "refused").iterdir()}
    assert on_disk == set(refused()) == set(REFUSALS)
    assert {p.name for p in (HOSTILE / "accepted").iterdir()} == set(accepted()) == set(ACCEPTED_LINES)
    for folder, files in (("refused", refused()), ("accepted", accepted())):
        for name, data in files.items():
            assert (HOSTILE / folder / name).read_bytes() == data, name


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_hostile_file_is_refused_with_a_one_line_reason(name):
    data = (HOSTILE / "refused" / name).read_bytes()
    with pytest.raises(ClaimFileError) as refusal:
        read_claim_file(name, data, LIMITS)
    message = str(refusal.value)
    assert message.startswith(f"{name}: ")
    assert REFUSALS[name] in message
    assert "\n" not in message and "\r" not in message


@pytest.mark.parametrize("name", sorted(ACCEPTED_LINES))
def test_awkward_but_legitimate_file_is_read_exactly(name):
    """BOM, CRLF, bare CR, quoted fields, blank and padded rows, gzip (also multi-member and unnamed),
    JSON Lines numbers, typed Parquet: all read as the same three claims, with their line numbers."""
    claim_file = read_claim_file(name, (HOSTILE / "accepted" / name).read_bytes(), LIMITS)
    rows = claim_file.rows
    assert rows.columns == ["line", *CLAIM_COLUMNS]
    assert rows.get_column("line").to_list() == ACCEPTED_LINES[name]
    tag = rows.get_column("claim_id")[0].split("-")[0]
    assert rows.get_column("claim_id").to_list() == [f"{tag}-1", f"{tag}-2", f"{tag}-3"]
    assert rows.get_column("client_prime").to_list() == ["xyz0000a"] * 3
    assert rows.get_column("service_date").to_list() == ["2026-04-01"] * 3
    assert rows.get_column("start_time").to_list() == ["09:00", "10:00", "15:00"]
    assert rows.get_column("staff_id").to_list()[0] is None  # empty text is missing, in every format
    assert [float(u) for u in rows.get_column("units")] == [4, 2, 2]
    assert rows.get_column("billed_rate").to_list() == [None, "17.53", None]
    if name == "quoted_fields.csv":
        assert rows.get_column("staff_id")[1] == 'Smith, "Jo"\nnight shift'


def test_same_rows_from_csv_json_lines_and_parquet():
    """One claim set written three ways reads to one frame (only JSON Lines numbers its lines from 1:
    it has no header line)."""
    frame = pl.DataFrame([
        ["F-1", "xyz0000a", "P1", "", "OR526", "NA", "2026-04-01", "09:00", "13:00", "4", ""],
        ["F-2", " xyz0000a ", "P3", "S 9", "OR526", "ZE", "2026-04-31", "10:00", "24:00", "2.50", "17.5300"],
        ["=F-3", "xyz0000a", "G1", "", "OR526", "", "2026-04-01", "", "", "-1", "1e3"],
    ], schema=[c for c in CLAIM_COLUMNS if c not in OPTIONAL_COLUMNS], orient="row")  # optional ones left out
    as_csv = frame.write_csv().encode()
    as_jsonl = "\n".join(json.dumps(row) for row in frame.to_dicts()).encode()
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    results = {name: read_claim_file(name, data).rows for name, data in
               (("f.csv", as_csv), ("f.jsonl", as_jsonl), ("f.parquet", buffer.getvalue()),
                ("f.csv.gz", gzip.compress(as_csv)))}
    expected = results["f.csv"]
    assert expected.get_column("line").to_list() == [2, 3, 4]
    for name, rows in results.items():
        if name == "f.jsonl":
            rows = rows.with_columns(pl.col("line") + 1)
        assert rows.equals(expected), name


def test_numbers_in_json_lines_keep_their_exact_text():
    """No binary float in between: 17.5300000000000001 stays that text, and the record checks reject it
    rather than pay 17.53."""
    line = {c: "x" for c in CLAIM_COLUMNS} | {"units": 4, "billed_rate": 1}
    text = json.dumps(line).replace('"billed_rate": 1', '"billed_rate": 17.5300000000000001')
    rows = read_claim_file("n.jsonl", text.encode()).rows
    assert rows.get_column("units")[0] == "4"
    assert rows.get_column("billed_rate")[0] == "17.5300000000000001"


def test_a_compression_bomb_is_refused_without_being_unpacked():
    """100 MB of claims compressed to about 100 KB, with a 1 MB limit: refused having allocated about
    the limit, never the 100 MB."""
    row = b"B-1,xyz0000a,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n"
    bomb = gzip.compress(HEADER.encode() + b"\n" + row * (100 * 1024 * 1024 // len(row)), compresslevel=9)
    assert len(bomb) < 512 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ClaimFileError, match="decompresses to more than the limit of 1048576 bytes"):
            read_claim_file("bomb.csv.gz", bomb, Limits(max_file_bytes=1024 * 1024, max_decompressed_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_parquet_with_too_many_rows_is_refused_before_decoding():
    frame = pl.DataFrame({c: ["x"] * 50_000 for c in CLAIM_COLUMNS})
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    with pytest.raises(ClaimFileError, match="50000 rows is over"):
        read_claim_file("many.parquet", buffer.getvalue(), Limits(max_decompressed_bytes=100_000))


def test_a_control_character_deep_in_a_large_file_is_found():
    row = "C-1,xyz0000a,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n"
    text = HEADER + "\n" + row * 5000 + row.replace("P1", "P\x071") + row
    with pytest.raises(ClaimFileError, match="control character 0x07 on line 5002"):
        read_claim_file("deep.csv", text.encode())


def test_odd_names_stay_on_one_line():
    with pytest.raises(ClaimFileError) as refusal:
        read_claim_file("bad\nname.csv", b"")
    assert "\n" not in str(refusal.value) and str(refusal.value).startswith("'bad\\nname.csv': ")
    with pytest.raises(ClaimFileError, match=r"unknown columns: '\\ufeffclaim_id'"):
        read_claim_file("bom2.csv", ("\ufeff\ufeff" + HEADER + "\nx,x,x,x,x,x,x,x,x,x,x\n").encode())


# --- the plain CSV reader ------------------------------------------------------------------

CELLS = ["C-1", "xyz0000a", "09:00", "4", "", '""', '"OR526"', '" a "', " ", '"a,b"', '"a""b"', '"é"', "\u00a0",
         "\ufeff", '"\ufeff"', "x\ty", "NA"]


@st.composite
def one_line_csv(draw) -> bytes:
    """CSV in the shapes the plain reader takes, and near misses: quotes, blank lines, a byte or two off."""
    columns = draw(st.permutations(CLAIM_COLUMNS))
    header = ",".join(f'"{c}"' for c in columns) if draw(st.booleans()) else ",".join(columns)
    common = st.sampled_from(["C-1", "09:00", "4", "", '""'])
    row = st.lists(st.one_of(common, common, common, st.sampled_from(CELLS)), min_size=len(columns),
                   max_size=len(columns)).map(",".join)
    text = "\n".join([header, *draw(st.lists(row, min_size=1, max_size=5))])
    text += draw(st.sampled_from(["", "\n", "\n\n", "\n,,,,\n", "\n \n"]))
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            inserted = draw(st.sampled_from([",", '"', "\n", "\r", " ", "\ufeff", "\u00a0", ",,"]))
            text = text[:where] + inserted + text[where:]
        else:
            text = text[:where] + text[where + 1:]
    return text.encode()


def _read_or_refusal(data: bytes) -> pl.DataFrame | str:
    try:
        return read_claim_file("f.csv", data).rows
    except ClaimFileError as refusal:
        return str(refusal)


@settings(max_examples=300, deadline=None)
@given(one_line_csv())
@example(f'{HEADER}\nC-1,x,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\nC-2,x,P1,,OR526,NA,2026-04-01,09:00,13:00,4\n'
         f'C-3,x,P1,,OR526,NA,2026-04-01,09:00,13:00,4,,'.encode())
@example(f'{HEADER}\n"é",x,P1,,OR526,NA,2026-04-01,09:00,13:00,4,""\n'.encode())
@example(f'{HEADER}\n\ufeff"C-1",x,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n'.encode())
@example(f'{HEADER}\nC-1,x,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n,,,,,,,,,,\n \n'.encode())
@example(f'{HEADER}\nC-1,x,P1,"",OR526,NA,2026-04-01,09:00,13:00,4,""\n'.encode())  # only empty quoted fields
def test_the_plain_csv_reader_reads_as_the_record_by_record_reader(data):
    """Which reader takes a file never shows: the same rows, or the same refusal, without the plain one.
    (The examples once read differently: a last line with one field too many, ending in a comma and no
    line feed, after a short row; quoted non-ASCII text; a U+FEFF opening the first row.)"""
    with patch.object(claim_file, "_csv_plain", lambda shown, data: None):
        expected = _read_or_refusal(data)
    got = _read_or_refusal(data)
    if isinstance(expected, pl.DataFrame) and isinstance(got, pl.DataFrame):
        assert got.equals(expected)
    else:
        assert type(got) is type(expected) and got == expected


def test_a_header_problem_names_every_column_up_to_twenty():
    from adjudication.claims import CLAIM_COLUMNS, OPTIONAL_COLUMNS

    required = [c for c in CLAIM_COLUMNS if c not in OPTIONAL_COLUMNS]
    wrong = [f"col_{chr(97 + i)}" for i in range(12)]
    with pytest.raises(ClaimFileError) as refused:
        read_claim_file("f.csv", (",".join(required[1:] + wrong) + "\n" + ",".join("x" * 22) + "\n").encode())
    message = str(refused.value)
    assert f"missing columns: {required[0]}" in message and f"unknown columns: {', '.join(wrong)}" in message
    assert "more" not in message
    many = [f"col_{chr(97 + i)}{chr(97 + j)}" for i in range(3) for j in range(9)]  # 27 columns
    with pytest.raises(ClaimFileError, match=f"unknown columns: {', '.join(many[:20])} and 7 more"):
        read_claim_file("f.csv", (",".join(required + many) + "\n" + ",".join("x" * 38) + "\n").encode())


def test_a_json_key_that_may_be_a_value_is_named_by_its_place_in_the_object():
    row = {"claim_id": "C1", "client_prime": "xyz0000a", "provider_id": "P1", "staff_id": "", "procedure_code": "OR526",
           "modifier": "NA", "service_date": "2026-04-01", "start_time": "09:00", "end_time": "13:00", "units": "4",
           "billed_rate": ""}
    for place in (1, 12):
        keys = list(row.items())
        keys.insert(place - 1, ("abc0001b", "x"))  # a client prime number posted as a key
        with pytest.raises(ClaimFileError) as refusal:
            read_claim_file("k.jsonl", json.dumps(dict(keys)).encode())
        assert str(refusal.value) == f"k.jsonl: line 1: unknown columns: (the column at position {place})"
    with pytest.raises(ClaimFileError) as refusal:
        read_claim_file("k.jsonl", json.dumps({**row, "units": [4]}).encode())
    assert str(refusal.value) == "k.jsonl: line 1: column units holds an array, not a single value"
