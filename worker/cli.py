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

from worker import service
from worker.bootstrap import App, build

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Adjudicate home and community-based services claims against prior authorizations.")
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
reference_cli = typer.Typer(no_args_is_help=True, help="Reference data: providers, plans, enrollments, SPAs.")
operators_cli = typer.Typer(no_args_is_help=True, help="Operators and their roles.")
cli.add_typer(db_cli, name="db")
cli.add_typer(reference_cli, name="reference")
cli.add_typer(operators_cli, name="operators")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


class TextFormat(str, Enum):
    csv = "csv"
    json = "json"


@cli.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (env ADJUDICATION_DATABASE_URL); "
                                              "default sqlite:///adjudication.db")] = None,
    broker: Annotated[Optional[str], typer.Option("--broker", help="Celery broker URL (env ADJUDICATION_BROKER_URL)")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Rules file (env ADJUDICATION_RULES_FILE)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {k: v for k, v in {"database_url": db, "broker_url": broker, "rules_file": rules}.items() if v}
    ctx.obj = overrides


def app(ctx: typer.Context) -> App:
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = build(**(root.obj or {}))
    return root.obj


@contextmanager
def progress_bar(enabled: bool):
    """A rich progress bar on a terminal; silence elsewhere (pipes, CI logs)."""
    if not enabled or not out.is_terminal:
        yield service._quiet
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@db_cli.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the schema to the newest version."""
    a = app(ctx)
    service.upgrade_schema(a.engine)
    out.print(f"schema up to date ({a.engine.url.render_as_string(hide_password=True)})")


@reference_cli.command("load")
def reference_load(ctx: typer.Context, folder: Path) -> None:
    """Load providers.csv, plans.csv, enrollments.csv and spas.csv from FOLDER (all-or-nothing)."""
    a = app(ctx)
    counts = service.load_reference(a.engine, folder, a.rules)
    out.print("loaded " + ", ".join(f"{name}: {n} rows" for name, n in counts.items()))


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
    with progress_bar(True) as progress:
        result = service.submit(a.engine, file, a.rules, a.limits, progress, received and received.date())
    out.print(result.batch_id)
    if result.new:
        err.print(f"queued {result.claims} claims ({result.rejected_at_intake} fail record checks)")
    elif result.status == "withdrawn":
        err.print("already submitted, and withdrawn: nothing changed (post a corrected file to queue its claims)")
    else:
        err.print("already submitted: nothing changed")


@cli.command()
def run(ctx: typer.Context) -> None:
    """Adjudicate everything queued (the nightly run) and print a summary."""
    a = app(ctx)
    with progress_bar(True) as progress:
        summary = a.run(progress)
    out.print(
        f"run {summary.run_id if summary.run_id is not None else '-'}: {summary.claims} claims, "
        f"{summary.paid} paid, {summary.suspended} suspended, {summary.rejected} rejected, "
        f"amount paid {summary.paid_cents // 100}.{summary.paid_cents % 100:02d}"
    )


def _write(frame: pl.DataFrame, fmt: str, output: Optional[Path]) -> None:
    if fmt == "parquet":
        if output is None:
            raise service.UserError("--format parquet needs --output FILE")
        frame.write_parquet(output)
        return
    if fmt == "csv":
        text = safe_for_spreadsheets(frame).write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), indent=1, default=str) + "\n"
    else:
        buffer = io.StringIO()
        for row in frame.to_dicts():
            buffer.write(json.dumps(row, default=str) + "\n")
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def safe_for_spreadsheets(frame: pl.DataFrame) -> pl.DataFrame:
    """Cells a spreadsheet would run as a formula get a leading apostrophe."""
    pattern = r"^[=+\-@\t\r]"
    return frame.with_columns(
        [pl.when(pl.col(c).str.contains(pattern)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
         for c, dtype in frame.schema.items() if dtype == pl.String]
    )


@cli.command()
def outcomes(
    ctx: typer.Context,
    fmt: Annotated[Format, typer.Option("--format", help="csv, json (an array), jsonl or parquet")] = Format.csv,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Only this batch")] = None,
    status: Annotated[Optional[str], typer.Option(help="Only paid, suspended or rejected")] = None,
    history: Annotated[bool, typer.Option("--history", help="Every attempt, not only the latest")] = False,
    operator: Annotated[str, typer.Option(help="Who exports (recorded in the audit trail)")] = "system",
) -> None:
    """Export outcomes: the latest attempt per claim, in adjudication order."""
    if status and status not in ("paid", "suspended", "rejected"):
        raise service.UserError(f"unknown status {status!r} (paid, suspended or rejected)")
    frame = service.outcomes(app(ctx).engine, batch=batch, status=status, history=history, operator=operator,
                             export_format=fmt.value)
    _write(frame, fmt.value, output)


@cli.command()
def requeue(
    ctx: typer.Context,
    operator: Annotated[str, typer.Option(help="Who re-queues (audited)")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
    claim: Annotated[Optional[list[str]], typer.Option("--claim", help="A claim id; repeat for more")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Suspended claims of this batch")] = None,
    provider: Annotated[Optional[str], typer.Option(help="... of this provider")] = None,
    client: Annotated[Optional[str], typer.Option(help="... of this client (prime)")] = None,
    reason: Annotated[Optional[str], typer.Option(help="... suspended for this reason code")] = None,
    date_from: Annotated[Optional[str], typer.Option("--from", help="... serviced on or after YYYY-MM-DD")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="... serviced on or before YYYY-MM-DD")] = None,
) -> None:
    """Re-queue suspended claims (selectors combine with AND) for the next run."""
    selection = service.Selection(tuple(claim or ()), batch, provider, client, reason, date_from, date_to)
    ids = service.requeue(app(ctx).engine, selection, operator, note)
    out.print(f"re-queued {len(ids)} claims")


@cli.command()
def withdraw(
    ctx: typer.Context,
    batch: str,
    operator: Annotated[str, typer.Option(help="Who withdraws (a registered operator; audited)")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
) -> None:
    """Take a queued batch out of the queue before a run reads it: its claims are never adjudicated."""
    claims = service.withdraw(app(ctx).engine, batch, operator, note)
    out.print(f"withdrew batch {batch} ({claims} claims)")


@operators_cli.command("add")
def operators_add(
    ctx: typer.Context, name: str,
    role: Annotated[str, typer.Option(help="operator or override")] = "operator",
) -> None:
    """Add an operator (or change the role of one)."""
    service.add_operator(app(ctx).engine, name, role)
    out.print(f"operator {name}: {role}")


@cli.command()
def override(
    ctx: typer.Context,
    claim: str,
    waive: Annotated[str, typer.Option(help="The edit code to waive")],
    operator: Annotated[str, typer.Option(help="An operator with the override role")],
    note: Annotated[str, typer.Option(help="Why (audited)")],
) -> None:
    """Waive one edit for one suspended claim and re-queue it."""
    a = app(ctx)
    service.override(a.engine, claim, waive, operator, note, a.rules)
    out.print(f"claim {claim}: {waive} waived, re-queued")


@cli.command()
def audit(
    ctx: typer.Context,
    fmt: Annotated[TextFormat, typer.Option("--format")] = TextFormat.csv,
    output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,
) -> None:
    """The audit trail: every operator action and export (who, when, what, why)."""
    _write(service.audit_trail(app(ctx).engine), fmt.value, output)


@cli.command()
def ack(
    ctx: typer.Context,
    batch: str,
    fmt: Annotated[TextFormat, typer.Option("--format", help="csv (a batch row with the counts, then one row per "
                                            "rejected field) or json")] = TextFormat.csv,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout")] = None,
) -> None:
    """Acknowledge a submitted batch (like X12 999/277CA): accepted and rejected counts, and every
    rejected line with its field and reason."""
    from worker import intake

    a = app(ctx)
    document = intake.acknowledgement(a.engine, batch, a.rules)
    if fmt == TextFormat.csv:
        _write(intake.ack_frame(document), "csv", output)
        return
    text = json.dumps(document, indent=1, default=str) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


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
            try:
                results = intake.sweep(a, folder, settle_seconds=settle, should_stop=lambda: bool(stop))
            except service.UserError:
                raise
            except Exception as error:  # noqa: BLE001 - a long-running watcher reports and tries again
                if once:
                    raise
                err.print(f"error: sweep failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                          f"trying again in {wait:g} s", markup=False)
                results = []
            for result in results:
                out.print(result.line(), markup=False)
            if once or stop:
                break
            deadline = time.monotonic() + wait
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        err.print("stopped")


@cli.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(help="Shards decided at once (threads)")] = 2,
    beat: Annotated[bool, typer.Option(help="Also schedule the drop-folder sweep (ADJUDICATION_DROP_FOLDER)")] = True,
) -> None:
    """Start a Celery worker (needs --broker): it decides the shards of runs started with --broker,
    and sweeps the drop folder on a schedule."""
    import logging

    from worker.tasks import make_celery

    a = app(ctx)
    if not a.settings.broker_url:
        raise service.UserError("a worker needs --broker URL (or ADJUDICATION_BROKER_URL)")
    # Settings given as flags reach the tasks through the environment the worker processes inherit.
    os.environ["ADJUDICATION_DATABASE_URL"] = a.settings.database_url
    os.environ["ADJUDICATION_BROKER_URL"] = a.settings.broker_url
    # Celery logs every task's return value at INFO: a shard's outcomes are claim data.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    # Threads, not forked processes: polars' thread pool does not survive a fork (a forked child can
    # hang in it), and the engine's work runs outside the GIL anyway.
    argv = ["worker", f"--concurrency={concurrency}", "--loglevel=INFO", "--pool=threads"]
    if beat:
        argv.append("--beat")
    make_celery(a.settings).worker_main(argv)


@cli.command()
def demo(ctx: typer.Context) -> None:
    """Run the whole story on the shipped fixtures in a temporary database and print a summary."""
    from worker.demo import run_demo

    run_demo(out, rules_file=(ctx.find_root().obj or {}).get("rules_file"))


def main() -> None:
    """Entry point: one-line errors and reliable exit codes (0 ok, 1 refused input, 2 internal)."""
    from adjudication.claim_file import ClaimFileError
    from adjudication.reference import ReferenceLoadError
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from pydantic import ValidationError

    try:
        cli(standalone_mode=False)
    except (service.UserError, ClaimFileError, ReferenceLoadError) as error:
        err.print(f"error: {error}", markup=False)
        sys.exit(1)
    except (OperationalError, ProgrammingError) as error:
        first = str(error.orig).splitlines()[0] if error.orig else str(error).splitlines()[0]
        hint = " (run `adjudicate db upgrade` first?)" if "no such table" in first or "does not exist" in first else ""
        err.print(f"error: database: {first}{hint}", markup=False)
        sys.exit(1)
    except ValidationError as error:
        err.print(f"error: configuration: {str(error).splitlines()[0]} {str(error).splitlines()[1:3]}", markup=False)
        sys.exit(1)
    except click.exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code)
    except Exception as error:  # noqa: BLE001 - the promise is one line, not a traceback
        logging.getLogger("adjudication").debug("internal error", exc_info=True)
        err.print(f"error: internal: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                  markup=False)
        sys.exit(2)
