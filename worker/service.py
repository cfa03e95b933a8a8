"""The product's use cases: each opens one transaction, calls the domain, and stores the result.

The command line and the Celery tasks call these; nothing here knows about either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from adjudication import reasons as R
from adjudication.claim_file import ClaimFile, ClaimFileError, Limits, parse_unpacked, unpack
from adjudication.claims import CLAIM_COLUMNS, fields_to_keep
from adjudication.engine import Decider, check_records, crowded, decide
from adjudication.reference import merge
from adjudication.rules import Rules
from worker.files import read_reference_dir
from worker.store import repository
from worker.store.repository import EXPORT_SCHEMA, OutcomeFilter, Queue, Repository, queue_clients, run_state
from worker.store.unit_of_work import UnitOfWork, unit_of_work
from worker import access, audit, poison, runs
from worker.errors import Unavailable, UserError  # noqa: F401 (re-exported: adapters catch service.UserError, service.Unavailable)

log = logging.getLogger("adjudication")

# Where a use case keeps state: the database (an Engine: each use case opens a SqlUnitOfWork on it), or
# a unit of work given whole (tests' fakes).
Store = Engine | UnitOfWork
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _quiet(_stage: str, _done: int, _total: int) -> None:
    return None


def upgrade_schema(engine: Engine) -> None:
    from worker.store.database import upgrade

    upgrade(engine)


def seal_audit(engine: Engine, owner: str) -> str:
    """Hand the audit to a role of its own (PostgreSQL, worker.store.database.seal_audit); audited.
    Returns what to tell the operator."""
    from worker.store.database import SealRefused, seal_audit as hand_over

    try:
        app = hand_over(engine, owner)
    except SealRefused as error:
        raise UserError(str(error)) from None
    with unit_of_work(engine) as repo:
        repo.audit(SYSTEM, "db.seal-audit", f"owner={owner} app={app}", "")
    return f"the audit belongs to role {owner}; role {app} may read it and append to it, not change it"


# --- reference -----------------------------------------------------------------------------

# The actor of what no operator does: the nightly run, reference loads (the audit also records the
# OS user and host).
SYSTEM = "system"


def load_reference(engine: Store, folder: Path, rules: Rules | None = None) -> dict[str, int]:
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    loaded = read_reference_dir(folder)
    if not loaded:
        raise UserError(f"{folder} holds none of providers.csv, plans.csv, enrollments.csv, spas.csv")
    counts = {name: len(rows) for name, rows in loaded.items()}
    with unit_of_work(engine) as repo:
        repo.lock("reference load")
        # Only the stored rows the load could conflict with; raises before anything is written.
        merge(repo.reference_set(loaded), loaded, rules)
        repo.save_reference(loaded)
        # Rates and units change payments: every load is in the audit trail (by the OS user and host
        # it records; a load is a data feed, like `submit`, not an operator's action: SPEC 6).
        repo.audit(SYSTEM, "reference.load", " ".join(f"{name}={n}" for name, n in counts.items()), "")
    log.info("reference loaded: %s", counts)
    return counts


# --- submit --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Submitted:
    batch_id: str
    new: bool
    claims: int
    rejected_at_intake: int
    status: str = "queued"  # of the batch; an earlier submission's may be adjudicated or withdrawn


def batch_id_for(content_hash: str) -> str:
    return "B" + content_hash[:16]


Vet = Callable[[ClaimFile], None]  # raises to refuse a file once read, before anything is stored


def submit(engine: Store, path: Path, rules: Rules, limits: Limits, progress: Progress = _quiet, *,
           name: str | None = None, submitter: str | None = None, vet: Vet | None = None, received: dt.date | None = None) -> Submitted:
    """Queue a claim file as one batch; the same content again is a no-op returning the same id.

    name: the file's name when `path` is a temporary copy (the HTTP service); submitter: who posted
    it over HTTP; vet: a further check of a new file's rows (the HTTP submitter's providers); received: the batch's
    received date (TIMELY_FILING counts from it), default today (local time)."""
    name = name or path.name
    try:
        if path.stat().st_size > limits.max_file_bytes:  # checked before anything is read
            raise UserError(f"{name}: {path.stat().st_size} bytes is over the limit of "
                            f"{limits.max_file_bytes} bytes")
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    return submit_bytes(engine, name, data, rules, limits, progress, submitter=submitter, vet=vet,
                        received=received)


def _store_batch(engine: Store, name: str, content_hash: str, claim_file: ClaimFile, rules: Rules,
                 progress: Progress, submitter: str | None = None,
                 received: dt.date | None = None) -> Submitted:
    batch_id = batch_id_for(content_hash)
    rows = claim_file.rows
    # Parsed once, here: the count printed now, and the fields the run reads (it does not parse again).
    fields, invalid = fields_to_keep(rows, rules)
    with unit_of_work(engine) as repo:
        repo.lock("submit")
        if repo.batch_by_hash(content_hash):
            return Submitted(batch_id, False, rows.height, invalid)  # a concurrent submit won
        repo.add_batch(batch_id, content_hash, name, claim_file.format, rows, fields, invalid,
                       submitter=submitter, received_date=received or dt.date.today())
        progress("submit", rows.height, rows.height)
    log.info("batch %s queued: %d claims, %d failing record checks", batch_id, rows.height, invalid)
    return Submitted(batch_id, True, rows.height, invalid)


# --- run -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    run_id: int | None
    claims: int
    paid: int
    suspended: int
    rejected: int
    paid_cents: int
    voids: int = 0
    reversed_cents: int = 0  # what the run's replacements and voids took back


@dataclass(frozen=True)
class DryRun:
    """What a dry run found: its summary, and the outcomes it would have stored (export shape)."""

    summary: RunSummary
    outcomes: pl.DataFrame


def run(engine: Engine, rules: Rules, progress: Progress = _quiet, decider: Decider = decide,
        max_claims_per_client_day: int | None = None, *, lock_wait_seconds: float = 600.0,
        dry_run: bool = False, operator: str = SYSTEM) -> RunSummary | DryRun:
    """Adjudicate everything queued, in one transaction: all outcomes are stored, or none.

    decider: how the edits are decided, here or split across workers (worker.distributed).
    max_claims_per_client_day: refuse the run, storing nothing, when more claims share a client and day.
    The run holds the run lock (waiting up to lock_wait_seconds: runs.LockTimeout). A run that fails
    leaves a `failed` record with the one-line reason, in its own transaction; a failure that is no
    refusal is raised as poison.RunBroke, naming what the run was doing. dry_run: everything is
    decided and rolled back; a `dry-run` record and an audit entry are kept; returns a DryRun.
    """
    started = repository.now()
    doing = ["taking the run lock"]

    def stage(what: str, done: int, total: int) -> None:
        doing[0] = what.removeprefix("run: ")
        progress(what, done, total)

    try:
        with runs.run_lock(engine, "dry run" if dry_run else "run", lock_wait_seconds):
            started = repository.now()
            result = _run(engine, rules, stage, decider, max_claims_per_client_day, dry_run)
    except BaseException as error:
        failure = poison.reported(error, doing[0])
        runs.record_failure(engine, started, failure)
        if failure is error:
            raise
        raise failure from error
    if not dry_run:
        return result
    run_id = runs.record_dry_run(engine, started, result.summary, operator)
    summary = replace(result.summary, run_id=run_id)
    log.info("dry run %s: nothing stored", run_id, extra={"event": "run.dry-run", **_fields(summary)})
    return DryRun(summary, result.outcomes)


RUN_STEPS = 5


def _run(engine: Store, rules: Rules, progress: Progress, decider: Decider, max_claims_per_client_day: int | None,
         dry_run: bool):
    def step(done: int, what: str) -> None:
        progress(f"run: {what}", done, RUN_STEPS)

    empty = RunSummary(None, 0, 0, 0, 0, 0)
    started = repository.now()
    with unit_of_work(engine, commit=not dry_run) as repo:
        repo.lock("run")
        step(0, "reading the queue")
        snapshot = repo.queued_claims()
        queue = snapshot.fields
        if queue.height == 0:
            step(RUN_STEPS, "nothing queued")
            return DryRun(empty, _export_texts(pl.DataFrame(schema=EXPORT_SCHEMA))) if dry_run else empty
        decider = poison.naming_the_claim(decider, snapshot.origin)  # a failure names its batch and claim
        step(1, f"reading the state of {queue.height} claims")
        clients = queue_clients(queue)
        reference = repo.reference_frames(clients)
        ledger = repo.ledger_for(queue, clients, reference)
        waivers = repo.waivers_for()
        step(2, f"checking {queue.height} claims")
        checked = check_records(queue, rules, repo.holders_for(queue))
        if max_claims_per_client_day is not None:
            _refuse_crowded_days(snapshot, crowded(checked, max_claims_per_client_day), max_claims_per_client_day)
        step(3, f"deciding {queue.height} claims")
        result = decider(checked, reference, rules, ledger, waivers)
        outcomes = result.outcomes
        # Outcomes come in queue order, one per queued claim: the queue's columns line up with them.
        if not outcomes.get_column("claim_pk").equals(queue.get_column("claim_pk")):
            raise AssertionError("outcomes are not in queue order")
        state = run_state(outcomes, queue, snapshot.origin, result.reversals)
        step(4, f"storing {queue.height} outcomes")
        counts = outcomes.group_by("status").len().to_dict(as_series=False)
        by_status = dict(zip(counts["status"], counts["len"]))
        paid_cents = int(outcomes.get_column("paid_cents").sum() or 0)
        run_id = repo.add_run(started, queue.height, by_status.get(R.PAID, 0), by_status.get(R.SUSPENDED, 0),
                              by_status.get(R.REJECTED, 0), paid_cents)
        reversed_cents = repo.store_run(run_id, started, snapshot, state, voids=by_status.get(R.VOID, 0))
        summary = RunSummary(run_id, queue.height, by_status.get(R.PAID, 0), by_status.get(R.SUSPENDED, 0),
                             by_status.get(R.REJECTED, 0), paid_cents, by_status.get(R.VOID, 0), reversed_cents)
        if dry_run:  # read before the rollback: the outcomes as an export after this run would show them
            would = repo.outcome_rows(OutcomeFilter(run_id=run_id, history=True))
            step(RUN_STEPS, "rolling back (dry run)")
            return DryRun(summary, _export_texts(would))
        step(RUN_STEPS, "committing")
    log.info("run %s finished", run_id, extra={"event": "run.done", **_fields(summary)})
    return summary


def _fields(summary: RunSummary) -> dict:
    """A run's summary as log fields (ids and counts only)."""
    return {"run_id": summary.run_id, "claims": summary.claims, "paid": summary.paid,
            "suspended": summary.suspended, "rejected": summary.rejected, "paid_cents": summary.paid_cents,
            "voids": summary.voids, "reversed_cents": summary.reversed_cents}


def _refuse_crowded_days(snapshot: Queue, claim_pks: pl.Series, limit: int) -> None:
    """A clear refusal naming the batches, instead of a run that exhausts the machine's memory."""
    if claim_pks.len() == 0:
        return
    batches = snapshot.origin.filter(pl.col("claim_pk").is_in(claim_pks.implode())).get_column("batch_id")
    named = ", ".join(batches.unique().sort().to_list())
    raise UserError(f"run refused: {named} holds more than {limit} claims for one client on one day "
                    f"({claim_pks.len()} such claims; ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY); nothing was "
                    f"stored: withdraw the batch (adjudicate withdraw BATCH) or raise the limit")


# --- outcomes ------------------------------------------------------------------------------

def outcomes(engine: Store, batch: str | None = None, status: str | None = None, history: bool = False,
             operator: str | None = None, export_format: str | None = None, claim_ids: tuple[str, ...] = (),
             provider: str | None = None, client: str | None = None, date_from: str | None = None,
             date_to: str | None = None, submitter: str | None = None, run_id: int | None = None) -> pl.DataFrame:
    """Outcomes in export shape (latest attempt per claim, or every attempt with history), read from
    the views through the indexes of the attempts: the cost grows with the answer. `run_id`: the
    attempts that run made (what it decided, whatever came after: history implied).

    An export (export_format given) is by a registered operator of any role, or by an HTTP
    submitter (`submitter`: its audit name, authenticated by its token), and audited."""
    start, end = _date_range(date_from, date_to)
    chosen = OutcomeFilter(batch=batch, claim_ids=tuple(i.strip() for i in claim_ids), provider=provider,
                           client=client, status=status, date_from=start, date_to=end,
                           history=history or run_id is not None, run_id=run_id)
    with unit_of_work(engine) as repo:
        if export_format and submitter is None:
            operator = access.authorize(repo, operator, access.ANY_ROLE)
        if batch and repo.batch(batch) is None:
            raise UserError(f"no batch {batch}")
        if run_id is not None and (repo.run_row(run_id) or {}).get("status") != "done":
            raise UserError(f"no run {run_id} that stored outcomes (adjudicate runs lists them)")
        frame = repo.outcome_rows(chosen)
        if export_format:
            repo.audit(submitter or operator, "outcomes.export", _export_target(chosen, frame.height), export_format)
    return _export_texts(frame)


def _export_texts(frame: pl.DataFrame) -> pl.DataFrame:
    """View rows (EXPORT_SCHEMA) as the export writes them: empty text for none, dates as ISO text."""
    texts = [c for c, dtype in EXPORT_SCHEMA.items() if dtype == pl.String]
    return frame.with_columns(pl.col(texts).fill_null(""),
                              pl.col("service_date").dt.to_string("%Y-%m-%d").fill_null(""))


def _date_range(date_from: str | None, date_to: str | None):
    """The service dates --from and --to as dates; refused when --from is after --to (a range no date
    is in: an export or a re-queue of nothing would otherwise say nothing about the typo)."""
    start, end = _date(date_from, "--from"), _date(date_to, "--to")
    if start and end and start > end:
        raise UserError(f"--from {start} is after --to {end}: no service date is in that range")
    return start, end


def _date(text: str | None, flag: str):
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{flag} must be a date YYYY-MM-DD") from None


def _export_target(chosen: OutcomeFilter, rows: int) -> str:
    """For the audit trail: the selectors of an export (a client is named by selector only)."""
    parts = [f"batch={chosen.batch or '*'}", f"status={chosen.status or '*'}", f"history={chosen.history}"]
    if chosen.claim_ids:
        parts.append("claims=" + ",".join(chosen.claim_ids))
    if chosen.provider:
        parts.append(f"provider={chosen.provider}")
    if chosen.client:
        parts.append("client=<given>")
    if chosen.date_from or chosen.date_to:
        parts.append(f"dates={chosen.date_from or ''}..{chosen.date_to or ''}")
    if chosen.run_id is not None:
        parts.append(f"run={chosen.run_id}")
    return " ".join(parts) + f" rows={rows}"


# --- operators -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    claim_ids: tuple[str, ...] = ()
    batch: str | None = None
    provider: str | None = None
    client: str | None = None
    reason: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    def describe(self) -> str:
        """For the audit trail: the selectors used (a client is named by selector only, not its prime)."""
        parts = []
        if self.claim_ids:
            parts.append("claims=" + ",".join(self.claim_ids))
        for name in ("batch", "provider", "reason", "date_from", "date_to"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        if self.client:
            parts.append("client=<given>")
        return " ".join(parts)

    def empty(self) -> bool:
        return not any((self.claim_ids, self.batch, self.provider, self.client, self.reason, self.date_from,
                        self.date_to))


def requeue(engine: Store, selection: Selection, operator: str, note: str) -> list[str]:
    """Re-queue the suspended claims selected; returns their claim ids."""
    if selection.empty():
        raise UserError("name the claims to re-queue (--claim, --batch, --provider, --client, --reason, --from/--to)")
    if selection.reason and selection.reason not in R.ALL_CODES:  # a typo would re-queue nothing, silently
        raise UserError(f"no reason code {selection.reason} (codes: {', '.join(R.ALL_CODES)})")
    _date_range(selection.date_from, selection.date_to)
    access.require_note(note)
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "operator")
        if selection.batch and repo.batch(selection.batch) is None:
            raise UserError(f"no batch {selection.batch}")
        repo.lock("requeue")
        chosen = _select_suspended(repo, selection)
        if chosen:
            repo.enqueue([pk for pk, _ in chosen], "requeue")
        repo.audit(operator, "requeue", selection.describe() + f" -> {len(chosen)} claims", note)
    log.info("operator re-queued %d claims", len(chosen))
    return [claim_id for _, claim_id in chosen]


def withdraw(engine: Store, batch_id: str, operator: str, note: str) -> int:
    """Take a queued batch out of the queue before any run reads it (a file posted by mistake, or
    one no run can get through): its claims are never adjudicated and hold no claim id. Returns
    how many claims it carried."""
    access.require_note(note)
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "operator")
        repo.lock("withdraw")
        batch = repo.batch(batch_id)
        if batch is None:
            raise UserError(f"no batch {batch_id}")
        if batch["status"] != "queued":
            raise UserError(f"batch {batch_id} is {batch['status']}; only a queued batch can be withdrawn")
        repo.set_batch_status(batch_id, "withdrawn")
        repo.audit(operator, "batch.withdraw", f"batch={batch_id} claims={batch['claims']}", note)
    log.info("batch %s withdrawn (%d claims)", batch_id, batch["claims"])
    return batch["claims"]


def _select_suspended(repo: Repository, selection: Selection) -> list[tuple[int, str]]:
    """(claim_pk, claim_id) of the suspended claims the selection names, in claim order."""
    if selection.claim_ids:
        ids = [i.strip() for i in selection.claim_ids]
        holders = repo.holders(ids)
        for claim_id in ids:
            if claim_id not in holders:
                raise UserError(f"no adjudicated claim {claim_id}")
        waiting = repo.suspended_claims(list(holders.values()))
        suspended_pks = set(waiting.get_column("claim_pk").to_list())
        for claim_id in ids:
            if holders[claim_id] not in suspended_pks:
                raise UserError(f"claim {claim_id} is {repo.latest_status(holders[claim_id])}; "
                                "only suspended claims are re-queued")
    else:
        waiting = repo.suspended_claims()
    # The claims' fields as the run read them: trimmed ids, dates whatever padding they were posted with.
    for column, value in (("batch_id", selection.batch), ("provider_id", selection.provider),
                          ("client_prime", selection.client)):
        if value:
            waiting = waiting.filter(pl.col(column) == value)
    if selection.reason:
        waiting = waiting.filter(pl.col("reasons").str.split(";").list.contains(selection.reason))
    dates = pl.col("service_date").dt.to_string("%Y-%m-%d")
    if selection.date_from:
        waiting = waiting.filter(dates >= selection.date_from)
    if selection.date_to:
        waiting = waiting.filter(dates <= selection.date_to)
    return waiting.sort("claim_pk").select("claim_pk", "claim_id").rows()


def override(engine: Store, claim_id: str, code: str, operator: str, note: str, rules: Rules) -> None:
    """Waive one edit for one suspended claim, then re-queue it."""
    access.require_note(note)
    if code not in rules.waivable:
        raise UserError(f"{code} cannot be waived (waivable: {', '.join(sorted(rules.waivable))})")
    with unit_of_work(engine) as repo:
        access.authorize(repo, operator, "override")
        repo.lock("override")
        chosen = _select_suspended(repo, Selection(claim_ids=(claim_id,)))
        claim_pk = chosen[0][0]
        current = repo.suspended_claims([claim_pk]).get_column("reasons").item()
        if code not in current.split(";"):
            raise UserError(f"claim {claim_id} is not suspended for {code} (it is for {current.replace(';', ', ')})")
        if not repo.add_waiver(claim_pk, code, operator, note):
            # Waived, and still suspended for it: the waiver waits for the next run (which applies it).
            raise UserError(f"claim {claim_id}: {code} is waived already; the next run decides the claim again")
        repo.enqueue([claim_pk], "override")
        repo.audit(operator, "override", f"claim={claim_id} waive={code}", note)
    log.info("override on claim %s: %s waived", claim_id, code)


def audit_trail(engine: Engine) -> pl.DataFrame:
    return audit.trail(engine)


# --- intake: acknowledgements and the drop folder (used by worker.intake) ---------------------

def submit_bytes(engine: Store, name: str, data: bytes, rules: Rules, limits: Limits,
                 progress: Progress = _quiet, *, submitter: str | None = None, vet: Vet | None = None,
                 received: dt.date | None = None) -> Submitted:
    """`submit` for content already read (a drop-folder sweep reads a file once, then checks that
    nothing wrote to it meanwhile): the same content again is a no-op returning the same id."""
    content, compressed = unpack(name, data, limits)  # the format, size and gzip checks first
    hashes = _content_hashes(content, data, compressed)
    with unit_of_work(engine, write=False) as repo:
        found = [batch for batch in map(repo.batch_by_hash, hashes) if batch]
        existing = found[0] if found else None
        # A poster not allowed this file's lines learns that, not whether it exists: checked against
        # the lines as posted (under any name).
        stored = repo.payloads([existing["batch_id"]]) if existing and vet is not None else None
    if existing:
        if stored is not None:
            vet(ClaimFile(format="", rows=stored))
        return Submitted(existing["batch_id"], False, existing["claims"], existing["intake_rejected"],
                         existing["status"])
    claim_file = parse_unpacked(name, content, compressed, limits)
    if vet is not None:
        vet(claim_file)
    return _store_batch(engine, name, hashes[0], claim_file, rules, progress, submitter, received)


def _content_hashes(content: bytes, data: bytes, compressed: bool) -> list[str]:
    """The names a batch of this file may be stored under: the SHA-256 of its content, gzip removed
    (the same claims posted plain and compressed, or compressed again with another time stamp in the
    gzip header, are one batch); for a gzip file also that of its bytes, which named a gzip batch
    stored before 2026-12-03."""
    return [hashlib.sha256(content).hexdigest()] + ([hashlib.sha256(data).hexdigest()] if compressed else [])


def is_content_of(engine: Store, batch_id: str, name: str, path: Path, limits: Limits) -> bool:
    """Whether the file at `path` holds the content of batch `batch_id` (gzip removed, as `submit`
    names batches; or the very bytes, for a gzip batch named by them before 2026-12-03). False for a
    file that `submit` would refuse: it cannot be that batch's."""
    try:
        data = path.read_bytes()
        content, compressed = unpack(name, data, limits)
    except (OSError, ClaimFileError):
        return False
    with unit_of_work(engine, write=False) as repo:
        batch = repo.batch(batch_id)
    return batch is not None and batch["content_hash"] in _content_hashes(content, data, compressed)


def batch_claims(engine: Store, batch_id: str) -> tuple[dict, pl.DataFrame]:
    """A batch (its stored row) and its claims as posted, in file order, with the latest outcome's
    status and reasons (null while the claim has not been adjudicated)."""
    with unit_of_work(engine, write=False) as repo:
        batch = repo.batch(batch_id)
        if batch is None:
            raise UserError(f"no batch {batch_id}")
        claims = repo.payloads([batch_id])
        outcomes = repo.batch_outcomes(batch_id, claims.get_column("claim_pk"))
    # A payload holds its claims in file order: the join keeps it (a sort would copy every column).
    frame = claims.join(outcomes, on="claim_pk", how="left", maintain_order="left")
    return batch, frame.select("claim_pk", "line", *CLAIM_COLUMNS, "status", "reasons")
