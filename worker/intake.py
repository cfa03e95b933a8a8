"""Claim intake around `submit`: acknowledgements of posted files, and the drop-folder sweep.

Acknowledgement (in the spirit of X12 999/277CA): for one batch, how many claim lines were accepted
for adjudication and how many rejected, and every rejected line with its field and reason. Before
the batch's run the rejections are the record checks (INVALID_RECORD), worked out from the claims as
stored; after the run they are the rejected outcomes, which add DUPLICATE_CLAIM_ID.

Drop folder: `sweep(app, folder)` submits every complete file that appeared in `folder` and moves it
to `folder/accepted/` or `folder/rejected/` with its acknowledgement beside it (`NAME.ack.json`).
A file is taken only once its size and times have not changed for a settle period, never while its
name marks it as unfinished (dotfiles, *.part, *.tmp, ...), and it is claimed by an atomic rename
into `folder/.processing/` first, so two sweeps running at the same moment never both submit it.
The command line (`adjudicate watch`) and a Celery beat task both just call `sweep`.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import socket
import stat as kinds
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl
from sqlalchemy.exc import IntegrityError

from adjudication import reasons as R
from adjudication.claim_file import FORMATS, MAX_FIELD_BYTES, ClaimFileError, label
from adjudication.claims import FIRST_SERVICE_DAY, ID_FIELDS, LAST_SERVICE_DAY, MAX_ID_CHARS, parse_claims
from adjudication.decimals import SCALE
from adjudication.rules import Rules
from worker import service

log = logging.getLogger("adjudication.intake")

# --- acknowledgements ----------------------------------------------------------------------

ACK_CSV_SCHEMA = {
    "kind": pl.String, "batch_id": pl.String, "file_name": pl.String, "received_date": pl.String,
    "status": pl.String, "claims": pl.Int64,
    "accepted": pl.Int64, "rejected": pl.Int64, "line": pl.Int64, "claim_id": pl.String, "field": pl.String,
    "reason": pl.String, "carc": pl.String, "detail": pl.String, "value": pl.String,
}
WITHDRAWN_NOTE = ("withdrawn by an operator before any run: no claim of it is adjudicated; rejections shown are "
                  "the record checks")
QUEUED_NOTE = ("not adjudicated yet: rejections shown are the record checks; a claim_id already held "
               "by another claim (DUPLICATE_CLAIM_ID) is found by the run")


def acknowledgement(engine, batch_id: str, rules: Rules) -> dict:
    """The acknowledgement of one batch as a JSON-ready dict; UserError for an unknown batch."""
    batch, claims = service.batch_claims(engine, batch_id)
    adjudicated = pl.col("status").is_not_null()
    # Lazily up to the rejected rows: a big file's parse is not held whole beside its texts.
    rejected_rows = parse_claims(claims.lazy(), rules).with_columns(
        codes=pl.when(adjudicated & (pl.col("status") == R.REJECTED)).then(pl.col("reasons").str.split(";"))
        .when(adjudicated).then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("invalid"))
    ).filter(pl.col("codes").list.len() > 0).collect()
    rejections = []
    for row in rejected_rows.iter_rows(named=True):
        for reason in row["codes"]:
            code, _, detail = reason.partition(":")
            rejections.append(_rejection(row, code, detail, rules))
    withdrawn = batch["status"] == "withdrawn"
    queued = not withdrawn and claims.height and claims.get_column("status").is_null().any()
    document = {
        "batch_id": batch["batch_id"],
        "file_name": batch["file_name"],
        "file_format": batch["file_format"],
        "submitted_at": _iso(batch["submitted_at"]),
        "received_date": str(batch["received_date"]),
        "status": "withdrawn" if withdrawn else "queued" if queued else "adjudicated",
        "claims": claims.height,
        "accepted": claims.height - rejected_rows.height,
        "rejected": rejected_rows.height,
        "rejections": rejections,
    }
    if queued:
        document["note"] = QUEUED_NOTE
    if withdrawn:
        document["note"] = WITHDRAWN_NOTE
    return document


def ack_frame(document: dict) -> pl.DataFrame:
    """The acknowledgement as one table: a `batch` row with the counts, then one `rejected` row per
    rejected field (a line failing two fields has two rows)."""
    summary = {"kind": "batch", **{k: document[k] for k in ("batch_id", "file_name", "received_date", "status",
                                                            "claims", "accepted", "rejected")}}
    details = [{"kind": "rejected", "batch_id": document["batch_id"], **item} for item in document["rejections"]]
    return pl.DataFrame([summary, *details], schema=ACK_CSV_SCHEMA)


def _rejection(row: dict, code: str, detail: str, rules: Rules) -> dict:
    if code == R.INVALID_RECORD and detail:
        field_name = detail
        text = _explain(field_name, row)
    elif code == R.DUPLICATE_CLAIM_ID:
        field_name = "claim_id"
        text = "this claim_id is already held by a claim that was not rejected (send a new id)"
    else:
        field_name = detail
        text = ""
    value = row.get(field_name) if field_name in row and field_name != "client_prime" else None
    return {"line": row["line"], "claim_id": _bounded(row["claim_id"]), "field": field_name, "reason": code,
            "carc": rules.carc.get(code, ""), "detail": text, "value": _bounded(value)}


def _bounded(value: str | None, limit: int = MAX_FIELD_BYTES) -> str | None:
    """A posted value as an acknowledgement echoes it: whole up to the field limit (a batch stored
    before that limit may hold longer ones), else its start and its length."""
    if value is None or len(value) <= limit:
        return value
    return f"{value[:64]}... ({len(value)} characters)"


def _explain(field_name: str, row: dict) -> str:
    """Why a field failed the record checks, in words a billing clerk can act on."""
    value = row.get(field_name)
    if field_name == "start_time" or field_name == "end_time":
        other = "end_time" if field_name == "start_time" else "start_time"
        if value is None:
            if row.get(other) is not None:
                return f"missing: {other} is given, so both times are needed"
            return f"missing: {row.get('procedure_code')} is checked for overlap in time, so its times are required"
        minutes = row["start_min" if field_name == "start_time" else "end_min"]
        if minutes is None:
            return "not a time HH:MM (00:00 to 23:59)" if field_name == "start_time" \
                else "not a time HH:MM (00:00 to 24:00)"
        return "not after start_time (a shift past midnight is billed as two lines)"
    if value is None:
        return "missing"
    if field_name == "service_date":
        return f"not a date YYYY-MM-DD from {FIRST_SERVICE_DAY} to {LAST_SERVICE_DAY}"
    if field_name in ID_FIELDS:
        return f"not an id: 1 to {MAX_ID_CHARS} printable ASCII characters"
    if field_name == "staff_id":
        return f"longer than {MAX_ID_CHARS} characters"
    if field_name in ("units", "billed_rate"):
        scaled = row["units_s" if field_name == "units" else "rate_s"]
        if scaled is None:
            return "not a decimal number (up to 5 digits, a point and up to 4 places)"
        if field_name == "units" and scaled <= 0:
            return "not positive"
        if field_name == "units" and row.get("start_min") is not None and row.get("end_min") is not None:
            hours = Decimal(row["end_min"] - row["start_min"]) / 60
            return (f"{Decimal(scaled) / SCALE:f} hours differ from the billed time span of "
                    f"{hours.quantize(Decimal('0.01')).normalize():f} hours by more than 0.01")
        return "not valid"
    return "not valid"


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


# --- drop folder ---------------------------------------------------------------------------

PROCESSING = ".processing"
ACCEPTED = "accepted"
REJECTED = "rejected"
ACK_SUFFIX = ".ack.json"
# Names that mark a file as still on its way (uploads, editors, browsers, office lock files).
UNFINISHED_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".filepart", ".crdownload", ".download", ".swp", "~",
                       ACK_SUFFIX)


@dataclass(frozen=True)
class SweepResult:
    """One file a sweep handled: accepted (as a batch; some of its lines may be rejected) or refused
    (the file as a whole, nothing stored)."""

    file: str
    result: str  # accepted | refused
    message: str
    batch_id: str | None = None
    moved_to: Path | None = None
    ack: Path | None = None
    acknowledgement: dict = field(default_factory=dict, repr=False)

    def line(self) -> str:
        """One line for the operator: what happened and where the file went."""
        where = f" -> {self.moved_to.parent.name}/{label(self.moved_to.name)}" if self.moved_to else ""
        named = label(self.file) + ":"
        message = self.message if self.message.startswith(named) else f"{named} {self.message}"
        return f"{self.result} {message}{where}"


def waiting(entry: os.DirEntry) -> bool:
    """A name that says the file is not a finished claim file (or not one at all)."""
    name = entry.name
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(UNFINISHED_SUFFIXES)


def sweep(app, folder: Path, *, settle_seconds: float | None = None, stale_seconds: float | None = None,
          should_stop: Callable[[], bool] = lambda: False, left: list[str] | None = None) -> list[SweepResult]:
    """Submit every complete file in `folder`, oldest first; returns what happened to each file taken.
    `left`, when given, receives the names of the files left because they were still being written
    (changed within the settle time, or named as unfinished: *.part, *.tmp, ...).

    `app` is a worker.bootstrap.App (engine, rules, limits, settings). Files still being written, or
    taken by a concurrent sweep, are left alone. A database error stops the sweep (after putting the
    file it was handling back) and is raised: the file is not to blame.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise service.UserError(f"{folder} is not a folder")
    settings = app.settings
    settle = settings.drop_settle_seconds if settle_seconds is None else settle_seconds
    stale = settings.drop_stale_seconds if stale_seconds is None else stale_seconds
    for sub in (PROCESSING, ACCEPTED, REJECTED):
        (folder / sub).mkdir(exist_ok=True)
    _recover(folder, stale)
    now = time.time()
    candidates = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue  # sub-folders (accepted/, rejected/, ...) are not claim files
            if waiting(entry):
                if left is not None and entry.name.lower().endswith(UNFINISHED_SUFFIXES) \
                        and not entry.name.startswith((".", "~$")) and not entry.name.endswith(ACK_SUFFIX):
                    left.append(entry.name)
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # taken by another sweep meanwhile
            # Any write moves mtime, and ctime cannot be set back by a copying tool: both must be settled.
            if now - max(stat.st_mtime, stat.st_ctime) < settle:
                log.debug("drop folder: %s still settling", entry.name)
                if left is not None:
                    left.append(entry.name)
                continue
            candidates.append((stat.st_mtime, entry.name, stat))
    results = []
    for _mtime, name, stat in sorted(candidates):
        if should_stop():
            break
        result = _take(app, folder, name, stat)
        if result is not None:
            results.append(result)
    return results


def _take(app, folder: Path, name: str, seen: os.stat_result) -> SweepResult | None:
    token = folder / PROCESSING / f"{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:12]}"
    token.mkdir()
    claimed = token / name
    try:
        os.rename(folder / name, claimed)  # atomic: of two sweeps, exactly one gets the file
    except FileNotFoundError:
        token.rmdir()
        if _held_elsewhere(folder, name, seen):
            return None  # taken by a concurrent sweep: its result is reported there
        log.warning("drop folder: %s vanished before it could be read", _shown(name))
        return _refuse(folder, name, claimed, "vanished before it could be read (removed or moved away after the "
                       "sweep listed it); nothing stored")
    except OSError as error:  # the file cannot be moved (immutable, not the sweep's own in a sticky folder, ...)
        token.rmdir()
        if _not_the_files_fault(error):
            raise
        log.warning("drop folder: %s cannot be taken (%s)", _shown(name), error.strerror or type(error).__name__)
        return SweepResult(name, "refused", f"cannot be moved out of the folder "
                           f"({error.strerror or type(error).__name__}): left where it is, not read")
    try:
        if not kinds.S_ISREG(seen.st_mode):  # never followed nor opened: a link may point anywhere
            return _refuse(folder, name, claimed, f"is {_kind(seen.st_mode)}, not a file: not read")
        try:
            data = _read_settled(claimed, seen, app.limits.max_file_bytes)
        except OSError as error:  # unreadable, or vanished since it was claimed
            if _not_the_files_fault(error):
                raise
            return _refuse(folder, name, claimed, f"cannot be read ({error.strerror or type(error).__name__})")
        if data is _CHANGED:
            _put_back(claimed, folder / name)
            log.info("drop folder: %s changed while being taken; left for the next sweep", _shown(name))
            return None
        try:
            return _submit(app, folder, name, data, seen.st_size, claimed)
        except Exception as error:  # noqa: BLE001 - one file must not stop the sweep
            if _not_the_files_fault(error):
                raise
            log.warning("drop folder: %s could not be processed (%s)", _shown(name), type(error).__name__)
            return _refuse(folder, name, claimed, f"could not be processed ({type(error).__name__})")
    except BaseException:
        _put_back(claimed, folder / name)
        raise
    finally:
        try:
            token.rmdir()
        except OSError:
            pass


def _held_elsewhere(folder: Path, name: str, seen: os.stat_result) -> bool:
    """Whether the file listed as `seen` is held by another sweep: claimed into its .processing
    folder, placed in accepted/ or rejected/, or put back under its name. Looked up by inode along
    the way a file moves (a directory listing carries the inodes), then by size and mtime, which a
    rename keeps (the inode of a removed file is soon another file's)."""
    def same(path) -> bool:
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_ino, now.st_size, now.st_mtime_ns) == (seen.st_ino, seen.st_size, seen.st_mtime_ns)

    for place in [*(folder / PROCESSING).iterdir(), folder / ACCEPTED, folder / REJECTED]:
        try:
            with os.scandir(place) as entries:
                if any(entry.inode() == seen.st_ino and same(entry.path) for entry in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            continue  # a token folder removed meanwhile
    return same(folder / name)


def _not_the_files_fault(error: BaseException) -> bool:
    """The database or the disk failed, not the file: it goes back to the folder for a later sweep."""
    from sqlalchemy.exc import SQLAlchemyError

    from worker.errors import Unavailable

    return isinstance(error, (SQLAlchemyError, Unavailable)) or (
        isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS))


def _refuse(folder: Path, name: str, claimed: Path, message: str) -> SweepResult:
    """A file nothing can be done with goes to rejected/ (when it is still there) with its acknowledgement."""
    document = {"file": name, "result": "refused", "batch_id": None,
                "refused_at": _iso(dt.datetime.now(dt.timezone.utc)), "error": f"{label(name)}: {message}"}
    moved, ack = _place(claimed if os.path.lexists(claimed) else None, folder / REJECTED, name, document)
    return SweepResult(name, "refused", message, None, moved, ack, document)


def _kind(mode: int) -> str:
    if kinds.S_ISLNK(mode):
        return "a symbolic link"
    if kinds.S_ISFIFO(mode):
        return "a named pipe"
    if kinds.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _shown(name: str) -> str:
    return label(name) if len(name) <= 80 else label(name[:77]) + "..."


_CHANGED = object()


def _read_settled(path: Path, seen: os.stat_result, max_bytes: int):
    """The file's content; None when it is over the size limit (refused unread); _CHANGED when a
    writer is still at it (its size or mtime moved since the sweep looked), or it is not the file
    listed (replaced meanwhile by another file or a pipe, whose opening does not wait for a writer
    here; `seen` is a regular file, so another inode is all it takes). A link is never followed: its
    opening fails (ELOOP) and the caller refuses it as unreadable."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as handle:
        before = os.fstat(handle.fileno())
        if (before.st_ino, before.st_size, before.st_mtime_ns) != (seen.st_ino, seen.st_size, seen.st_mtime_ns):
            return _CHANGED
        if before.st_size > max_bytes:
            return None
        data = handle.read(max_bytes + 1)
        after = os.fstat(handle.fileno())
    if len(data) != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return _CHANGED
    return data


def _submit(app, folder: Path, name: str, data: bytes | None, size: int, claimed: Path) -> SweepResult:
    now = _iso(dt.datetime.now(dt.timezone.utc))
    # A name that is not UTF-8 (its bytes kept by the file system as surrogates) cannot be stored.
    stored_name = name.encode("utf-8", "replace").decode("utf-8")
    try:
        if data is None:
            raise service.UserError(f"{name}: {size} bytes is over the limit of {app.limits.max_file_bytes} bytes")
        try:
            submitted = service.submit_bytes(app.engine, stored_name, data, app.rules, app.limits)
        except IntegrityError:
            # The same content was stored by a concurrent submit in the meantime: now it is a no-op.
            submitted = service.submit_bytes(app.engine, stored_name, data, app.rules, app.limits)
    except (ClaimFileError, service.UserError) as error:
        message = str(error)
        document = {"file": name, "result": "refused", "batch_id": None, "refused_at": now, "error": message}
        moved, ack = _place(claimed, folder / REJECTED, name, document)
        log.info("drop folder: %s refused: %s", _shown(name), message)
        return SweepResult(name, "refused", message, None, moved, ack, document)
    document = {"file": name, "result": "accepted", "new": submitted.new, "received_at": now,
                **acknowledgement(app.engine, submitted.batch_id, app.rules)}
    if not submitted.new:
        document["note"] = f"already submitted as batch {submitted.batch_id}: nothing changed"
    moved, ack = _place(claimed, folder / ACCEPTED, name, document)
    message = (f"batch {submitted.batch_id} ({document['claims']} claims, {document['rejected']} rejected)"
               if submitted.new else f"already submitted as batch {submitted.batch_id}, nothing changed")
    log.info("drop folder: %s accepted as batch %s", _shown(name), submitted.batch_id)
    return SweepResult(name, "accepted", message, submitted.batch_id, moved, ack, document)


def _place(claimed: Path | None, target_dir: Path, name: str, document: dict) -> tuple[Path | None, Path]:
    """Move the file into `target_dir` with its acknowledgement beside it (only the acknowledgement
    when the file is gone). The acknowledgement's name is reserved first (exclusive create), so two
    sweeps never write over each other's files: a name already used gets a number (claims.csv,
    claims.2.csv, ...). A name the file system cannot take with `.ack.json` after it (too long) is
    replaced by a safe one, the original name kept in the acknowledgement."""
    stem, suffix = _split_name(name if _fits(name) else _safe_name(name))
    for number in range(1, 100_000):
        candidate = stem + suffix if number == 1 else f"{stem}.{number}{suffix}"
        ack = target_dir / (candidate + ACK_SUFFIX)
        if os.path.lexists(target_dir / candidate):
            continue
        try:
            fd = os.open(ack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, default=str)
                handle.write("\n")
        except BaseException:  # a full disk: no empty acknowledgement left to hold the name
            ack.unlink(missing_ok=True)
            raise
        if claimed is None:
            return None, ack
        destination = target_dir / candidate
        os.rename(claimed, destination)
        return destination, ack
    raise service.UserError(f"{target_dir}: no free name for {_shown(name)}")


NAME_MAX = 255  # bytes in one file name, on the file systems a drop folder lives on


def _fits(name: str) -> bool:
    """The name, numbered and with `.ack.json` after it, is a valid file name."""
    return len(os.fsencode(name)) + len(".99999" + ACK_SUFFIX) <= NAME_MAX


def _safe_name(name: str) -> str:
    """A short name standing for `name`: its start in safe characters, a digest, its format suffix."""
    stem, suffix = _split_name(name)
    suffix = suffix if suffix.isascii() and len(suffix) <= 16 else ""
    start = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in stem)[:64]
    return f"{start}~{hashlib.sha256(os.fsencode(name)).hexdigest()[:12]}{suffix}"


def _split_name(name: str) -> tuple[str, str]:
    lower = name.lower()
    for suffix in sorted((s + gz for s in FORMATS for gz in (".gz", "")), key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if stem else (name, "")


def _put_back(claimed: Path, original: Path) -> None:
    """Return a claimed file to the folder for a later sweep (never over a newer file of that name)."""
    if os.path.lexists(claimed) and not os.path.lexists(original):
        try:
            os.rename(claimed, original)
        except FileNotFoundError:
            pass


def _recover(folder: Path, stale_seconds: float) -> None:
    """Files left in .processing by a sweep that died (its process is gone, or it has been longer than
    the stale period) go back to the folder; submitting them again is harmless (same content, same batch)."""
    host = socket.gethostname()
    now = time.time()
    for token in (folder / PROCESSING).iterdir():
        if not token.is_dir():
            continue
        owner_host, _, rest = token.name.partition("~")
        pid_text = rest.partition("~")[0]
        try:
            age = now - token.stat().st_mtime
        except FileNotFoundError:
            continue
        dead = owner_host == host and pid_text.isdigit() and not _alive(int(pid_text))
        if not dead and age < stale_seconds:
            continue
        for claimed in list(token.iterdir()):
            _put_back(claimed, folder / claimed.name)
            log.warning("drop folder: %s recovered from an interrupted sweep", claimed.name)
        try:
            token.rmdir()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
