"""Reading a posted claim file (CSV, JSON Lines or Parquet, optionally gzip) into raw text columns.

A file is refused as a whole (ClaimFileError, nothing stored) when it cannot be a claim file at
all: wrong encoding, binary content, wrong columns, no rows, too large. Everything about single
rows is left to the record checks, so one bad row never sinks the batch.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass

import polars as pl

import csv

from adjudication.claims import CLAIM_COLUMNS

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
CSV_TEXT = ("csv", "jsonl")


class ClaimFileError(ValueError):
    """The file is refused as a whole; the message names the file and the problem."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 512 * 1024 * 1024
    max_decompressed_bytes: int = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class ClaimFile:
    format: str
    rows: pl.DataFrame  # `line` (Int64) + CLAIM_COLUMNS as String, empty texts as null


def detect_format(name: str) -> tuple[str, bool]:
    """(format, gzipped) from the file name; ClaimFileError for anything else."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    stem = lower[:-3] if gzipped else lower
    for suffix, fmt in FORMATS.items():
        if stem.endswith(suffix):
            return fmt, gzipped
    raise ClaimFileError(f"{name}: unknown format (expected .csv, .jsonl or .parquet, optionally .gz)")


def read_claim_file(name: str, data: bytes, limits: Limits = Limits()) -> ClaimFile:
    fmt, gzipped = detect_format(name)
    if len(data) > limits.max_file_bytes:
        raise ClaimFileError(f"{name}: {len(data)} bytes is over the limit of {limits.max_file_bytes} bytes")
    if gzipped:
        data = _gunzip(name, data, limits.max_decompressed_bytes)
    if fmt == "parquet":
        frame, lines = _parquet(name, data)
    else:
        text = _text(name, data)
        frame, lines = _csv(name, text, data.removeprefix(b"\xef\xbb\xbf")) if fmt == "csv" else _jsonl(name, text)
    if frame.height == 0:
        raise ClaimFileError(f"{name}: no claim rows")
    rows = frame.select(
        pl.Series("line", lines, dtype=pl.Int64),
        *[pl.col(c).cast(pl.String).replace("", None).alias(c)
          if c in frame.columns else pl.lit(None, dtype=pl.String).alias(c) for c in CLAIM_COLUMNS],
    )
    return ClaimFile(format=fmt, rows=rows)


def _gunzip(name: str, data: bytes, cap: int) -> bytes:
    """Decompress in bounded steps so a compression bomb is refused, never unpacked."""
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    try:
        chunk = inflater.decompress(data, cap + 1 - len(out))
        out += chunk
        while inflater.unconsumed_tail and len(out) <= cap:
            out += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(out))
    except zlib.error as error:
        raise ClaimFileError(f"{name}: not a valid gzip file ({error})") from None
    if len(out) > cap:
        raise ClaimFileError(f"{name}: decompresses to more than the limit of {cap} bytes")
    if not inflater.eof:
        raise ClaimFileError(f"{name}: gzip data is truncated")
    return bytes(out)


def _text(name: str, data: bytes) -> str:
    if b"\x00" in data:
        where = data.index(b"\x00")
        line = data.count(b"\n", 0, where) + 1
        raise ClaimFileError(f"{name}: binary content (NUL byte at offset {where}, line {line})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ClaimFileError(f"{name}: not UTF-8 (byte offset {error.start}, line {line})") from None
    text = text.removeprefix("\ufeff")
    bad = next((ch for ch in text[:65536] if ord(ch) < 32 and ch not in "\r\n\t"), None)
    if bad is not None:
        offset = text.index(bad)
        line = text.count("\n", 0, offset) + 1
        raise ClaimFileError(f"{name}: binary content (control byte {ord(bad):#04x} on line {line})")
    if not text.strip():
        raise ClaimFileError(f"{name}: the file is empty")
    return text


def _check_columns(name: str, header: list[str]) -> None:
    cleaned = [h.strip() for h in header]
    duplicates = sorted({h for h in cleaned if cleaned.count(h) > 1})
    if duplicates:
        raise ClaimFileError(f"{name}: duplicate columns: {', '.join(duplicates)}")
    missing = [c for c in CLAIM_COLUMNS if c not in cleaned]
    if missing:
        raise ClaimFileError(f"{name}: missing columns: {', '.join(missing)}")
    unknown = [h for h in cleaned if h not in CLAIM_COLUMNS]
    if unknown:
        raise ClaimFileError(f"{name}: unknown columns: {', '.join(unknown)}")


def _csv(name: str, text: str, data: bytes) -> tuple[pl.DataFrame, list[int]]:
    first_line = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader([first_line]), [])
    _check_columns(name, header)
    try:
        frame = pl.read_csv(io.BytesIO(data), infer_schema=False, has_header=True)
    except pl.exceptions.PolarsError as error:
        raise ClaimFileError(f"{name}: not a readable CSV file ({str(error).splitlines()[0]})") from None
    frame = frame.rename({c: c.strip() for c in frame.columns})
    # Fully blank lines are not claims.
    frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))
    physical = text.count("\n") + (0 if text.endswith("\n") else 1)
    if physical - 1 == frame.height and '"' not in text:
        lines = list(range(2, frame.height + 2))
    else:
        lines = _csv_record_lines(text)
    if len(lines) != frame.height:
        raise ClaimFileError(f"{name}: rows could not be told apart (unbalanced quotes?)")
    return frame, lines


def _csv_record_lines(text: str) -> list[int]:
    """The line each non-blank record starts on, for files with quoted line breaks or blank lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    lines, start = [], 1
    for index, record in enumerate(reader):
        if index and any(field.strip() for field in record):
            lines.append(start)
        start = reader.line_num + 1
    return lines


def _jsonl(name: str, text: str) -> tuple[pl.DataFrame, list[int]]:
    records, lines, keys = [], [], set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ClaimFileError(f"{name}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ClaimFileError(f"{name}: line {number} is not a JSON object")
        keys.update(record)
        records.append({k: None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()})
        lines.append(number)
    if not records:
        raise ClaimFileError(f"{name}: no claim rows")
    _check_columns(name, [k for k in keys if k in CLAIM_COLUMNS] + sorted(k for k in keys if k not in CLAIM_COLUMNS))
    frame = pl.DataFrame(records, schema={k: pl.String for k in CLAIM_COLUMNS if k in keys})
    return frame, lines


def _parquet(name: str, data: bytes) -> tuple[pl.DataFrame, list[int]]:
    if not data.startswith(b"PAR1"):
        raise ClaimFileError(f"{name}: not a Parquet file")
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as error:  # polars raises several kinds for a corrupt file
        raise ClaimFileError(f"{name}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    _check_columns(name, frame.columns)
    formats = {pl.Date: "%Y-%m-%d", pl.Time: "%H:%M"}
    frame = frame.with_columns(
        [pl.col(c).dt.strftime(formats[frame.schema[c]]) if frame.schema[c] in formats else pl.col(c).cast(pl.String)
         for c in frame.columns]
    )
    # A Parquet row is numbered as the CSV line it would be on (header = line 1).
    return frame, list(range(2, frame.height + 2))
