"""Writes the hostile-file corpus: `python tests/hostile/make_corpus.py` (deterministic; the files are
committed, this is how they were made and how to make them again).

refused/   every file here is refused as a whole; tests/test_intake_reader.py says with what message.
accepted/  awkward but legitimate files (BOM, CRLF, quotes, gzip, ...): every one is accepted.

The size limits the tests run with are MAX_FILE_BYTES and MAX_DECOMPRESSED_BYTES below (oversized.csv and bomb.csv.gz rely on them).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
COLUMNS = ["claim_id", "client_prime", "provider_id", "staff_id", "procedure_code", "modifier", "service_date",
           "start_time", "end_time", "units", "billed_rate"]
HEADER = ",".join(COLUMNS)
MAX_FILE_BYTES = 8192
MAX_DECOMPRESSED_BYTES = 65536


def rows(tag: str) -> list[list[str]]:
    """Three claims of the worked example's client, ids unique to one corpus file."""
    return [
        [f"{tag}-1", "xyz0000a", "P1", "", "OR526", "NA", "2026-04-01", "09:00", "13:00", "4", ""],
        [f"{tag}-2", "xyz0000a", "P3", "", "OR526", "ZE", "2026-04-01", "10:00", "12:00", "2", "17.53"],
        [f"{tag}-3", "xyz0000a", "G1", "S1", "OR526", "NA", "2026-04-01", "15:00", "17:00", "2", ""],
    ]


def csv_text(tag: str, end: str = "\n") -> str:
    return end.join([HEADER, *(",".join(r) for r in rows(tag))]) + end


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def frame(tag: str) -> pl.DataFrame:
    return pl.DataFrame(rows(tag), schema=COLUMNS, orient="row")


def refused() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    files["not_utf8_latin1.csv"] = csv_text("L1").replace("S1", "José").encode("latin-1")
    files["not_utf8_cp1252_quote.csv"] = (csv_text("L2").replace("S1", "O\u2019Brien")).encode("cp1252")
    files["utf16_excel_unicode_text.csv"] = csv_text("U16").encode("utf-16")
    files["missing_column.csv"] = "\n".join(
        [HEADER.rsplit(",", 1)[0], *(",".join(r[:-1]) for r in rows("MC"))]).encode() + b"\n"
    files["duplicate_column.csv"] = "\n".join(
        [HEADER + ",units", *(",".join(r + [r[9]]) for r in rows("DC"))]).encode() + b"\n"
    files["unknown_column.csv"] = "\n".join(
        [HEADER + ",notes", *(",".join(r + ["ok"]) for r in rows("UC"))]).encode() + b"\n"
    files["renamed_column.csv"] = csv_text("RC").replace("claim_id", "Claim ID", 1).encode()
    files["unnamed_column.csv"] = "\n".join(
        [HEADER + ",", *(",".join(r) + "," for r in rows("NN"))]).encode() + b"\n"
    files["semicolon_separated.csv"] = csv_text("SC").replace(",", ";").encode()
    files["empty.csv"] = b""
    files["blank_lines_only.csv"] = b"\n  \r\n\t\n"
    files["header_only.csv"] = (HEADER + "\r\n").encode()
    files["header_and_blank_rows.csv"] = (HEADER + "\n" + ",,,,,,,,,,\n" * 3 + "\n").encode()
    files["nul_byte.csv"] = csv_text("NB").encode().replace(b"P3", b"P\x003")
    files["control_char_dos_eof.csv"] = csv_text("CE").encode() + b"\x1a"
    files["xlsx_renamed.csv"] = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml"
    files["pdf_renamed.csv"] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
    files["parquet_named_csv.csv"] = parquet(frame("PQ"))
    files["ragged_row.csv"] = csv_text("RR").replace("P3,,", "P3,,,", 1).encode()
    files["short_row.csv"] = (csv_text("SR") + "SR-4,xyz0000a,P1,,OR526,NA,2026-04-02,09:00,13:00\n").encode()
    files["unclosed_quote.csv"] = csv_text("UQ").replace("UQ-2", '"UQ-2').encode()
    files["stray_quote.csv"] = csv_text("SQ").replace("SQ-2", '"SQ-2"x').encode()
    files["claims.xlsx"] = csv_text("XL").encode()
    files["claims.txt"] = csv_text("TX").encode()
    lines = [json.dumps(dict(zip(COLUMNS, r))) for r in rows("JS")]
    files["not_json.jsonl"] = "\n".join([lines[0], lines[1][:-5], lines[2]]).encode() + b"\n"
    files["json_array.json"] = json.dumps([dict(zip(COLUMNS, r)) for r in rows("JA")], indent=2).encode()
    files["json_scalar_line.jsonl"] = "\n".join([lines[0], "42", lines[2]]).encode() + b"\n"
    files["json_duplicate_key.jsonl"] = "\n".join([lines[0], lines[1][:-1] + ', "units": "3"}']).encode() + b"\n"
    files["json_unknown_key.jsonl"] = "\n".join([lines[0], lines[1][:-1] + ', "note": "x"}']).encode() + b"\n"
    files["json_missing_key.jsonl"] = "\n".join(
        json.dumps({k: v for k, v in zip(COLUMNS, r) if k != "billed_rate"}) for r in rows("JM")).encode() + b"\n"
    files["truncated.csv.gz"] = gz(csv_text("TG").encode())[:-12]
    files["not_gzip.csv.gz"] = csv_text("NG").encode()
    files["gzip_trailing_garbage.csv.gz"] = gz(csv_text("GG").encode()) + b"this is not gzip"
    files["gzip_twice.csv.gz"] = gz(gz(csv_text("G2").encode()))
    # 1 MB of claims in about 3 KB: over the tests' decompressed-size limit (never unpacked past it).
    bomb_rows = "BOMB-1,xyz0000a,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n" * 20_000
    files["bomb.csv.gz"] = gz((HEADER + "\n" + bomb_rows).encode())
    files["oversized.csv"] = (HEADER + "\n" + "".join(
        f"OS-{i},xyz0000a,P1,,OR526,NA,2026-04-01,09:00,13:00,4,\n" for i in range(200))).encode()
    files["corrupt.parquet"] = parquet(frame("CP"))[:40] + b"\x00" * 40 + b"PAR1"
    files["not_parquet.parquet"] = csv_text("NP").encode()
    files["parquet_nested_column.parquet"] = parquet(frame("PN").with_columns(units=pl.lit([4, 2])))
    files["parquet_unknown_column.parquet"] = parquet(frame("PU").with_columns(notes=pl.lit("x")))
    return files


def accepted() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    files["excel_utf8_bom_crlf.csv"] = ("\ufeff" + csv_text("XB", "\r\n")).encode()
    files["old_mac_cr.csv"] = csv_text("CR", "\r").encode()
    quoted = ['"' + HEADER.replace(",", '","') + '"']
    for r in rows("QF"):
        quoted.append(",".join('"' + v.replace('"', '""') + '"' for v in r))
    # A quoted comma, an escaped quote and a quoted line break (the next claim starts a line later).
    quoted[2] = quoted[2].replace('"P3"', '"P3"').replace('""', '"Smith, ""Jo""\nnight shift"', 1)
    files["quoted_fields.csv"] = ("\r\n".join(quoted) + "\r\n").encode()
    files["blank_and_padded_rows.csv"] = (HEADER + "\n\n" + "\n".join(",".join(r) for r in rows("BP"))
                                          + "\n,,,,,,,,,,\n\n").encode()
    files["compressed.csv.gz"] = gz(csv_text("GZ").encode())
    files["multi_member.csv.gz"] = gz(csv_text("MM").rsplit("\n", 2)[0].encode() + b"\n") \
        + gz((csv_text("MM").rsplit("\n", 2)[1] + "\n").encode())
    files["gzip_without_gz_name.csv"] = gz(csv_text("GN").encode())
    files["gzip_zero_padded.csv.gz"] = gz(csv_text("GP").encode()) + b"\x00" * 512  # as block writers leave it
    files["claims_bom_crlf.jsonl"] = ("\ufeff" + "\r\n".join(
        json.dumps(dict(zip(COLUMNS, r[:9] + [json.loads(r[9]), json.loads(r[10]) if r[10] else None])))
        for r in rows("JL")) + "\r\n").encode()
    files["claims.parquet"] = parquet(frame("PT").with_columns(
        service_date=pl.col("service_date").str.to_date(),
        units=pl.col("units").cast(pl.Float64),
        billed_rate=pl.col("billed_rate").replace("", None).cast(pl.Decimal(10, 2)),
    ))
    files["claims.jsonl.gz"] = gz("\n".join(json.dumps(dict(zip(COLUMNS, r))) for r in rows("JZ")).encode())
    return files


# Claim lines of each accepted file (the quoted line break pushes the third claim one line down).
ACCEPTED_LINES = {
    "excel_utf8_bom_crlf.csv": [2, 3, 4],
    "old_mac_cr.csv": [2, 3, 4],
    "quoted_fields.csv": [2, 3, 5],
    "blank_and_padded_rows.csv": [3, 4, 5],
    "compressed.csv.gz": [2, 3, 4],
    "multi_member.csv.gz": [2, 3, 4],
    "gzip_without_gz_name.csv": [2, 3, 4],
    "gzip_zero_padded.csv.gz": [2, 3, 4],
    "claims_bom_crlf.jsonl": [1, 2, 3],
    "claims.parquet": [2, 3, 4],
    "claims.jsonl.gz": [1, 2, 3],
}


# What the one-line refusal of every refused file must say.
REFUSALS = {
    "not_utf8_latin1.csv": "not UTF-8: byte 0xE9 on line 4, column 21",
    "not_utf8_cp1252_quote.csv": "not UTF-8: byte 0x92 on line 4",
    "utf16_excel_unicode_text.csv": "UTF-16 text",
    "missing_column.csv": "missing columns: billed_rate",
    "duplicate_column.csv": "duplicate columns: units",
    "unknown_column.csv": "unknown columns: notes",
    "renamed_column.csv": "missing columns: claim_id; unknown columns: Claim ID",
    "unnamed_column.csv": "columns without a name at position 12",
    "semicolon_separated.csv": "separated by semicolons",
    "empty.csv": "the file is empty",
    "blank_lines_only.csv": "the file is empty",
    "header_only.csv": "no claim rows",
    "header_and_blank_rows.csv": "no claim rows",
    "nul_byte.csv": "binary content (NUL byte on line 3",
    "control_char_dos_eof.csv": "binary content (control character 0x1a on line 5)",
    "xlsx_renamed.csv": "a ZIP archive (an Excel .xlsx workbook?)",
    "pdf_renamed.csv": "a PDF document",
    "parquet_named_csv.csv": "a Parquet file named as CSV",
    "ragged_row.csv": "line 3 has 12 fields but the header has 11",
    "short_row.csv": "line 5 has 9 fields but the header has 11",
    "unclosed_quote.csv": "the quoted field opened on line 3 is never closed",
    "stray_quote.csv": "line 3: broken quoting",
    "claims.xlsx": "unknown format",
    "claims.txt": "unknown format",
    "not_json.jsonl": "line 2 is not JSON",
    "json_array.json": "a JSON array; claim files in JSON are JSON Lines",
    "json_scalar_line.jsonl": "line 2 is not a JSON object",
    "json_duplicate_key.jsonl": "line 2: duplicate columns: units",
    "json_unknown_key.jsonl": "line 2: unknown columns: note",
    "json_missing_key.jsonl": "missing columns: billed_rate",
    "truncated.csv.gz": "gzip data is truncated",
    "not_gzip.csv.gz": "named .gz but not gzip-compressed",
    "gzip_trailing_garbage.csv.gz": "garbage after the gzip data",
    "gzip_twice.csv.gz": "gzip-compressed twice",
    "bomb.csv.gz": f"decompresses to more than the limit of {MAX_DECOMPRESSED_BYTES} bytes",
    "oversized.csv": f"over the limit of {MAX_FILE_BYTES} bytes",
    "corrupt.parquet": "not a readable Parquet file",
    "not_parquet.parquet": "not a Parquet file",
    "parquet_nested_column.parquet": "column units holds List",
    "parquet_unknown_column.parquet": "unknown columns: notes",
}


def main() -> None:
    for folder, files in (("refused", refused()), ("accepted", accepted())):
        (HERE / folder).mkdir(exist_ok=True)
        for name, data in files.items():
            (HERE / folder / name).write_bytes(data)
    print(f"wrote {len(refused())} refused and {len(accepted())} accepted files under {HERE}")


if __name__ == "__main__":
    main()
