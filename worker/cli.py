"""The `adjudicate` command line: parses options, calls worker.service, prints one-line results."""

from __future__ import annotations

import datetime as dt

import io
import json
import os
import logging
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adjudication.remittance import money, money_text
from worker import service
from worker.files import ignored_reference_columns
from worker.exports import outcomes_for_json, safe_for_spreadsheets
from worker.bootstrap import App, build

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Adjudicate home and community-based services claims against prior authorizations.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
reference_cli = typer.Typer(no_args_is_help=True, help="Reference data: providers, plans, enrollments, SPAs.")
operators_cli = typer.Typer(no_args_is_help=True, help="Operators and their roles (granted by an admin).")
audit_cli = typer.Typer(invoke_without_command=True, help="The audit trail, and `audit verify` of its hash chain.")
cli.add_typer(db_cli, name="db")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(reference_cli, name="reference")
cli.add_typer(operators_cli, name="operators")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


# The acting operator of every command that acts or exports (worker.access).
Operator = Annotated[Optional[str], typer.Option(
    "--operator", help="The acting operator: a registered name holding the role needed (env ADJUDICATION_OPERATOR)")]


def _output_file(value: Optional[Path]) -> Optional[Path]:
    """`--output FILE`, checked as the command line is read: before any work, and before an export is
    audited (a refused file records nothing)."""
    if value is None:
        return value
    try:
        folder, in_a_folder = value.is_dir(), value.parent.is_dir()
    except OSError as error:  # a folder on the way that may not be read
        raise service.UserError(f"--output {value}: cannot be checked ({error.strerror})") from None
    if folder or not in_a_folder:
        why = "is a folder, not a file" if folder else f"its folder {value.parent} does not exist"
        raise service.UserError(f"--output {value}: {why}")
    return value


def _output_folder(value: Path) -> Path:
    """`--output DIR` of the commands that write one file per provider: a folder, or a path where one
    can be made (checked as the command line is read, before any work or audit)."""
    try:
        taken = next((p for p in (value, *value.parents) if p.exists()), None)
        if taken is not None and not taken.is_dir():
            raise service.UserError(f"--output {value}: {'is' if taken == value else f'{taken} is'} a file, not a folder")
    except OSError as error:
        raise service.UserError(f"--output {value}: cannot be checked ({error.strerror})") from None
    return value


# `--output FILE` of the commands that write one file (the check runs as the command line is read).
OutputFile = Annotated[Optional[Path], typer.Option(
    "--output", "-o", callback=_output_file, help="Write here instead of stdout")]


def acting(ctx: typer.Context, flag: Optional[str]) -> str:
    from worker import access

    return access.acting(flag, app(ctx).settings.operator)


class TextFormat(str, Enum):
    csv = "csv"
    json = "json"


class HealthFormat(str, Enum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"adjudicate {version('adjudication-worker')}")
        raise typer.Exit()


@cli.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (env ADJUDICATION_DATABASE_URL); "
                                              "default sqlite:///adjudication.db")] = None,
    broker: Annotated[Optional[str], typer.Option("--broker", help="Celery broker URL (env ADJUDICATION_BROKER_URL)")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Rules file (env ADJUDICATION_RULES_FILE)")] = None,
    log_level: Annotated[Optional[str], typer.Option(
        "--log-level", help="debug, info, warning (default) or error, for the product's logs on stderr (env "
        "ADJUDICATION_LOG_LEVEL; ADJUDICATION_LOG_FORMAT=json for one JSON object per line)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Same as --log-level info")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    from worker import logs
    from worker.settings import Settings

    overrides = {k: v for k, v in {"database_url": db, "broker_url": broker, "rules_file": rules,
                                   "log_level": log_level or ("INFO" if verbose else None)}.items() if v}
    settings = Settings(**overrides)
    try:
        logs.configure(settings.log_level, settings.log_format)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log-level") from None
    ctx.obj = overrides


def app(ctx: typer.Context, *, creates_database: bool = False) -> App:
    """The wired application; the database is checked before first use (exists, schema at this
    version) unless the command is the one that creates it."""
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = build(check_database=not creates_database, **(root.obj or {}))
    return root.obj


@contextmanager
def progress_bar(enabled: bool, interval: float = 5.0):
    """A rich progress bar on a terminal. Elsewhere (pipes, CI logs, a scheduler's journal), a long
    command prints plain progress lines to stderr: once it has run `interval` seconds, at each new
    stage and at most every `interval` seconds within one. Stages named "group: step" share one bar."""
    if not enabled:
        yield service._quiet
        return
    if not out.is_terminal:
        import time

        started = time.monotonic()
        last: dict[str, object] = {"stage": None, "at": 0.0}

        def line(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if now - started < interval:
                return
            if stage == last["stage"] and now - float(last["at"]) < interval and done < total:
                return
            last.update(stage=stage, at=now)
            err.print(f"progress: {stage} ({done}/{total}, {now - started:.0f} s)", markup=False)

        yield line
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            group = stage.partition(":")[0]
            if group not in tasks:
                tasks[group] = bar.add_task(stage, total=total)
            bar.update(tasks[group], completed=done, total=total, description=stage, refresh=True)

        yield update


@db_cli.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    admin: Annotated[Optional[str], typer.Option(help="Register the first admin (only when there is none)")] = None,
) -> None:
    """Create or migrate the schema to the newest version; --admin NAME registers the first admin."""
    from worker import access

    a = app(ctx, creates_database=True)
    if admin is not None:
        access.check_name(admin)
    service.upgrade_schema(a.engine)
    out.print(f"schema up to date ({a.engine.url.render_as_string(hide_password=True)})")
    if admin is not None:
        created = access.bootstrap_admin(a.engine, admin)
        out.print(f"first admin {admin} registered" if created else f"{admin} is already an admin")


@db_cli.command("seal-audit")
def db_seal_audit(
    ctx: typer.Context,
    owner: Annotated[str, typer.Option(help="The role to own the audit (created, without login, when missing)")],
) -> None:
    """PostgreSQL, once after `db upgrade`, as a superuser (--db with its URL): the audit table, its
    trigger function and their schema go to OWNER; the role owning the other tables (the
    application's) may then only read and append to the audit, and create tables. Refused while
    that role could undo it (a superuser, CREATEROLE, or owning the database). docs/operations.md:
    "A database the application cannot rewrite"."""
    out.print(service.seal_audit(app(ctx).engine, owner))


@reference_cli.command("load")
def reference_load(ctx: typer.Context, folder: Path) -> None:
    """Load providers.csv, plans.csv, enrollments.csv and spas.csv from FOLDER (all-or-nothing)."""
    a = app(ctx)
    try:  # read before the load: what is warned about is what the load reads
        ignored = ignored_reference_columns(folder)
    except OSError:
        ignored = {}  # the load says what is wrong with the folder
    counts = service.load_reference(a.engine, folder, a.rules)
    out.print("loaded " + ", ".join(f"{name}: {n} rows" for name, n in counts.items()))
    for name, columns in ignored.items():
        # Loaded all the same (an export may carry columns of its own), but a misspelt optional
        # column would otherwise pass unseen.
        err.print(f"warning: {name}: ignored columns (not in SPEC 2's list for this file): {columns}")


@cli.command()
def submit(
    ctx: typer.Context,
    file: Path,
    received: Annotated[Optional[dt.datetime], typer.Option(
        "--received", formats=["%Y-%m-%d"], help="The batch's received date YYYY-MM-DD (default today): "
        "TIMELY_FILING counts from it, and no service date may be after it")] = None,
) -> None:
    """Queue a claim file (CSV, JSON Lines or Parquet, optionally .gz); prints the batch id."""
    a = app(ctx)
    with progress_bar(True, a.settings.progress_interval_seconds) as progress:
        result = service.submit(a.engine, file, a.rules, a.limits, progress,
                                received=received and received.date())
    out.print(result.batch_id)
    if received and result.new and received.date() > dt.date.today():
        # Allowed (a received date is the operator's word, and a test of timely filing needs one a year
        # after its services), but said: FUTURE_SERVICE_DATE then admits services up to that day.
        err.print(f"warning: the received date {received.date()} is after today: services up to that day "
                  "are not refused as FUTURE_SERVICE_DATE")
    if result.new:
        err.print(f"queued {result.claims} claims ({result.rejected_at_intake} fail record checks)")
    elif result.status == "withdrawn":
        err.print("already submitted, and withdrawn: nothing changed (post a corrected file to queue its claims)")
    else:
        err.print("already submitted: nothing changed")


@cli.command()
def run(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Adjudicate what is queued and report, storing "
                                          "nothing (the dry run itself is recorded and audited)")] = False,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", callback=_output_file, help="With --dry-run: write the outcomes it would store here")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Of --output: csv, json, jsonl or parquet")] = Format.csv,
    operator: Annotated[Optional[str], typer.Option(
        "--operator", help="With --dry-run: the acting operator, a registered name of any role (env "
        "ADJUDICATION_OPERATOR); the dry run is audited under it")] = None,
) -> None:
    """Adjudicate everything queued (the nightly run) and print a summary. Exit 4 when the run completed
    with a warning the settings make fatal (ADJUDICATION_FAIL_REJECTED_PERCENT), 5 when the run lock
    stayed held by another run for ADJUDICATION_LOCK_WAIT_SECONDS."""
    from worker import access, runs

    if output is not None and not dry_run:
        raise typer.BadParameter("--output goes with --dry-run (after a run: adjudicate outcomes)",
                                 param_hint="--output")
    a = app(ctx)
    who = access.check(a.engine, acting(ctx, operator)) if dry_run else service.SYSTEM
    with progress_bar(True, a.settings.progress_interval_seconds) as progress:
        result = a.run(progress, dry_run=dry_run, operator=who)
    summary = result.summary if dry_run else result
    if dry_run and output is not None:
        _write_outcomes(result.outcomes, fmt.value, output)
    out.print(
        f"{'dry run' if dry_run else 'run'} {summary.run_id if summary.run_id is not None else '-'}: "
        f"{summary.claims} claims, {summary.paid} paid, {summary.suspended} suspended, {summary.rejected} rejected, "
        + (f"{summary.voids} void, " if summary.voids else "")
        + f"amount paid {money(summary.paid_cents)}, amount reversed {money(summary.reversed_cents)}"
        + (" (nothing stored)" if dry_run else "")
    )
    warnings = runs.fatal_warnings(summary, a.settings.fail_rejected_percent)
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    if warnings:
        raise typer.Exit(EXIT_WARNING)


class RunsFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@cli.command("runs")
def runs_command(
    ctx: typer.Context,
    fmt: Annotated[RunsFormat, typer.Option("--format", help="table, csv or json")] = RunsFormat.table,
    output: OutputFile = None,
) -> None:
    """Every run, newest first: started, finished, status (done, failed, dry-run), claims, paid,
    suspended, rejected, voids, amount paid and amount reversed, and why a failed run failed."""
    from worker import runs

    frame = runs.list_runs(app(ctx).engine)
    amounts = {"amount_paid": pl.col("paid_cents"), "amount_reversed": pl.col("reversed_cents")}
    columns = ["run_id", "started", "finished", "status", "claims", "paid", "suspended", "rejected", "voids",
               "amount_paid", "amount_reversed", "failure"]
    if fmt == RunsFormat.json:
        shaped = frame.with_columns(**{k: v.cast(pl.Float64) / 100 for k, v in amounts.items()}).select(columns)
        _emit(shaped.write_json() + "\n", output)
        return
    shaped = frame.with_columns(**{k: money_text(v) for k, v in amounts.items()}).select(
        columns).with_columns(pl.col("started", "finished").dt.strftime("%Y-%m-%d %H:%M:%S"))
    if fmt == RunsFormat.csv:
        _write(shaped, "csv", output)
        return
    from rich.table import Table

    table = Table(title="Runs (newest first)", title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column not in ("started", "finished", "status", "failure") else "left")
    for row in shaped.iter_rows():
        table.add_row(*["" if v is None else str(v) for v in row])
    console = out if output is None and out.is_terminal else Console(file=io.StringIO(), width=200, highlight=False)
    console.print(table)
    if console is not out:
        _emit(console.file.getvalue(), output)


@cli.command()
def unlock(
    ctx: typer.Context,
    note: Annotated[str, typer.Option(help="Why: which run is gone (audited)")],
    operator: Operator = None,
) -> None:
    """Clear the run lock left by a run whose machine or container is gone (a run waiting for it
    names the holder): by an operator with the operator role. Refused while the holder is a live
    process on this host."""
    from worker import runs

    cleared = runs.unlock(app(ctx).engine, acting(ctx, operator), note)
    out.print("the run lock was free" if cleared is None else f"cleared the run lock held by {cleared}")


def _emit(text: str, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise service.UserError(f"--output {output}: cannot write ({error.strerror})") from None


def _write(frame: pl.DataFrame, fmt: str, output: Optional[Path]) -> None:
    if fmt == "parquet":
        if output is None:
            raise service.UserError("--format parquet needs --output FILE")
        try:
            frame.write_parquet(output)
        except OSError as error:
            raise service.UserError(f"--output {output}: cannot write ({error.strerror})") from None
        return
    if fmt == "csv":
        text = safe_for_spreadsheets(frame).write_csv()
    elif fmt == "json":
        text = frame.write_json() + "\n"
    else:
        text = frame.write_ndjson()
    _emit(text, output)


def _write_outcomes(frame: pl.DataFrame, fmt: str, output: Optional[Path]) -> None:
    """Outcomes: in JSON, amounts and units are numbers and the `;`-separated columns arrays."""
    _write(outcomes_for_json(frame) if fmt in ("json", "jsonl") else frame, fmt, output)


@cli.command()
def outcomes(
    ctx: typer.Context,
    fmt: Annotated[Format, typer.Option("--format", help="csv, json (an array), jsonl or parquet")] = Format.csv,
    output: OutputFile = None,
    batch: Annotated[Optional[str], typer.Option(help="Only this batch")] = None,
    status: Annotated[Optional[str], typer.Option(help="Only paid, suspended, rejected or void")] = None,
    history: Annotated[bool, typer.Option("--history", help="Every attempt, not only the latest")] = False,
    operator: Operator = None,
    claim: Annotated[Optional[list[str]], typer.Option("--claim", help="Only this claim id; repeat for more")] = None,
    provider: Annotated[Optional[str], typer.Option(help="Only this provider's claims")] = None,
    client: Annotated[Optional[str], typer.Option(help="Only this client's claims (prime)")] = None,
    date_from: Annotated[Optional[str], typer.Option("--from", help="Only serviced on or after YYYY-MM-DD")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Only serviced on or before YYYY-MM-DD")] = None,
    run: Annotated[Optional[int], typer.Option("--run", help="Only the attempts this run made (what it decided, "
                                               "even where a later run decided again; implies --history)")] = None,
) -> None:
    """Export outcomes: the latest attempt per claim, in adjudication order (filters combine with AND)."""
    if status and status not in ("paid", "suspended", "rejected", "void"):
        raise service.UserError(f"unknown status {status!r} (paid, suspended, rejected or void)")
    frame = service.outcomes(app(ctx).engine, batch=batch, status=status, history=history, operator=acting(ctx, operator),
                             export_format=fmt.value, claim_ids=tuple(claim or ()), provider=provider,
                             client=client, date_from=date_from, date_to=date_to, run_id=run)
    _write_outcomes(frame, fmt.value, output)


@cli.command()
def requeue(
    ctx: typer.Context,
    note: Annotated[str, typer.Option(help="Why (audited)")],
    operator: Operator = None,
    claim: Annotated[Optional[list[str]], typer.Option("--claim", help="A claim id; repeat for more")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Suspended claims of this batch")] = None,
    provider: Annotated[Optional[str], typer.Option(help="... of this provider")] = None,
    client: Annotated[Optional[str], typer.Option(help="... of this client (prime)")] = None,
    reason: Annotated[Optional[str], typer.Option(help="... suspended for this reason code")] = None,
    date_from: Annotated[Optional[str], typer.Option("--from", help="... serviced on or after YYYY-MM-DD")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="... serviced on or before YYYY-MM-DD")] = None,
) -> None:
    """Re-queue suspended claims (selectors combine with AND) for the next run."""
    for option, value in (("--from", date_from), ("--to", date_to)):
        if value is not None:
            _require_date(option, value)
    selection = service.Selection(tuple(claim or ()), batch, provider, client, reason, date_from, date_to)
    ids = service.requeue(app(ctx).engine, selection, acting(ctx, operator), note)
    out.print(f"re-queued {len(ids)} claims")


def _require_date(option: str, value: str) -> None:
    import datetime as dt
    import re

    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise service.UserError(f"{option} {value}: not a date YYYY-MM-DD") from None


@cli.command()
def withdraw(
    ctx: typer.Context,
    batch: str,
    note: Annotated[str, typer.Option(help="Why (audited)")],
    operator: Operator = None,
) -> None:
    """Take a queued batch out of the queue before a run reads it: its claims are never adjudicated."""
    claims = service.withdraw(app(ctx).engine, batch, acting(ctx, operator), note)
    out.print(f"withdrew batch {batch} ({claims} claims)")


@operators_cli.command("add")
def operators_add(
    ctx: typer.Context, name: str,
    role: Annotated[str, typer.Option(help="admin, operator or override")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
    operator: Operator = None,
) -> None:
    """Grant a role to an operator (registering it when new): by an admin, never to themselves."""
    from worker import access

    new = access.grant(app(ctx).engine, name, role, acting(ctx, operator), note)
    out.print(f"operator {name}: {role} granted" if new else f"operator {name} already holds {role}")


@operators_cli.command("revoke")
def operators_revoke(
    ctx: typer.Context, name: str,
    role: Annotated[str, typer.Option(help="admin, operator or override")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
    operator: Operator = None,
) -> None:
    """Take a role back from an operator (by an admin; the last admin stays)."""
    from worker import access

    access.revoke(app(ctx).engine, name, role, acting(ctx, operator), note)
    out.print(f"operator {name}: {role} revoked")


@operators_cli.command("list")
def operators_list(ctx: typer.Context) -> None:
    """Every registered operator and the roles it holds."""
    from worker import access

    _write(access.listing(app(ctx).engine), "csv", None)


@cli.command()
def override(
    ctx: typer.Context,
    claim: str,
    waive: Annotated[str, typer.Option(help="The edit code to waive")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
    operator: Operator = None,
) -> None:
    """Waive one edit for one suspended claim and re-queue it (an operator with the override role)."""
    a = app(ctx)
    service.override(a.engine, claim, waive, acting(ctx, operator), note, a.rules)
    out.print(f"claim {claim}: {waive} waived, re-queued")


@audit_cli.callback()
def audit(
    ctx: typer.Context,
    fmt: Annotated[TextFormat, typer.Option("--format")] = TextFormat.csv,
    output: OutputFile = None,
    operator: Operator = None,
) -> None:
    """The audit trail: every operator action and export (who, when, what, why, from which OS user and
    host, and the hash chain); `audit verify` checks the chain."""
    if ctx.invoked_subcommand is not None:
        return
    from worker import access

    engine = app(ctx).engine
    access.record_export(engine, acting(ctx, operator), "audit.export", "audit", fmt.value)
    _write(service.audit_trail(engine), fmt.value, output)


@audit_cli.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit trail's hash chain; names the first entry that breaks it (exit 1). Prints the
    count and the last entry's hash (keep them elsewhere: a trail cut short shows against them)."""
    from worker import audit as audit_chain

    result = audit_chain.verify(app(ctx).engine)
    if not result.intact:
        raise service.UserError(f"audit trail broken at entry {result.broken_at}: {result.problem}")
    out.print(f"audit trail intact: {result.entries} entries, last hash {result.head}")


@cli.command()
def ack(
    ctx: typer.Context,
    batch: str,
    fmt: Annotated[TextFormat, typer.Option("--format", help="csv (a batch row with the counts, then one row per "
                                            "rejected field) or json")] = TextFormat.csv,
    output: OutputFile = None,
    operator: Operator = None,
) -> None:
    """Acknowledge a submitted batch (like X12 999/277CA): accepted and rejected counts, and every
    rejected line with its field and reason (an export: any registered operator, audited)."""
    from worker import access, intake

    a = app(ctx)
    who = access.check(a.engine, acting(ctx, operator))
    document = intake.acknowledgement(a.engine, batch, a.rules)
    access.record_export(a.engine, who, "ack.export", f"batch={batch}", fmt.value)
    if fmt == TextFormat.csv:
        _write(intake.ack_frame(document), "csv", output)
        return
    text = json.dumps(document, indent=1, default=str) + "\n"
    _emit(text, output)


@cli.command()
def watch(
    ctx: typer.Context,
    folder: Path,
    once: Annotated[bool, typer.Option("--once", help="One sweep, then exit")] = False,
    interval: Annotated[Optional[float], typer.Option(help="Seconds between sweeps (env "
                                                      "ADJUDICATION_DROP_INTERVAL_SECONDS, default 30)")] = None,
    settle: Annotated[Optional[float], typer.Option(help="Seconds a file must stay unchanged before it is taken "
                                                    "(env ADJUDICATION_DROP_SETTLE_SECONDS, default 10)")] = None,
) -> None:
    """Submit every complete claim file that appears in FOLDER, then move it to FOLDER/accepted/ or
    FOLDER/rejected/ with its acknowledgement beside it (NAME.ack.json). Loops until interrupted."""
    import signal
    import time

    from worker import intake

    a = app(ctx)
    stop: list[int] = []
    wait = a.settings.drop_interval_seconds if interval is None else interval
    if not once:
        signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    try:
        while True:
            left: list[str] = []
            try:
                results = intake.sweep(a, folder, settle_seconds=settle, should_stop=lambda: bool(stop), left=left)
            except service.UserError:
                raise
            except Exception as error:  # noqa: BLE001 - a long-running watcher reports and tries again
                if once:
                    raise
                # The kind only: an unexpected error's text can quote a value read from a file.
                from worker.errors import database_error

                kind = database_error(error) or type(error).__name__
                err.print(f"error: sweep failed ({kind}); trying again in {wait:g} s", markup=False)
                results = []
            for result in results:
                out.print(result.line(), markup=False)
            if once and left:
                settle_time = a.settings.drop_settle_seconds if settle is None else settle
                err.print(f"left {len(left)} file{'s' if len(left) != 1 else ''} still being written (changed within "
                          f"the last {settle_time:g} s, or named as unfinished); the next sweep takes them",
                          markup=False)
            if once or stop:
                break
            deadline = time.monotonic() + wait
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        err.print("stopped")


def _celery_environment(a: App) -> None:
    """Settings given as flags reach the Celery app (configured from the environment when imported,
    worker.celery_app) and the processes it starts."""
    if not a.settings.broker_url:
        raise service.UserError("this needs --broker URL (or ADJUDICATION_BROKER_URL)")
    os.environ["ADJUDICATION_DATABASE_URL"] = a.settings.database_url
    os.environ["ADJUDICATION_BROKER_URL"] = a.settings.broker_url
    if a.settings.rules_file:
        os.environ["ADJUDICATION_RULES_FILE"] = str(a.settings.rules_file)


@cli.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Tasks at once")] = 2,
    queues: Annotated[Optional[str], typer.Option(
        "--queues", "-Q", help="Queues to take, comma-separated (default both: adjudication.shards, "
        "adjudication.intake)")] = None,
    hostname: Annotated[Optional[str], typer.Option("--hostname", "-n", help="Worker name (Celery's -n)")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="DEBUG, INFO, WARNING, ERROR")] = "INFO",
    pool: Annotated[str, typer.Option("--pool", "-P", help="threads (default), solo or prefork")] = "threads",
    beat: Annotated[bool, typer.Option("--beat/--no-beat", help="Also keep the schedule in this worker (one "
                                       "machine only; otherwise run `adjudicate beat` once)")] = False,
) -> None:
    """Start a Celery worker (needs --broker): it decides the shards of runs started with --broker
    (queue adjudication.shards) and runs the scheduled run and drop-folder sweep (adjudication.intake).
    The same as `celery -A worker.celery_app worker`."""
    _celery_environment(app(ctx))  # before worker.celery_app is imported: its app reads the environment
    from worker.celery_app import QUEUES
    from worker.celery_app import app as celery

    taken = [q.strip() for q in queues.split(",")] if queues else list(QUEUES)
    if set(QUEUES) <= set(taken) and (concurrency < 2 or pool == "solo"):
        # The scheduled run (intake queue) waits for its shards (shards queue): with one slot it
        # would hold the only one and time out, storing nothing.
        raise service.UserError("a worker taking both queues needs --concurrency 2 or more (not the solo pool): "
                                "a scheduled run waits for shards the same worker must decide; or start one "
                                "worker per queue (-Q adjudication.shards, -Q adjudication.intake)")

    # Threads by default, not forked processes: polars' thread pool does not survive a fork (a forked
    # child can hang in it), and the engine's work runs outside the GIL anyway. Celery enforces task
    # time limits in the prefork pool only; runs keep their own deadline whatever the pool.
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", f"--pool={pool}",
            f"--queues={queues or ','.join(QUEUES)}"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv.append("--beat")
    celery.worker_main(argv)


@cli.command()
def beat(
    ctx: typer.Context,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="DEBUG, INFO, WARNING, ERROR")] = "INFO",
) -> None:
    """Keep the schedule (needs --broker): send the nightly run on ADJUDICATION_RUN_SCHEDULE (default
    "0 2 * * *", in ADJUDICATION_TIMEZONE) and the drop-folder sweep every ADJUDICATION_DROP_INTERVAL_SECONDS
    when ADJUDICATION_DROP_FOLDER is set. One process; its state file is in ADJUDICATION_STATE_DIR.
    The same as `celery -A worker.celery_app beat`."""
    _celery_environment(app(ctx))
    from worker.celery_app import app as celery
    from worker.celery_app import settings

    err.print(f"beat: the run on {settings.run_schedule!r} ({settings.timezone}); state in {settings.state_dir}",
              markup=False)
    celery.Beat(loglevel=loglevel).run()


@cli.command()
def health(
    ctx: typer.Context,
    fmt: Annotated[HealthFormat, typer.Option("--format", help="text or json")] = HealthFormat.text,
    max_run_age: Annotated[Optional[float], typer.Option(
        "--max-run-age", help="Hours after which the last run is too old (env "
        "ADJUDICATION_HEALTH_MAX_RUN_AGE_HOURS, default 26)")] = None,
) -> None:
    """Check the database, its schema, the broker, the workers and the last run; exit 0 when all is
    well, 3 when anything is not."""
    from worker import health as checks

    a = app(ctx, creates_database=True)  # no check first: health reports a missing or old database itself
    found, last = checks.checks(a, a.settings.health_max_run_age_hours if max_run_age is None else max_run_age)
    if fmt == HealthFormat.json:
        sys.stdout.write(json.dumps(checks.as_dict(found, last), indent=1) + "\n")
    else:
        for check in found:
            out.print(f"{'ok  ' if check.ok else 'FAIL'}  {check.check}: {check.detail}", markup=False)
    if not all(check.ok for check in found):
        sys.exit(3)  # click returns, not raises, typer.Exit outside standalone mode


class RemitFormat(str, Enum):
    x12 = "x12"
    csv = "csv"
    html = "html"


class ReportFormat(str, Enum):
    html = "html"
    json = "json"


@cli.command()
def remittance(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run")],
    fmt: Annotated[RemitFormat, typer.Option("--format", help="x12 (an 835), csv or html")],
    operator: Operator = None,
    provider: Annotated[Optional[str], typer.Option(help="Only this provider")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", callback=_output_folder,
                                         help="Folder to write run-RUN-provider-P.EXT into (made if missing)")] = Path("."),
) -> None:
    """Remittance advice: one file per provider the run decided claims for (payments, reversals and,
    in csv and html, the pending and rejected claims)."""
    from worker import remittances

    a = app(ctx)
    try:
        written = remittances.remittances(a.engine, run_id, fmt.value, acting(ctx, operator), a.payer, output, provider)
    except OSError as error:  # nothing audited (its transaction rolled back); a full disk is still exit 3
        raise service.UserError(f"--output {output}: cannot write ({error.strerror})") from None
    count = len(written.names)
    out.print(f"{count} remittance{'' if count == 1 else 's'} written to {output}", markup=False)
    if count == 0 and fmt == RemitFormat.x12 and not written.no_835:
        err.print(f"note: run {run_id} paid and reversed no claim of {f'provider {provider}' if provider else 'any provider'}"
                  " (an 835 carries payments and reversals only); its pending and rejected claims are in "
                  "--format csv or html", markup=False)
    if written.no_835:  # the others are written and audited: exit 4, done with a warning
        err.print(f"warning: {written.warning()}", markup=False)
        raise typer.Exit(EXIT_WARNING)


@cli.command()
def report(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run")],
    fmt: Annotated[ReportFormat, typer.Option("--format", help="html (with charts, opens offline) or json")],
    operator: Operator = None,
    output: OutputFile = None,
) -> None:
    """The run report for the billing office: counts and amounts by status, reason, provider and
    procedure; reversals; suspended claims by reason and age; the change from the previous run."""
    from worker import remittances

    text = remittances.report(app(ctx).engine, run_id, fmt.value, acting(ctx, operator))
    _emit(text, output)


@cli.command()
def demo(ctx: typer.Context) -> None:
    """Run the whole story on the shipped fixtures in a temporary database and print a summary."""
    from worker.demo import run_demo

    run_demo(out, rules_file=(ctx.find_root().obj or {}).get("rules_file"))


from worker.http.commands import serve, submitters_cli  # noqa: E402 - commands of the HTTP service

cli.command()(serve)
cli.add_typer(submitters_cli, name="submitters")


def _setting_problem(error) -> str:
    """The first problem of a pydantic ValidationError of the settings, in one line: the variable and
    what is wrong (pydantic's own text would add the input and a link)."""
    first = error.errors()[0]
    message = str(first.get("msg", "")).removeprefix("Value error, ")
    where = "_".join(map(str, first.get("loc", ()))).upper()
    variable = f"ADJUDICATION_{where}" if where else "the settings"
    return message if variable in message else f"{variable}: {message}"


EXIT_OK = 0
EXIT_REFUSED = 1  # refused input: one line `error: ...`, nothing changed
EXIT_USAGE = 2  # usage: typer's usage message
EXIT_UNAVAILABLE = 3  # a service unavailable: database (unreachable, missing, old schema), broker, no worker
# Done, with a warning on stderr: a run completed (stored) with a warning the settings make fatal, or
# a remittance wrote every 835 but those an id did not fit.
EXIT_WARNING = 4
EXIT_LOCKED = 5  # the run lock stayed held by another run for ADJUDICATION_LOCK_WAIT_SECONDS
EXIT_INTERNAL = 70  # an internal error (a bug; EX_SOFTWARE): one line, the traceback at --log-level debug


MAX_MESSAGE_CHARS = 2000


def one_line(error: BaseException) -> str:
    """A refusal as one line: a line break or other control character in a name or id the operator
    typed is shown escaped (it never starts a line of its own), and a message over
    MAX_MESSAGE_CHARS (a huge id echoed) is cut short."""
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(error))
    return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[:MAX_MESSAGE_CHARS]}... ({len(text)} characters)"


def main() -> None:
    """Entry point: one-line errors and the exit codes above (README, docs/operations.md)."""
    from adjudication.claim_file import ClaimFileError
    from adjudication.reference import ReferenceLoadError
    from adjudication.rules import RulesError
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from worker.errors import Unavailable, database_error, unavailable
    from pydantic import ValidationError

    from worker.poison import RunBroke
    from worker.runs import LockTimeout

    try:
        try:
            code = cli(standalone_mode=False)  # typer.Exit(N) comes back as N in this mode
        except Exception as error:
            if (reason := unavailable(error)) is not None:  # a full disk, ...
                raise Unavailable(reason) from error
            raise
        if isinstance(code, int) and code:
            sys.exit(code)
    except (service.UserError, ClaimFileError, ReferenceLoadError, RulesError) as error:
        err.print(f"error: {one_line(error)}", markup=False)
        sys.exit(EXIT_REFUSED)
    except Unavailable as error:
        err.print(f"error: unavailable: {one_line(error)}", markup=False)
        sys.exit(EXIT_UNAVAILABLE)
    except LockTimeout as error:
        err.print(f"error: {one_line(error)}", markup=False)
        sys.exit(EXIT_LOCKED)
    except RunBroke as error:  # recorded as a failed run; the traceback at --log-level debug
        err.print(f"error: internal: {one_line(error)}", markup=False)
        sys.exit(EXIT_INTERNAL)
    except (OperationalError, ProgrammingError) as error:
        first = str(error.orig).splitlines()[0] if error.orig else str(error).splitlines()[0]
        schema = any(s in first for s in ("no such table", "no such column", "does not exist"))
        if schema:
            err.print(f"error: database: {first} (run `adjudicate db upgrade`)", markup=False)
        else:
            err.print(f"error: unavailable: database: {first}", markup=False)
        sys.exit(EXIT_UNAVAILABLE)
    except ValidationError as error:
        err.print(f"error: configuration: {_setting_problem(error)}", markup=False)
        sys.exit(EXIT_REFUSED)
    except (click.exceptions.ClickException, typer.TyperException) as error:
        # typer vendors click (typer._click): its usage errors are not click's classes; both print
        # the usage message and carry their exit code (2 for usage).
        error.show()
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(EXIT_REFUSED)
    except (typer.Exit, click.exceptions.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code)
    except Exception as error:  # noqa: BLE001 - the promise is one line, not a traceback
        if (kind := database_error(error)) is not None:  # its kind and code: the driver's text can quote a value
            err.print(f"error: unavailable: database: {kind}", markup=False)
            sys.exit(EXIT_UNAVAILABLE)
        logging.getLogger("adjudication").debug("internal error", exc_info=True)
        # The type only: the text of an unexpected error may quote stored values (a client's data).
        err.print(f"error: internal: {type(error).__name__} (the traceback is logged at --log-level debug)",
                  markup=False)
        sys.exit(EXIT_INTERNAL)
