"""Reading a posted claim file (CSV, JSON Lines or Parquet, optionally gzip) into raw text columns.

A file is refused as a whole (ClaimFileError, nothing stored) when it cannot be a claim file at
all: unknown format, too large, a compression bomb, binary content, not UTF-8, wrong columns,
a row whose shape breaks the file's structure (wrong number of fields, broken quoting, a line that
is not a JSON object), or no rows. Everything about the *values* of single rows is left to the record
checks, so one bad field never sinks the batch. docs/intake.md lists every refusal and why.

Every refusal message is one line and starts with the file name.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from dataclasses import dataclass

import polars as pl

from adjudication.claims import CLAIM_COLUMNS, OPTIONAL_COLUMNS

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
GZIP_MAGIC = b"\x1f\x8b"
# Content that is certainly not a claim file, recognised by its first bytes: named in the refusal.
SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (or another OLE document)"),
    (b"%PDF-", "a PDF document"),
    (b"\x00\x00\xfe\xff", "UTF-32 text (byte order mark 00 00 FE FF)"),
    (b"\xff\xfe\x00\x00", "UTF-32 text (byte order mark FF FE 00 00)"),
    (b"\xff\xfe", "UTF-16 text (byte order mark FF FE)"),
    (b"\xfe\xff", "UTF-16 text (byte order mark FE FF)"),
    (GZIP_MAGIC, "gzip-compressed twice"),
    (b"BZh", "bzip2-compressed (only gzip is accepted)"),
    (b"\xfd7zXZ\x00", "xz-compressed (only gzip is accepted)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed (only gzip is accepted)"),
)
# C0 control characters other than tab, line feed and carriage return: binary, not text.
CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20)])
NOT_CONTROL = bytes(b for b in range(256) if b not in CONTROL_BYTES)  # what bytes.translate deletes
UTF8_BOM = b"\xef\xbb\xbf"
BLANK_LINE = r"^[\s,]*$"
# Rows per chunk when a file is read record by record (quoted CSV, JSON Lines): bounds memory.
CHUNK = 100_000
# A claim row takes at least this many bytes as CSV (eleven fields, six of them required).
MIN_ROW_BYTES = 24
# No claim field is longer (ids are at most 64 characters): a longer value means a broken export,
# and the file is refused rather than stored, acknowledged or exported back at that size.
MAX_FIELD_BYTES = 256


class ClaimFileError(ValueError):
    """The file is refused as a whole; the message names the file and the problem, on one line."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 512 * 1024 * 1024
    max_decompressed_bytes: int = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class ClaimFile:
    format: str
    rows: pl.DataFrame  # `line` (Int64) + CLAIM_COLUMNS as String, empty texts as null
    compressed: bool = False


def detect_format(name: str) -> tuple[str, bool]:
    """(format, named .gz) from the file name; ClaimFileError for anything else."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    stem = lower[:-3] if gzipped else lower
    for suffix, fmt in FORMATS.items():
        if stem.endswith(suffix):
            return fmt, gzipped
    raise ClaimFileError(f"{label(name)}: unknown format (expected a name ending .csv, .jsonl, .ndjson, .json "
                         f"or .parquet, optionally followed by .gz)")


def label(name: str) -> str:
    """A file or column name as it can be shown on one line."""
    return name if name.isprintable() and name == name.strip() and name else repr(name)


def read_claim_file(name: str, data: bytes, limits: Limits = Limits()) -> ClaimFile:
    """The rows of a claim file, or ClaimFileError saying why the whole file is refused."""
    content, compressed = unpack(name, data, limits)
    return parse_unpacked(name, content, compressed, limits)


def unpack(name: str, data: bytes, limits: Limits = Limits()) -> tuple[bytes, bool]:
    """The file's content, gzip removed (compression is a transport matter: the same claims posted
    plain and gzip-compressed are the same content), and whether it came compressed; ClaimFileError
    for a file refused before its content is read (size, format name, gzip that is broken or a bomb)."""
    _fmt, named_gz = detect_format(name)
    shown = label(name)
    if len(data) > limits.max_file_bytes:
        raise ClaimFileError(f"{shown}: {len(data)} bytes is over the limit of {limits.max_file_bytes} bytes")
    compressed = data.startswith(GZIP_MAGIC)
    if named_gz and not compressed:
        raise ClaimFileError(f"{shown}: named .gz but not gzip-compressed")
    return (_gunzip(shown, data, limits.max_decompressed_bytes) if compressed else data), compressed


def parse_unpacked(name: str, data: bytes, compressed: bool, limits: Limits = Limits()) -> ClaimFile:
    """The rows of a claim file's content (what `unpack` returned for it)."""
    fmt, _named_gz = detect_format(name)
    shown = label(name)
    _sniff(shown, fmt, data)
    if fmt == "parquet":
        frame, lines = _parquet(shown, data, limits.max_decompressed_bytes)
    else:
        text = _text(shown, data)
        frame, lines = _csv(shown, text) if fmt == "csv" else _jsonl(shown, text.decode())
    if frame.height == 0:
        raise ClaimFileError(f"{shown}: no claim rows (a header and nothing else)")
    rows = frame.select(
        pl.Series("line", lines, dtype=pl.Int64),
        *[pl.col(c).cast(pl.String).replace("", None).alias(c) if c in frame.columns
          else pl.lit(None, dtype=pl.String).alias(c) for c in CLAIM_COLUMNS],
    )
    _check_field_sizes(shown, rows)
    return ClaimFile(format=fmt, rows=rows, compressed=compressed)


def _check_field_sizes(shown: str, rows: pl.DataFrame) -> None:
    """ClaimFileError naming the first line and column holding a value over MAX_FIELD_BYTES (never the value)."""
    columns = [c for c, dtype in rows.schema.items() if dtype == pl.String]
    longest = rows.select(pl.col(columns).str.len_bytes().max()).row(0)
    if all(size is None or size <= MAX_FIELD_BYTES for size in longest):
        return
    too_long = pl.any_horizontal(pl.col(columns).str.len_bytes() > MAX_FIELD_BYTES)
    first = rows.filter(too_long).row(0, named=True)
    column = next(c for c in columns if first[c] is not None and len(first[c].encode()) > MAX_FIELD_BYTES)
    raise ClaimFileError(f"{shown}: line {first['line']}: the {column} value is {len(first[column].encode())} bytes "
                         f"long, over the limit of {MAX_FIELD_BYTES} bytes for a claim field")


# --- bytes ---------------------------------------------------------------------------------

def _gunzip(shown: str, data: bytes, cap: int) -> bytes:
    """Decompress every gzip member in bounded steps: a compression bomb is refused, never unpacked."""
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(rest, cap + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= cap:
                out += inflater.decompress(inflater.unconsumed_tail, cap + 1 - len(out))
        except zlib.error as error:
            raise ClaimFileError(f"{shown}: not a valid gzip file ({error})") from None
        if len(out) > cap:
            raise ClaimFileError(f"{shown}: decompresses to more than the limit of {cap} bytes "
                                 f"(unpacking stopped there)")
        if not inflater.eof:
            raise ClaimFileError(f"{shown}: gzip data is truncated")
        rest = inflater.unused_data
        # Zero padding after the data is ignored, as gzip itself does (tape and block writers add it).
        if not rest.strip(b"\x00"):
            return bytes(out)
        # Concatenated members (pigz, `cat a.gz b.gz`) are one file; anything else after the data is not.
        if not rest.startswith(GZIP_MAGIC):
            raise ClaimFileError(f"{shown}: {len(rest)} bytes of garbage after the gzip data")


def _sniff(shown: str, fmt: str, data: bytes) -> None:
    if fmt == "parquet":
        if not data.startswith(b"PAR1"):
            kind = next((what for magic, what in SIGNATURES if data.startswith(magic)), None)
            raise ClaimFileError(f"{shown}: not a Parquet file" + (f" ({kind})" if kind else ""))
        return
    for magic, what in SIGNATURES:
        if data.startswith(magic):
            raise ClaimFileError(f"{shown}: binary content: {what}, not {fmt.upper()} text")
    if data.startswith(b"PAR1"):
        raise ClaimFileError(f"{shown}: binary content: a Parquet file named as {fmt.upper()}")


def _text(shown: str, data: bytes) -> bytes:
    """The checked text, still as UTF-8 bytes (polars reads bytes), with every line end a line feed.

    Checked on the bytes with C-speed scans, not a regex over the decoded text: below 0x80 a UTF-8
    byte is always the ASCII character itself, so a control byte is a control character and a line
    feed a line feed, and line numbers counted on the bytes are the text's.
    """
    where = data.find(b"\x00")
    if where >= 0:
        line = data.count(b"\n", 0, where) + 1
        raise ClaimFileError(f"{shown}: binary content (NUL byte on line {line}, byte offset {where})")
    text = None
    if not data.isascii():  # ASCII is valid UTF-8; anything else is decoded once to prove it is
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as error:
            line, column = line_and_column(data, error.start)
            raise ClaimFileError(f"{shown}: not UTF-8: byte 0x{data[error.start]:02X} on line {line}, column {column} "
                                 f"(byte offset {error.start}); save the file as UTF-8") from None
        data = data.removeprefix(UTF8_BOM)
    controls = data.translate(None, NOT_CONTROL)  # the control bytes, in file order
    if controls:
        line = data.count(b"\n", 0, data.find(controls[:1])) + 1
        raise ClaimFileError(f"{shown}: binary content (control character {controls[0]:#04x} on line {line})")
    # str.isspace, not bytes.isspace, once there is more than ASCII: U+00A0 and U+3000 are blanks too.
    if not data or (text.isspace() if text is not None else data.isspace()):
        raise ClaimFileError(f"{shown}: the file is empty")
    # CRLF (Windows) and bare CR (old Mac) line ends are both line ends.
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


# --- columns -------------------------------------------------------------------------------

# A column name is shown in a refusal only when it looks like one (letters, spaces, underscores):
# a file without its header row has a row of claim values where the names should be, and those
# (client prime numbers, claim ids, dates) must not reach a message or a log. Others are shown by position.
HEADER_LIKE = re.compile(r"[A-Za-z][A-Za-z _]{0,39}")


COLUMNS_NAMED = 20


def column_labels(names: list[str], positions: list[int] | None = None) -> str:
    """Column names for a one-line message: a name that may be a value is given by its position."""
    def one(index: int, name: str) -> str:
        if name and HEADER_LIKE.fullmatch("".join(ch for ch in name if ch.isprintable())):
            return label(name)  # invisible characters (a second byte order mark) shown escaped
        where = positions[index] if positions else index + 1
        return f"(the column at position {where})"

    # Every name up to COLUMNS_NAMED (a claim file has 13 columns of its own: all of them missing is
    # named in full); past that, a file of another kind altogether: the first ones and a count.
    shown = [one(i, n) for i, n in enumerate(names[:COLUMNS_NAMED])]
    return ", ".join(shown) + (f" and {len(names) - COLUMNS_NAMED} more" if len(names) > COLUMNS_NAMED else "")


def _check_columns(shown: str, header: list[str]) -> list[str]:
    """The stripped header; ClaimFileError naming every missing, duplicate and unknown column."""
    cleaned = [h.strip() for h in header]
    if len(cleaned) == 1:
        for separator, what in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if separator in cleaned[0]:
                raise ClaimFileError(f"{shown}: the header is separated by {what}; claim files are comma-separated")
    if not set(cleaned) & set(CLAIM_COLUMNS):
        raise ClaimFileError(f"{shown}: the first line names none of the claim columns ({', '.join(CLAIM_COLUMNS[:3])}, "
                             f"...): a file without its header row?")
    position = {h: i for i, h in reversed(list(enumerate(cleaned, start=1)))}  # first position of each name
    problems = []
    duplicates = sorted({h for h in cleaned if cleaned.count(h) > 1 and h}, key=position.get)
    if duplicates:
        problems.append(f"duplicate columns: {column_labels(duplicates, [position[h] for h in duplicates])}")
    missing = [c for c in CLAIM_COLUMNS if c not in cleaned and c not in OPTIONAL_COLUMNS]
    if missing:
        problems.append(f"missing columns: {column_labels(missing)}")
    unknown = [h for h in dict.fromkeys(cleaned) if h not in CLAIM_COLUMNS and h]
    if unknown:
        problems.append(f"unknown columns: {column_labels(unknown, [position[h] for h in unknown])}")
    unnamed = [str(i) for i, h in enumerate(cleaned, start=1) if not h]
    if unnamed:
        problems.append(f"columns without a name at position {', '.join(unnamed[:8])}")
    if problems:
        raise ClaimFileError(f"{shown}: " + "; ".join(problems))
    return cleaned


# --- CSV -----------------------------------------------------------------------------------

def _csv(shown: str, data: bytes) -> tuple[pl.DataFrame, list[int] | pl.Series]:
    """The shape nearly every exporter writes goes through polars in one pass; any other file (a quote
    or comma inside a quoted field, a quoted line break, a blank line among the rows, a broken file)
    is read record by record by the csv module, which says exactly what is wrong with a broken file.

    The polars reader takes only files that the record-by-record reader would read to the same rows,
    so which of the two reads a file never shows (tests/test_intake_reader.py); it exists for speed
    (0.4 s against 2.8 s for a million claims).
    """
    return _csv_plain(shown, data) or _csv_quoted(shown, data.decode())


# One RFC 4180 record on one line: fields plain or fully quoted (with "" for a quote inside).
QUOTED_FIELD = r'"(?:[^"]|"")*"'
FIELD = rf'(?:[^",]*|{QUOTED_FIELD})'
ONE_LINE_RECORD = rf"^{FIELD}(?:,{FIELD})*$"
# The end of the file is looked at this far back for blank lines to leave out (Excel's `,,,,` rows).
TAIL_BYTES = 64 * 1024


def _csv_plain(shown: str, data: bytes) -> tuple[pl.DataFrame, pl.Series] | None:
    """The file most exporters write, read in one polars pass with quoting off: a good header on line 1,
    then rows of exactly the header's fields, no blank line among them (blank lines at the end are
    left out), and quotes only around whole fields with no quote or comma inside (`""`, `"OR526"`).

    Quoting off, every comma separates fields and every field arrives as written; C-speed counts over
    the bytes then prove the file is that shape (commas: every row has the header's fields; quotes:
    every quote is the first or last character of a field that starts and ends with one), and taking
    the two quotes off gives exactly what the record-by-record reader would. None for any other file.
    """
    end = data.find(b"\n")
    if end < 0:
        return None
    head = pl.Series([data[:end].decode()])
    if head.str.contains(BLANK_LINE).item() or not head.str.contains(ONE_LINE_RECORD).item():
        return None
    # polars drops a U+FEFF where its reading starts: `\ufeff"C1"` would pass for a quoted field.
    if data.startswith(UTF8_BOM, end + 1):
        return None
    try:
        header = _check_columns(shown, next(csv.reader([head.item()])))
    except (ClaimFileError, csv.Error):
        return None  # refused by the readers below, with their exact message
    # Rows end at the last line that is not blank; the blank lines after it (only spaces, tabs and
    # commas) would be left out anyway.
    tail = data[-TAIL_BYTES:]
    kept = tail.rstrip(b" \t\n,")
    if not kept and len(tail) < len(data):
        return None
    stop = data.find(b"\n", len(data) - len(tail) + len(kept))
    stop = len(data) if stop < 0 else stop
    if stop <= end:
        return None
    rows = data.count(b"\n", end + 1, stop) + 1
    try:
        frame = pl.read_csv(data, has_header=False, skip_lines=1, n_rows=rows, quote_char=None,
                            schema={name: pl.String for name in header}, empty_string_is_null=False)
    except pl.exceptions.PolarsError:
        return None  # a row with more fields than the header, for one
    # polars refuses a row with more fields than the header (but for a last line with no line feed that
    # ends in a comma: counted here), so with this many commas every row has exactly the header's fields.
    commas = len(header) - 1
    if (frame.height != rows or data.count(b",", data.rfind(b"\n", 0, stop) + 1, stop) != commas
            or data.count(b",", end + 1, stop) != commas * rows):
        return None
    blank = pl.col(header[0]).str.contains(r"^\s*$")  # a blank line's first field is blank too
    if frame.select(blank.any()).item() and frame.filter(blank).select(
            pl.all_horizontal(pl.all().str.contains(r"^\s*$")).any()).item():
        return None
    quotes = data.count(b'"', end + 1, stop)
    if quotes:
        frame = _unquote(frame, quotes)
        if frame is None:
            return None
    return frame, pl.int_range(2, rows + 2, dtype=pl.Int64, eager=True)


def _unquote(frame: pl.DataFrame, quotes: int) -> pl.DataFrame | None:
    """The fields without the quotes around them, when those are all the file's quotes (`quotes` of them);
    None when a quote is anywhere else (inside a field, or on one side of it only)."""
    # Exporters that quote only empty fields write `""`: matched whole, far cheaper than the general case.
    empty = frame.select(pl.col(name).eq('""').sum() for name in frame.columns).row(0)
    if 2 * sum(empty) == quotes:
        return frame.with_columns(pl.col(name).replace('""', "") for name, n in zip(frame.columns, empty) if n)
    quoted = {name: pl.col(name).str.starts_with('"') & pl.col(name).str.ends_with('"')
              & (pl.col(name).str.len_bytes() >= 2) for name in frame.columns}
    counts = frame.select(q.sum() for q in quoted.values()).row(0)
    if 2 * sum(counts) != quotes:
        return None
    return frame.with_columns(
        pl.when(quoted[name]).then(pl.col(name).str.slice(1, pl.col(name).str.len_chars() - 2))
        .otherwise(pl.col(name)).alias(name)
        for name, n in zip(frame.columns, counts) if n)


def _wrong_count(shown: str, line: int, got: int, want: int) -> None:
    raise ClaimFileError(f"{shown}: line {line} has {got} fields but the header has {want} "
                         f"(every row must have the header's fields)")


def _csv_quoted(shown: str, text: str) -> tuple[pl.DataFrame, list[int]]:
    """Quoted fields (RFC 4180): read record by record, remembering the line each record starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    frames: list[pl.DataFrame] = []
    columns: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for record in reader:
            if not any(field.strip() for field in record):
                start = reader.line_num + 1
                continue
            if header is None:
                header = _check_columns(shown, record)
                columns = [[] for _ in header]
            else:
                if len(record) != len(header):
                    _wrong_count(shown, start, len(record), len(header))
                for column, value in zip(columns, record):
                    column.append(value)
                lines.append(start)
                if len(columns[0]) == CHUNK:
                    frames.append(_frame(header, columns))
                    columns = [[] for _ in header]
            start = reader.line_num + 1
    except csv.Error as error:
        reason = str(error)
        if "unexpected end of data" in reason or "EOF" in reason:
            raise ClaimFileError(f"{shown}: the quoted field opened on line {start} is never closed") from None
        if "field larger than field limit" in reason:
            raise ClaimFileError(f"{shown}: line {start}: a field longer than {csv.field_size_limit()} characters") \
                from None
        raise ClaimFileError(f"{shown}: line {reader.line_num}: broken quoting ({reason})") from None
    if header is None:
        raise ClaimFileError(f"{shown}: the file is empty")
    frames.append(_frame(header, columns))
    return pl.concat(frames), lines


def _frame(header: list[str], columns: list[list[str | None]]) -> pl.DataFrame:
    return pl.DataFrame({name: values for name, values in zip(header, columns)},
                        schema={name: pl.String for name in header})


# --- JSON Lines ----------------------------------------------------------------------------

class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    record: dict = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _jsonl(shown: str, text: str) -> tuple[pl.DataFrame, list[int]]:
    if text.lstrip().startswith("["):
        raise ClaimFileError(f"{shown}: a JSON array; claim files in JSON are JSON Lines (one claim object per line)")
    frames: list[pl.DataFrame] = []
    records: list[dict] = []
    lines: list[int] = []
    keys: dict[str, None] = {}
    # Numbers are kept as their exact text: a claim's units and rate never pass through a binary float.
    decoder = json.JSONDecoder(object_pairs_hook=_object, parse_float=str, parse_int=str, parse_constant=str)
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = decoder.decode(raw)
        except RecursionError:
            raise ClaimFileError(f"{shown}: line {number} is nested too deeply (a claim is one flat JSON object "
                                 f"per line)") from None
        except _DuplicateKey as error:
            raise ClaimFileError(f"{shown}: line {number}: duplicate columns: {column_labels([str(error)])}") from None
        except json.JSONDecodeError as error:
            raise ClaimFileError(f"{shown}: line {number} is not JSON ({error.msg.removesuffix(' at')} at column "
                                 f"{error.colno})") from None
        if not isinstance(record, dict):
            raise ClaimFileError(f"{shown}: line {number} is not a JSON object")
        stripped = {key.strip(): value for key, value in record.items()}
        if len(stripped) != len(record):
            repeated = sorted({k.strip() for k in record if list(map(str.strip, record)).count(k.strip()) > 1})
            raise ClaimFileError(f"{shown}: line {number}: duplicate columns: {column_labels(repeated)}")
        record = stripped
        new_keys = [key for key in record if key not in keys]
        if new_keys:
            unknown = [key for key in new_keys if key not in CLAIM_COLUMNS]
            if unknown:
                order = list(record)  # a key that may be a value is named by its place in the object
                raise ClaimFileError(f"{shown}: line {number}: unknown columns: "
                                     f"{column_labels(unknown, [order.index(key) + 1 for key in unknown])}")
            keys.update(dict.fromkeys(new_keys))
        for key, value in record.items():
            if isinstance(value, (dict, list)):
                kind = "an object" if isinstance(value, dict) else "an array"
                raise ClaimFileError(f"{shown}: line {number}: column {column_labels([key], [list(record).index(key) + 1])} "
                                     f"holds {kind}, not a single value")
        records.append({key: _json_text(value) for key, value in record.items()})
        lines.append(number)
        if len(records) == CHUNK:
            frames.append(_records(records))
            records = []
    if not lines:
        raise ClaimFileError(f"{shown}: no claim rows")
    _check_columns(shown, list(keys))
    frames.append(_records(records))
    return pl.concat(frames, how="vertical"), lines


def _json_text(value: object) -> str | None:
    """A scalar JSON value as text (numbers arrive as their exact text already)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _records(records: list[dict]) -> pl.DataFrame:
    schema = {c: pl.String for c in CLAIM_COLUMNS}
    if not records:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(records, schema=schema)


# --- Parquet -------------------------------------------------------------------------------

def _parquet(shown: str, data: bytes, cap: int) -> tuple[pl.DataFrame, list[int]]:
    try:
        schema = pl.read_parquet_schema(io.BytesIO(data))
        rows = pl.scan_parquet(io.BytesIO(data)).select(pl.len()).collect().item()
    except Exception as error:  # polars raises several kinds for a corrupt file
        raise ClaimFileError(f"{shown}: not a readable Parquet file ({_first_line(error)})") from None
    _check_columns(shown, list(schema))
    # Parquet is compressed inside: its row count is known before anything is decoded.
    if rows * MIN_ROW_BYTES > cap:
        raise ClaimFileError(f"{shown}: {rows} rows is over what the decompressed-size limit of {cap} bytes allows "
                             f"(refused before decoding)")
    for column, dtype in schema.items():
        if dtype.is_nested() or dtype == pl.Object:
            raise ClaimFileError(f"{shown}: column {label(column)} holds {dtype}, not single values")
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as error:
        raise ClaimFileError(f"{shown}: not a readable Parquet file ({_first_line(error)})") from None
    try:
        frame = frame.select([_parquet_text(column, dtype) for column, dtype in frame.schema.items()])
    except Exception as error:
        raise ClaimFileError(f"{shown}: a column cannot be read as text ({_first_line(error)})") from None
    size = frame.select(pl.sum_horizontal(pl.all().str.len_bytes().sum())).item() if frame.height else 0
    if size and size > cap:
        raise ClaimFileError(f"{shown}: decompresses to more than the limit of {cap} bytes")
    # A Parquet row is numbered as the CSV line it would be on (header = line 1).
    return frame, list(range(2, frame.height + 2))


def _parquet_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Typed Parquet values as the text a CSV would hold; a value with more precision than the claim
    field allows keeps it, so the record checks reject the row rather than a silent truncation."""
    col = pl.col(column)
    if dtype == pl.Date:
        return col.dt.strftime("%Y-%m-%d")
    if dtype == pl.Time:
        return pl.when(col.dt.second() + col.dt.nanosecond() == 0).then(col.dt.strftime("%H:%M")) \
            .otherwise(col.cast(pl.String)).alias(column)
    if isinstance(dtype, pl.Datetime):
        midnight = (col.dt.hour() + col.dt.minute() + col.dt.second() + col.dt.nanosecond()) == 0
        return pl.when(midnight).then(col.dt.strftime("%Y-%m-%d")).otherwise(col.cast(pl.String)).alias(column)
    return col.cast(pl.String)


def line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """The line (from 1) and the column (in bytes, from 1) of the byte at `offset`."""
    return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
