"""The product's use cases: each opens one transaction, calls the domain, and stores the result.

The command line and the Celery tasks call these; nothing here knows about either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, delete, insert, select, update

from adjudication import reasons as R
from adjudication.claim_file import ClaimFile, Limits, read_claim_file
from adjudication.claims import CLAIM_COLUMNS, fields_to_keep
from adjudication.engine import Decider, check_records, crowded, decide
from adjudication.reference import merge, read_dir
from adjudication.rules import Rules
from worker.store import repository as repo
from worker.store import schema as t
from worker.store.bulk import read_frame

log = logging.getLogger("adjudication")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class UserError(Exception):
    """A refusal to report in one line (exit code 1): bad input or a rule the operator broke."""


def _quiet(_stage: str, _done: int, _total: int) -> None:
    return None


def upgrade_schema(engine: Engine) -> None:
    from worker.store.database import upgrade

    upgrade(engine)


# --- reference -----------------------------------------------------------------------------

def load_reference(engine: Engine, folder: Path, rules: Rules | None = None) -> dict[str, int]:
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    loaded = read_dir(folder)
    if not loaded:
        raise UserError(f"{folder} holds none of providers.csv, plans.csv, enrollments.csv, spas.csv")
    with engine.begin() as conn:
        _lock(conn, "reference load")
        # Only the stored rows the load could conflict with; raises before anything is written.
        merge(repo.reference_set(conn, loaded), loaded, rules)
        repo.save_reference(conn, loaded)
    counts = {name: len(rows) for name, rows in loaded.items()}
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


def submit(engine: Engine, path: Path, rules: Rules, limits: Limits, progress: Progress = _quiet,
           received: dt.date | None = None) -> Submitted:
    """Queue a claim file as one batch; the same content again is a no-op returning the same id.

    received: the batch's received date (TIMELY_FILING counts from it); default today, local time."""
    try:
        if path.stat().st_size > limits.max_file_bytes:  # checked before anything is read
            raise UserError(f"{path.name}: {path.stat().st_size} bytes is over the limit of "
                            f"{limits.max_file_bytes} bytes")
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    return submit_bytes(engine, path.name, data, rules, limits, progress, received)


def _store_batch(engine: Engine, name: str, content_hash: str, claim_file: ClaimFile, rules: Rules,
                 progress: Progress, received: dt.date | None) -> Submitted:
    batch_id = batch_id_for(content_hash)
    rows = claim_file.rows
    # Parsed once, here: the count printed now, and the fields the run reads (it does not parse again).
    fields, invalid = fields_to_keep(rows, rules)
    with engine.begin() as conn:
        _lock(conn, "submit")
        if conn.execute(select(t.batches.c.batch_id).where(t.batches.c.content_hash == content_hash)).first():
            return Submitted(batch_id, False, rows.height, invalid)  # a concurrent submit won
        seq = repo.new_queue_event(conn, "batch")
        first_pk = repo.next_claim_pk(conn)
        conn.execute(insert(t.batches).values(
            batch_id=batch_id, content_hash=content_hash, file_name=name, file_format=claim_file.format,
            submitted_at=repo.now(), seq=seq, status="queued", claims=rows.height, intake_rejected=invalid,
            first_pk=first_pk, received_date=received or dt.date.today()))
        repo.store_payload(conn, batch_id, rows.with_columns(
            claim_pk=pl.int_range(first_pk, first_pk + rows.height, dtype=pl.Int64)), fields)
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


def run(engine: Engine, rules: Rules, progress: Progress = _quiet, decider: Decider = decide,
        max_claims_per_client_day: int | None = None) -> RunSummary:
    """Adjudicate everything queued, in one transaction: all outcomes are stored, or none.

    decider: how the edits are decided, here or split across workers (worker.distributed).
    max_claims_per_client_day: refuse the run, storing nothing, when more claims share a client and day.
    """
    with engine.begin() as conn:
        _lock(conn, "run")
        snapshot = repo.queued_claims(conn)
        queue = snapshot.fields
        if queue.height == 0:
            return RunSummary(None, 0, 0, 0, 0, 0)
        progress("adjudicate", 0, queue.height)
        clients = repo.queue_clients(queue)
        reference = repo.reference_frames(conn, clients)
        ledger = repo.ledger_for(conn, queue, clients, reference)
        waivers = repo.waivers_for(conn)
        checked = check_records(queue, rules, repo.holders_for(conn, queue))
        if max_claims_per_client_day is not None:
            _refuse_crowded_days(snapshot, crowded(checked, max_claims_per_client_day), max_claims_per_client_day)
        result = decider(checked, reference, rules, ledger, waivers)
        outcomes = result.outcomes
        # Outcomes come in queue order, one per queued claim: the queue's columns line up with them.
        if not outcomes.get_column("claim_pk").equals(queue.get_column("claim_pk")):
            raise AssertionError("outcomes are not in queue order")
        # The claim ids this run takes (a replacement or void holds its id only when accepted) are
        # written on a second thread while this one computes the state to store, which does not
        # touch the connection (polars and the drivers release the GIL, so the two overlap).
        with ThreadPoolExecutor(max_workers=1) as writer:
            holders_written = writer.submit(repo.store_holders, conn, checked.new_holders(outcomes))
            state = repo.run_state(outcomes.hstack(snapshot.origin.select("batch_id", "attempt")), result.newly_paid)
            holders_written.result()
        progress("adjudicate", queue.height, queue.height)
        counts = outcomes.group_by("status").len().to_dict(as_series=False)
        by_status = dict(zip(counts["status"], counts["len"]))
        paid_cents = int(outcomes.get_column("paid_cents").sum() or 0)
        run_id = conn.execute(insert(t.runs).values(
            started_at=repo.now(), finished_at=None, claims=queue.height, paid=by_status.get(R.PAID, 0),
            suspended=by_status.get(R.SUSPENDED, 0), rejected=by_status.get(R.REJECTED, 0), paid_cents=paid_cents,
        ).returning(t.runs.c.run_id)).scalar_one()
        repo.finish_queue(conn, snapshot)
        repo.store_run(conn, run_id, state)
        progress("store", queue.height, queue.height)
        conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(finished_at=repo.now()))
    summary = RunSummary(run_id, queue.height, by_status.get(R.PAID, 0), by_status.get(R.SUSPENDED, 0),
                         by_status.get(R.REJECTED, 0), paid_cents)
    log.info("run %s: %s", run_id, summary)
    return summary


def _refuse_crowded_days(snapshot: repo.Queue, claim_pks: pl.Series, limit: int) -> None:
    """A clear refusal naming the batches, instead of a run that exhausts the machine's memory."""
    if claim_pks.len() == 0:
        return
    batches = snapshot.origin.filter(pl.col("claim_pk").is_in(claim_pks.implode())).get_column("batch_id")
    named = ", ".join(batches.unique().sort().to_list())
    raise UserError(f"run refused: {named} holds more than {limit} claims for one client on one day "
                    f"({claim_pks.len()} such claims; ADJUDICATION_RUN_MAX_CLAIMS_PER_CLIENT_DAY); nothing was "
                    f"stored: withdraw the batch (adjudicate withdraw BATCH) or raise the limit")


def _lock(conn: Connection, holder: str) -> None:
    """Serialize writers that must be alone: the first write of their transaction takes this row."""
    conn.execute(update(t.run_lock).where(t.run_lock.c.id == 1).values(holder=holder))


# --- outcomes ------------------------------------------------------------------------------

OUTCOME_COLUMNS = ("claim_id", "batch_id", "line", "status", "reasons", "spa_id", "paid_units", "paid_amount",
                   "conflicts_with", "carc", "attempt")


def outcomes(engine: Engine, batch: str | None = None, status: str | None = None, history: bool = False,
             operator: str = "system", export_format: str | None = None) -> pl.DataFrame:
    """Outcomes in export shape (latest attempt per claim, or every attempt with history)."""
    with engine.begin() as conn:
        if batch and not conn.execute(select(t.batches.c.batch_id).where(t.batches.c.batch_id == batch)).first():
            raise UserError(f"no batch {batch}")
        attempts = repo.segments(conn, batch)
        claims = repo.payloads(conn, [batch] if batch else None)
        if not history:
            attempts = repo.latest(attempts)
        if status:
            attempts = attempts.filter(pl.col("status") == status)
        frame = claims.join(attempts, on="claim_pk").sort("batch_seq", "line", "attempt")
        if export_format:
            _audit(conn, operator, "outcomes.export",
                   f"batch={batch or '*'} status={status or '*'} history={history} rows={frame.height}",
                   export_format)
    return frame.select(
        pl.col("claim_id").fill_null(""), "batch_id", "line", "status", pl.col("reasons").list.join(";"),
        pl.col("spa_id").fill_null(""),
        paid_units=_decimal_text(pl.col("paid_units_s").fill_null(0), 4, strip=True),
        paid_amount=_decimal_text(pl.col("paid_cents").fill_null(0), 2, strip=False),
        conflicts_with=pl.col("conflicts_with").list.join(";"), carc=pl.col("carc").list.join(";"),
        attempt="attempt",
    )


def _decimal_text(scaled: pl.Expr, places: int, strip: bool) -> pl.Expr:
    """Exact text of an integer scaled by 10^places ('12345' cents -> '123.45')."""
    factor = 10 ** places
    whole = (scaled // factor).cast(pl.String)
    fraction = (scaled % factor).cast(pl.String).str.pad_start(places, "0")
    if strip:
        fraction = fraction.str.strip_chars_end("0")
        return pl.when(fraction == "").then(whole).otherwise(whole + "." + fraction)
    return whole + "." + fraction


# --- operators -----------------------------------------------------------------------------

ROLES = ("operator", "override")


def add_operator(engine: Engine, name: str, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    with engine.begin() as conn:
        if conn.execute(select(t.operators.c.name).where(t.operators.c.name == name)).first():
            conn.execute(update(t.operators).where(t.operators.c.name == name).values(role=role))
        else:
            conn.execute(insert(t.operators).values(name=name, role=role, added_at=repo.now()))
        _audit(conn, name, "operators.add", name, f"role={role}")


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


def requeue(engine: Engine, selection: Selection, operator: str, note: str) -> list[str]:
    """Re-queue the suspended claims selected; returns their claim ids."""
    if selection.empty():
        raise UserError("name the claims to re-queue (--claim, --batch, --provider, --client, --reason, --from/--to)")
    _require_note(note)
    with engine.begin() as conn:
        _lock(conn, "requeue")
        chosen = _select_suspended(conn, selection)
        if chosen:
            seq = repo.new_queue_event(conn, "requeue")
            _enqueue(conn, [pk for pk, _ in chosen], seq)
        _audit(conn, operator, "requeue", selection.describe() + f" -> {len(chosen)} claims", note)
    log.info("operator re-queued %d claims", len(chosen))
    return [claim_id for _, claim_id in chosen]


def withdraw(engine: Engine, batch_id: str, operator: str, note: str) -> int:
    """Take a queued batch out of the queue before any run reads it (a file posted by mistake, or
    one no run can get through): its claims are never adjudicated and hold no claim id. Returns
    how many claims it carried."""
    _require_note(note)
    with engine.begin() as conn:
        _lock(conn, "withdraw")
        if _role_of(conn, operator) is None:
            raise UserError(f"operator {operator} is not registered (adjudicate operators add)")
        batch = conn.execute(select(t.batches.c.status, t.batches.c.claims)
                             .where(t.batches.c.batch_id == batch_id)).first()
        if batch is None:
            raise UserError(f"no batch {batch_id}")
        if batch.status != "queued":
            raise UserError(f"batch {batch_id} is {batch.status}; only a queued batch can be withdrawn")
        conn.execute(update(t.batches).where(t.batches.c.batch_id == batch_id).values(status="withdrawn"))
        _audit(conn, operator, "batch.withdraw", f"batch={batch_id} claims={batch.claims}", note)
    log.info("batch %s withdrawn (%d claims)", batch_id, batch.claims)
    return batch.claims


def _enqueue(conn: Connection, claim_pks: list[int], seq: int) -> None:
    for chunk in repo.chunks(claim_pks):
        conn.execute(delete(t.requeues).where(t.requeues.c.claim_pk.in_(chunk)))
        conn.execute(insert(t.requeues), [{"claim_pk": pk, "seq": seq} for pk in chunk])


def _select_suspended(conn: Connection, selection: Selection) -> list[tuple[int, str]]:
    """(claim_pk, claim_id) of the suspended claims the selection names, in claim order."""
    waiting = read_frame(conn, select(t.suspended.c.claim_pk, t.suspended.c.batch_id, t.suspended.c.reasons),
                         {"claim_pk": pl.Int64, "batch_id": pl.String, "reasons": pl.String})
    if selection.claim_ids:
        ids = [i.strip() for i in selection.claim_ids]
        holders = dict(conn.execute(select(t.claim_ids.c.claim_id, t.claim_ids.c.claim_pk).where(
            t.claim_ids.c.claim_id.in_(ids))).all())
        suspended_pks = set(waiting.get_column("claim_pk").to_list())
        for claim_id in ids:
            if claim_id not in holders:
                raise UserError(f"no adjudicated claim {claim_id}")
            if holders[claim_id] not in suspended_pks:
                raise UserError(f"claim {claim_id} is {_status_of(conn, holders[claim_id])}; "
                                "only suspended claims are re-queued")
        waiting = waiting.filter(pl.col("claim_pk").is_in(list(holders.values())))
    if selection.batch:
        waiting = waiting.filter(pl.col("batch_id") == selection.batch)
    if selection.reason:
        waiting = waiting.filter(pl.col("reasons").str.split(";").list.contains(selection.reason))
    # Parsed fields: trimmed ids, and dates as ISO text whatever padding they were posted with.
    claims = repo.payloads(conn, waiting.get_column("batch_id").unique().to_list(), parsed=True).join(
        waiting.select("claim_pk"), on="claim_pk").with_columns(service_date=pl.col("service_day").cast(pl.String))
    for column, value in (("provider_id", selection.provider), ("client_prime", selection.client)):
        if value:
            claims = claims.filter(pl.col(column) == value)
    if selection.date_from:
        claims = claims.filter(pl.col("service_date") >= selection.date_from)
    if selection.date_to:
        claims = claims.filter(pl.col("service_date") <= selection.date_to)
    return claims.sort("claim_pk").select("claim_pk", "claim_id").rows()


def _status_of(conn: Connection, claim_pk: int) -> str:
    batch_id = conn.execute(select(t.batches.c.batch_id).where(
        t.batches.c.first_pk <= claim_pk, claim_pk < t.batches.c.first_pk + t.batches.c.claims)).scalar_one()
    attempts = repo.latest(repo.segments(conn, batch_id).filter(pl.col("claim_pk") == claim_pk))
    return attempts.get_column("status").item()


def override(engine: Engine, claim_id: str, code: str, operator: str, note: str, rules: Rules) -> None:
    """Waive one edit for one suspended claim, then re-queue it."""
    _require_note(note)
    if code not in rules.waivable:
        raise UserError(f"{code} cannot be waived (waivable: {', '.join(sorted(rules.waivable))})")
    with engine.begin() as conn:
        _lock(conn, "override")
        if _role_of(conn, operator) != "override":
            raise UserError(f"operator {operator} does not have the override role")
        chosen = _select_suspended(conn, Selection(claim_ids=(claim_id,)))
        claim_pk = chosen[0][0]
        current = conn.execute(select(t.suspended.c.reasons).where(t.suspended.c.claim_pk == claim_pk)).scalar_one()
        if code not in current.split(";"):
            raise UserError(f"claim {claim_id} is not suspended for {code} (it is for {current.replace(';', ', ')})")
        already = conn.execute(select(t.waivers.c.id).where(t.waivers.c.claim_pk == claim_pk,
                                                            t.waivers.c.code == code)).first()
        if not already:
            conn.execute(insert(t.waivers).values(claim_pk=claim_pk, code=code, operator=operator, note=note,
                                                  at=repo.now()))
        _enqueue(conn, [claim_pk], repo.new_queue_event(conn, "override"))
        _audit(conn, operator, "override", f"claim={claim_id} waive={code}", note)
    log.info("override on claim %s: %s waived", claim_id, code)


def _role_of(conn: Connection, operator: str) -> str | None:
    """The operator's role; None when the name is not registered."""
    return conn.execute(select(t.operators.c.role).where(t.operators.c.name == operator)).scalar()


def _require_note(note: str) -> None:
    if not note or not note.strip():
        raise UserError("--note must say why")


def _audit(conn: Connection, operator: str, action: str, target: str, note: str) -> None:
    conn.execute(insert(t.audit).values(at=repo.now(), operator=operator, action=action, target=target, note=note))


def audit_trail(engine: Engine) -> pl.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(select(t.audit).order_by(t.audit.c.id)).all()
    return pl.DataFrame([dict(r._mapping) for r in rows],
                        schema={"id": pl.Int64, "at": pl.Datetime("us", "UTC"), "operator": pl.String,
                                "action": pl.String, "target": pl.String, "note": pl.String}, orient="row")


# --- intake: acknowledgements and the drop folder (used by worker.intake) ---------------------

def submit_bytes(engine: Engine, name: str, data: bytes, rules: Rules, limits: Limits,
                 progress: Progress = _quiet, received: dt.date | None = None) -> Submitted:
    """`submit` for content already read (a drop-folder sweep reads a file once, then checks that
    nothing wrote to it meanwhile): the same content again is a no-op returning the same id."""
    from adjudication.claim_file import detect_format

    detect_format(name)
    if len(data) > limits.max_file_bytes:
        raise UserError(f"{name}: {len(data)} bytes is over the limit of {limits.max_file_bytes} bytes")
    content_hash = hashlib.sha256(data).hexdigest()
    with engine.connect() as conn:
        existing = conn.execute(select(t.batches.c.batch_id, t.batches.c.claims, t.batches.c.intake_rejected,
                                       t.batches.c.status)
                                .where(t.batches.c.content_hash == content_hash)).first()
    if existing:
        return Submitted(existing.batch_id, False, existing.claims, existing.intake_rejected, existing.status)
    claim_file = read_claim_file(name, data, limits)
    return _store_batch(engine, name, content_hash, claim_file, rules, progress, received)


def batch_claims(engine: Engine, batch_id: str) -> tuple[dict, pl.DataFrame]:
    """A batch (its stored row) and its claims as posted, in file order, with the latest outcome's
    status and reasons (null while the claim has not been adjudicated)."""
    with engine.connect() as conn:
        batch = conn.execute(select(t.batches).where(t.batches.c.batch_id == batch_id)).first()
        if batch is None:
            raise UserError(f"no batch {batch_id}")
        outcomes = repo.latest(repo.segments(conn, batch_id)).select(
            "claim_pk", "status", reasons=pl.col("reasons").list.join(";"))
        claims = repo.payloads(conn, [batch_id])
    frame = claims.join(outcomes, on="claim_pk", how="left").sort("line", "claim_pk")
    return dict(batch._mapping), frame.select("claim_pk", "line", *CLAIM_COLUMNS, "status", "reasons")
