"""Use cases of section 8: the remittances of a run (835, CSV, HTML per provider) and its report.

Each reads what the run decided through two repository functions (run_decisions, run_reversals),
renders with the pure builders (adjudication.remittance, adjudication.run_report), and audits
every remittance and report it produces, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Connection, Engine

from adjudication import remittance as rem
from adjudication import run_report
from worker import service
from worker.store import repository as repo

FORMATS = {"x12": "835", "csv": "csv", "html": "html"}


@dataclass(frozen=True)
class Document:
    name: str  # file name: run-7-provider-P1.835
    provider_id: str
    content: bytes


def require_operator(conn: Connection, operator: str | None) -> str:
    """Exports need a registered operator (any role). The one place to put a permission check."""
    if not operator:
        raise service.UserError("--operator NAME is required (a registered operator)")
    if service._role_of(conn, operator) is None:
        raise service.UserError(f"operator {operator} is not registered (adjudicate operators add)")
    return operator


def _run(conn: Connection, run_id: int) -> dict:
    row = repo.run_row(conn, run_id)
    if row is None:
        raise service.UserError(f"no run {run_id}")
    for key in ("started_at", "finished_at"):
        if row[key] is not None and row[key].tzinfo is None:  # SQLite gives back naive UTC
            row[key] = row[key].replace(tzinfo=dt.timezone.utc)
    return row


def file_name(run_id: int, provider_id: str, fmt: str) -> str:
    """run-7-provider-P1.835: characters a file name should not carry become '_'."""
    return f"run-{run_id}-provider-{re.sub(r'[^A-Za-z0-9._-]', '_', provider_id)}.{FORMATS[fmt]}"


def remittances(engine: Engine, run_id: int, fmt: str, operator: str | None, payer: rem.Payer,
                provider: str | None = None) -> list[Document]:
    """One remittance per provider the run decided claims for (only `provider` when given). An 835
    is made for the providers with a payment or a reversal (suspended and rejected claims are not
    in it); CSV and HTML for every provider, with the pending and rejected sections."""
    if fmt not in FORMATS:
        raise service.UserError(f"unknown format {fmt!r} (x12, csv or html)")
    with engine.begin() as conn:
        require_operator(conn, operator)
        run = _run(conn, run_id)
        decisions, reversals = repo.run_decisions(conn, run_id), repo.run_reversals(conn, run_id)
        if provider is not None:
            decisions = decisions.filter(pl.col("provider_id") == provider)
            reversals = reversals.filter(pl.col("provider_id") == provider)
            if decisions.height == 0 and reversals.height == 0:
                raise service.UserError(f"run {run_id} decided no claim of provider {provider}")
        info = rem.RunInfo(run_id, run["finished_at"] or run["started_at"])
        lines = rem.claim_lines(decisions.lazy(), reversals.lazy()).collect().lazy()
        names = repo.provider_names(conn)
        if fmt == "x12":
            documents = [Document(file_name(run_id, p, fmt), p, text.encode("ascii"))
                         for p, _net, text in rem.x12_835(lines, names, payer, info).iter_rows()]
        elif fmt == "csv":
            documents = _csv(run_id, lines)
        else:
            documents = _html(run_id, lines, names, payer, info)
        for document in documents:
            service._audit(conn, operator, "remittance", f"run={run_id} provider={document.provider_id} format={fmt}",
                           document.name)
    return documents


def _csv(run_id: int, lines: pl.LazyFrame) -> list[Document]:
    from worker.cli import safe_for_spreadsheets

    rows = safe_for_spreadsheets(rem.csv_rows(lines, rem.provider_totals(lines)).collect())
    documents = []
    for (provider_id,), frame in rows.partition_by("provider_id", as_dict=True, maintain_order=True).items():
        buffer = io.BytesIO()
        frame.write_csv(buffer)
        documents.append(Document(file_name(run_id, provider_id, "csv"), provider_id, buffer.getvalue()))
    return documents


def _html(run_id: int, lines: pl.LazyFrame, names: pl.DataFrame, payer: rem.Payer, info: rem.RunInfo) -> list[Document]:
    totals = rem.provider_totals(lines).collect()
    sections: dict[str, dict[str, tuple[str, int]]] = {}
    for provider_id, section, rows, count in rem.html_sections(lines).iter_rows():
        sections.setdefault(provider_id, {})[section] = (rows, count)
    name_of = dict(names.filter(pl.col("provider_id").is_in(totals.get_column("provider_id").implode())).rows())
    return [Document(file_name(run_id, row["provider_id"], "html"), row["provider_id"],
                     rem.html_remittance(row["provider_id"], name_of.get(row["provider_id"]),
                                         sections.get(row["provider_id"], {}), row, payer, info).encode("utf-8"))
            for row in totals.iter_rows(named=True)]


def report(engine: Engine, run_id: int, fmt: str, operator: str | None) -> str:
    """The run report as JSON or HTML text; audited."""
    if fmt not in ("json", "html"):
        raise service.UserError(f"unknown format {fmt!r} (html or json)")
    with engine.begin() as conn:
        require_operator(conn, operator)
        run = _run(conn, run_id)
        previous_id = repo.previous_run_id(conn, run_id)
        previous = None
        if previous_id is not None:
            previous = {"run_id": previous_id, "summary": run_report.summary_of(_run(conn, previous_id))}
        figures = run_report.figures(repo.run_decisions(conn, run_id), repo.run_reversals(conn, run_id), run, previous)
        service._audit(conn, operator, "report", f"run={run_id} format={fmt}", "")
    return run_report.to_json(figures) if fmt == "json" else run_report.html(figures)
