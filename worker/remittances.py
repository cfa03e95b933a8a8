"""Use cases of section 8: the remittances of a run (835, CSV, HTML per provider) and its report.

Each reads what the run decided through two repository functions (run_decisions, run_reversals),
renders with the pure builders (adjudication.remittance, adjudication.run_report), and audits
every remittance and report it produces, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from adjudication import remittance as rem
from adjudication import run_report
from worker import access, service
from worker.exports import safe_for_spreadsheets
from worker.store.records import utc
from worker.store.repository import Repository
from worker.store.unit_of_work import unit_of_work

FORMATS = {"x12": "835", "csv": "csv", "html": "html"}


def require_operator(repo: Repository, operator: str | None) -> str:
    """Exports need a registered operator (any role). The one place to put a permission check."""
    return access.authorize(repo, operator, access.ANY_ROLE)


def _run(repo: Repository, run_id: int) -> dict:
    row = repo.run_row(run_id)
    if row is None:
        raise service.UserError(f"no run {run_id}")
    # A dry run and a failed run stored no outcomes: an empty report would read as a night with nothing.
    if row["status"] == "dry-run":
        raise service.UserError(f"run {run_id} was a dry run: it stored nothing to report (its counts are in `runs`)")
    if row["status"] != "done":
        raise service.UserError(f"run {run_id} {row['status']}: it stored nothing to report (`runs` says why)")
    for key in ("started_at", "finished_at"):
        if row[key] is not None:  # SQLite gives back naive UTC; PostgreSQL the session's time zone
            row[key] = utc(row[key]).astimezone(dt.timezone.utc)  # the report's dates (ages) are UTC dates
    return row


def file_name(run_id: int, provider_id: str, fmt: str) -> str:
    """run-7-provider-P1.835. A provider id with characters a file name should not carry has them
    replaced by '_' and a short hash of the id added, so two providers never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", provider_id)
    if safe != provider_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha256(provider_id.encode()).hexdigest()[:8]}"
    return f"run-{run_id}-provider-{safe}.{FORMATS[fmt]}"


class No835(service.UserError):
    """The provider's 835 cannot be made: an id of its payments is longer than the 835 allows."""


@dataclass(frozen=True)
class Written:
    """What `remittances` wrote (file names, in provider order), and the providers it made no 835
    for (provider_id, element: rem.x12_unfit), whose CSV and HTML remittances carry every claim."""

    names: list[str]
    no_835: list[tuple[str, str]]

    def warning(self) -> str | None:
        if not self.no_835:
            return None
        first, element = self.no_835[0]
        others = f" and {len(self.no_835) - 1} other providers" if len(self.no_835) > 1 else ""
        return (f"no 835 for provider {first}{others}: an id is longer than the 835 allows ({element}); "
                "their csv and html remittances carry every claim")


def remittances(engine: service.Store, run_id: int, fmt: str, operator: str | None, payer: rem.Payer, output: Path,
                provider: str | None = None, *, submitter: str | None = None) -> Written:
    """Write one remittance per provider the run decided claims for (only `provider` when given)
    into `output`. An 835 is made for the providers with a payment or a
    reversal (suspended and rejected claims are not in it); CSV and HTML for every provider, with
    the pending and rejected sections. Each file is audited; a failure writes no audit entry."""
    if fmt not in FORMATS:
        raise service.UserError(f"unknown format {fmt!r} (x12, csv or html)")
    with unit_of_work(engine) as repo:
        if submitter is None:  # an HTTP submitter was authenticated by its token, for this provider
            require_operator(repo, operator)
        run = _run(repo, run_id)
        decisions, reversals = repo.run_decisions(run_id), repo.run_reversals(run_id)
        if provider is not None:
            decisions = decisions.filter(pl.col("provider_id") == provider)
            reversals = reversals.filter(pl.col("provider_id") == provider)
            if decisions.height == 0 and reversals.height == 0:
                raise service.UserError(f"run {run_id} decided no claim of provider {provider}")
        info = rem.RunInfo(run_id, run["finished_at"] or run["started_at"])
        lines = rem.claim_lines(decisions.lazy(), reversals.lazy()).collect().lazy()
        totals = rem.provider_totals(lines).collect()
        adjustments = rem.balance_forward(repo.provider_nets_before(run_id), run_id,
                                          totals.select("provider_id", "net_cents"))
        if fmt == "x12" and len(payer.receiver_id) > rem.X12_RECEIVER_LIMIT:
            raise service.UserError(f"ADJUDICATION_REMIT_RECEIVER_ID is longer than the 835's "
                                    f"{rem.X12_RECEIVER_LIMIT} characters (ISA08, GS03)")
        output.mkdir(parents=True, exist_ok=True)
        no_835 = []
        if fmt == "x12":
            no_835 = rem.x12_unfit(lines, payer, run_id).rows()
            lines = lines.filter(~pl.col("provider_id").is_in([provider_id for provider_id, _ in no_835]))
            texts = rem.x12_835(lines, repo.provider_names(), payer, info, adjustments)
            providers = _write(run_id, fmt, texts.iter_rows(), output, "ascii")
        elif fmt == "csv":
            providers = _write(run_id, fmt, _csv(lines, totals, adjustments), output, "utf-8")
        else:
            providers = _write(run_id, fmt, _html(lines, totals, adjustments, repo.provider_names(), payer, info),
                               output, "utf-8")
        written = [(p, file_name(run_id, p, fmt)) for p in providers]
        repo.audit_many(submitter or operator, "remittance", [
            (f"run={run_id} provider={p} format={fmt}", name) for p, name in written])
    # One provider's ids do not hold back the others' 835s: the caller says which were not made.
    return Written([name for _p, name in written], no_835)


def provider_remittance(engine: service.Store, run_id: int, provider: str, fmt: str, submitter: str,
                        payer: rem.Payer) -> str:
    """One provider's remittance of a run as text, for an HTTP submitter posting for that provider
    (audited as the submitter); service.UserError when the run decided none of its claims."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        written = remittances(engine, run_id, fmt, None, payer, Path(folder), provider, submitter=submitter)
        if written.no_835:
            raise No835(written.warning())
        if not written.names:
            raise service.UserError(f"run {run_id} has no remittance for provider {provider}")
        return (Path(folder) / written.names[0]).read_text(encoding="utf-8")


def _write(run_id: int, fmt: str, files: Iterator[tuple[str, str]], output: Path, encoding: str) -> list[str]:
    """Write each provider's text ((provider_id, text) pairs) to its file; returns the providers, in
    that order."""
    providers = []
    for provider_id, text in files:
        (output / file_name(run_id, provider_id, fmt)).write_bytes(text.encode(encoding))
        providers.append(provider_id)
    return providers


def _csv(lines: pl.LazyFrame, totals: pl.DataFrame, adjustments: pl.DataFrame) -> Iterator[tuple[str, str]]:
    """Each provider's CSV text (polars' writer), in the order providers first appear, posted values
    guarded against spreadsheet formulas."""
    rows = rem.csv_rows(lines, totals.lazy(), adjustments).collect()
    posted = ["provider_id", "claim_id", "adjusts", "batch_id", "client_prime", "procedure_code", "modifier"]
    # A file per provider id as stored (key); the column shows it guarded.
    guarded = rows.with_columns(safe_for_spreadsheets(rows.select(posted)).get_columns(), key=pl.col("provider_id"))
    for (provider_id,), provider_rows in guarded.partition_by("key", maintain_order=True, as_dict=True).items():
        yield provider_id, provider_rows.select(rem.CSV_COLUMNS).write_csv()


def _html(lines: pl.LazyFrame, totals: pl.DataFrame, adjustments: pl.DataFrame, names: pl.DataFrame,
          payer: rem.Payer, info: rem.RunInfo) -> Iterator[tuple[str, str]]:
    """Each provider's page (provider_id, text), made as it is written."""
    balances: dict[str, list[tuple[int, int]]] = {}
    for provider_id, balance_run, cents in adjustments.iter_rows():
        balances.setdefault(provider_id, []).append((balance_run, cents))
    sections: dict[str, dict[str, tuple[str, int]]] = {}
    for provider_id, section, rows, count in rem.html_sections(lines).iter_rows():
        sections.setdefault(provider_id, {})[section] = (rows, count)
    name_of = dict(names.filter(pl.col("provider_id").is_in(totals.get_column("provider_id").implode())).rows())
    with_balances = totals.join(rem.adjustment_totals(adjustments), on="provider_id", how="left", maintain_order="left")
    for row in with_balances.iter_rows(named=True):
        yield row["provider_id"], rem.html_remittance(row["provider_id"], name_of.get(row["provider_id"]),
                                                      sections.get(row["provider_id"], {}), row, payer, info,
                                                      balances.get(row["provider_id"], []))


def report(engine: service.Store, run_id: int, fmt: str, operator: str | None) -> str:
    """The run report as JSON or HTML text; audited."""
    if fmt not in ("json", "html"):
        raise service.UserError(f"unknown format {fmt!r} (html or json)")
    with unit_of_work(engine) as repo:
        require_operator(repo, operator)
        run = _run(repo, run_id)
        previous_id = repo.previous_run_id(run_id)
        previous = None
        if previous_id is not None:
            previous = {"run_id": previous_id, "summary": run_report.summary_of(_run(repo, previous_id))}
        figures = run_report.figures(repo.run_decisions(run_id), repo.run_reversals(run_id), run, previous,
                                     earlier_nets=repo.provider_nets_before(run_id),
                                     backlog=repo.suspended_after(run_id))
        repo.audit(operator, "report", f"run={run_id} format={fmt}", "")
    return run_report.to_json(figures) if fmt == "json" else run_report.html(figures)
