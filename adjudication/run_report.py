"""The run report for the billing office: figures from what a run decided, as JSON and as HTML.

Pure: frames in (worker.store.repository.DECISION_SCHEMA / REVERSAL_SCHEMA), a dict of figures
out, computed with lazy group-bys (a million claims are never Python objects); `html` draws the
same figures with inline SVG charts, and the page fetches nothing (no scripts, fonts or styles
from elsewhere; a Content-Security-Policy forbids it).

Money is exact decimal text ("196.44"); counts are integers.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from adjudication.remittance import (AMOUNT_SENT, NET_SCHEMA, OFFLINE_POLICY, STYLE, adjustment_totals,
                                     balance_forward, escape, money, money_text, units_text)

STATUSES = ("paid", "suspended", "rejected", "void")
AGE_BUCKETS = ((0, 30, "0-30 days"), (31, 60, "31-60 days"), (61, 90, "61-90 days"), (91, 180, "91-180 days"),
               (181, None, "over 180 days"))
# The claims waiting suspended after a run (worker.store.repository.suspended_after).
BACKLOG_SCHEMA = {"claim_pk": pl.Int64, "reasons": pl.List(pl.String), "first_suspended": pl.Datetime("us", "UTC")}
# A reason's code: INVALID_RECORD:units -> INVALID_RECORD.
CODE = pl.col("reasons").str.split(":").list.first()
HTML_PROVIDER_ROWS = 200  # the HTML lists the providers with the most paid; the JSON has all


def _rows(frame: pl.LazyFrame, money_columns: dict[str, str] | None = None) -> list[dict]:
    """The rows as dicts; money_columns: {cents column: the name of its amount as text} (a JSON key
    names an amount, never the cents it was summed in)."""
    money_columns = money_columns or {}
    return (frame.with_columns([money_text(pl.col(c)).alias(c) for c in money_columns])
            .rename(money_columns).collect().to_dicts())


def _by_age(suspended: pl.LazyFrame, as_of: dt.date) -> list[dict]:
    """Claims (first_suspended) counted by AGE_BUCKETS: days from their first suspension to as_of."""
    age = (pl.lit(as_of, pl.Date) - pl.col("first_suspended").dt.date()).dt.total_days()
    bucket = pl.lit(AGE_BUCKETS[-1][2])
    for low, high, label in reversed(AGE_BUCKETS[:-1]):
        bucket = pl.when(age <= high).then(pl.lit(label)).otherwise(bucket)
    ages = dict(suspended.group_by(bucket.alias("age")).agg(pl.len()).collect().rows())
    return [{"age": label, "claims": int(ages.get(label, 0))} for _low, _high, label in AGE_BUCKETS]


def _by_code(coded: pl.LazyFrame) -> list[dict]:
    """Claims (a row per claim and reason code) counted by code, most first."""
    return _rows(coded.group_by("code").agg(claims=pl.len()).sort("claims", "code", descending=[True, False]))


def figures(decisions: pl.DataFrame, reversals: pl.DataFrame, run: dict, previous: dict | None,
            earlier_nets: pl.DataFrame | None = None, backlog: pl.DataFrame | None = None) -> dict:
    """Every figure of the report. run / previous: id, started_at, finished_at (datetimes) and,
    for previous, its totals as `summary` gives them (or None for the first run). earlier_nets:
    the providers' nets of the runs before (run_id, provider_id, net_cents: what `balance_forward`
    reads), for the amount each provider is sent (the 835's BPR02); backlog: the claims left
    waiting suspended after the run (claim_pk, reasons, first_suspended), this run's and earlier
    ones', the operators' work queue."""
    decided = decisions.lazy()
    taken = reversals.lazy()
    as_of = run["started_at"].date()
    status = pl.col("status")
    counts = decided.group_by("status").agg(claims=pl.len(), paid_cents=pl.col("paid_cents").sum()).collect()
    by_status_map = {s: (0, 0) for s in STATUSES} | {r["status"]: (r["claims"], r["paid_cents"])
                                                     for r in counts.to_dicts()}
    reversed_cents = int(reversals.get_column("paid_cents").sum() or 0)
    paid_cents = by_status_map["paid"][1]
    summary = {
        "claims": decisions.height, **{s: by_status_map[s][0] for s in STATUSES},
        "reversals": reversals.height, "amount_paid": money(paid_cents), "amount_reversed": money(reversed_cents),
        "net": money(paid_cents - reversed_cents),
    }
    # One row per claim and reason code: a line rejected for several fields (INVALID_RECORD:units;
    # INVALID_RECORD:service_date) counts once under INVALID_RECORD.
    coded = (decided.filter(status.is_in(["suspended", "rejected"]))
             .select("status", "reasons", "carc", "first_suspended", claim=pl.int_range(pl.len()))
             .explode("reasons", "carc")
             .with_columns(code=CODE)
             .unique(["claim", "code"], maintain_order=True))
    by_reason = _rows(coded.group_by("code", "carc").agg(
        suspended=(status == "suspended").sum().cast(pl.Int64), rejected=(status == "rejected").sum().cast(pl.Int64),
        claims=pl.len()).sort("claims", "code", descending=[True, False]))
    per_provider = decided.group_by("provider_id").agg(
        claims=pl.len(), **{s: (status == s).sum().cast(pl.Int64) for s in STATUSES},
        paid_cents=pl.col("paid_cents").sum())
    reversed_by_provider = taken.group_by("provider_id").agg(reversals=pl.len(), reversed_cents=pl.col("paid_cents").sum())
    nets = (per_provider.join(reversed_by_provider, on="provider_id", how="full", coalesce=True)
            .with_columns(pl.col("claims", *STATUSES, "reversals", "paid_cents", "reversed_cents").fill_null(0))
            .with_columns(net_cents=pl.col("paid_cents") - pl.col("reversed_cents")).collect())
    # What each provider is sent, as its 835 says: a negative net pays 0 and is carried forward, a
    # positive one first recovers what earlier runs carried forward (adjudication.remittance).
    carried = adjustment_totals(balance_forward(
        pl.DataFrame(schema=NET_SCHEMA) if earlier_nets is None else earlier_nets, run["run_id"],
        nets.select("provider_id", "net_cents")))
    issued = (nets.lazy().join(carried.lazy(), on="provider_id", how="left")
              .with_columns(pl.col("plb_cents", "forwarded_cents", "recovered_cents").fill_null(0))
              .with_columns(issued_cents=AMOUNT_SENT).drop("plb_cents"))
    issued_cents = int(issued.select(pl.col("issued_cents").sum()).collect().item() or 0)
    by_provider = _rows(issued.sort("paid_cents", "provider_id", descending=[True, False], nulls_last=True),
                        {"paid_cents": "amount_paid", "reversed_cents": "amount_reversed", "net_cents": "net",
                         "forwarded_cents": "balance_carried_forward", "recovered_cents": "balance_recovered",
                         "issued_cents": "amount_issued"})
    by_procedure = _rows(decided.group_by("procedure_code", "modifier").agg(
        claims=pl.len(), **{s: (status == s).sum().cast(pl.Int64) for s in STATUSES},
        paid_cents=pl.col("paid_cents").sum(), paid_units_s=pl.col("paid_units_s").sum())
        .with_columns(paid_units=units_text(pl.col("paid_units_s"))).drop("paid_units_s")
        .sort("paid_cents", "procedure_code", "modifier", descending=[True, False, False], nulls_last=True),
        {"paid_cents": "amount_paid"})
    suspended_by_reason = _by_code(coded.filter(status == "suspended"))
    suspended_by_age = _by_age(decided.filter(status == "suspended"), as_of)
    waiting = (pl.DataFrame(schema=BACKLOG_SCHEMA) if backlog is None else backlog).lazy()
    waiting_coded = (waiting.select("claim_pk", "reasons").explode("reasons").with_columns(code=CODE)
                     .unique(["claim_pk", "code"]))
    backlog_figures = {"claims": int(waiting.select(pl.len()).collect().item()),
                       "by_reason": _by_code(waiting_coded), "by_age": _by_age(waiting, as_of)}
    reversal_rows = _rows(taken.select("claim_id", "reversed_by", "provider_id", "procedure_code", "modifier",
                                       pl.col("service_date").cast(pl.String), "paid_cents"),
                          {"paid_cents": "amount_taken_back"})
    report = {
        "run": {"run_id": run["run_id"], "started_at": _time(run["started_at"]),
                "finished_at": _time(run.get("finished_at")), **summary},
        "by_status": [{"status": s, "claims": by_status_map[s][0], "amount": money(by_status_map[s][1])}
                      for s in STATUSES],
        "by_reason": by_reason,
        "by_provider": by_provider,
        "by_procedure": by_procedure,
        "reversals": {"count": reversals.height, "amount": money(reversed_cents), "claims": reversal_rows},
        "suspended_by_reason": suspended_by_reason,
        "suspended_by_age": suspended_by_age,
        "waiting_suspended": backlog_figures,
        "previous": None,
    }
    report["run"]["amount_issued"] = money(issued_cents)
    if previous is not None:
        report["previous"] = {"run_id": previous["run_id"], **previous["summary"],
                              "difference": _difference(summary, previous["summary"])}
    return report


def summary_of(row: dict) -> dict:
    """A run's totals from its stored row (for the previous run), in the shape of `figures`' run."""
    paid, reversed_cents = row.get("paid_cents") or 0, row.get("reversed_cents") or 0
    return {"claims": row["claims"], "paid": row["paid"], "suspended": row["suspended"], "rejected": row["rejected"],
            "void": row.get("voids") or 0, "amount_paid": money(paid), "amount_reversed": money(reversed_cents),
            "net": money(paid - reversed_cents)}


def _difference(now: dict, before: dict) -> dict:
    def cents(text: str) -> int:
        sign = -1 if text.startswith("-") else 1
        whole, fraction = text.lstrip("-").split(".")
        return sign * (int(whole) * 100 + int(fraction))

    difference = {k: now[k] - before[k] for k in ("claims", "paid", "suspended", "rejected", "void")}
    difference.update({k: money(cents(now[k]) - cents(before[k])) for k in ("amount_paid", "amount_reversed", "net")})
    return difference


def _time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def to_json(report: dict) -> str:
    return json.dumps(report, separators=(",", ":")) + "\n"  # compact: the C encoder (indent is pure Python)


# --- HTML ------------------------------------------------------------------------------------

def bar_chart(name: str, items: list[tuple[str, float, str]], color: str = "#3b6ea8") -> str:
    """A horizontal bar chart as inline SVG: (label, value, value as text) per bar."""
    if not items:
        return ""
    top = max(value for _label, value, _text in items) or 1
    bar_height, label_width, bar_width = 22, 230, 420
    rows = []
    for index, (label, value, text) in enumerate(items):
        y = index * bar_height
        width = max(1.0, bar_width * value / top) if value > 0 else 0.0
        rows.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
                    f'<rect x="{label_width}" y="{y + 3}" width="{width:.1f}" height="{bar_height - 6}" fill="{color}">'
                    f"<title>{escape(label)}: {escape(text)}</title></rect>"
                    f'<text x="{label_width + width + 6:.1f}" y="{y + 15}">{escape(text)}</text>')
    height = bar_height * len(items)
    return (f'<svg class="chart" data-chart="{name}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'width="{label_width + bar_width + 220}" height="{height}" font-size="12" font-family="sans-serif">'
            + "".join(rows) + "</svg>")


def _table(columns: list[tuple[str, str]], rows: list[dict], numeric: set[str]) -> str:
    head = "".join(f'<th class="n">{escape(title)}</th>' if key in numeric else f"<th>{escape(title)}</th>"
                   for key, title in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{escape(str(row.get(key, "")))}</td>' if key in numeric
        else f'<td>{escape("" if row.get(key) is None else str(row.get(key)))}</td>' for key, _title in columns)
        + "</tr>\n" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _suspended(name: str, by_reason: list[dict], by_age: list[dict], claims: int, none: str) -> list[str]:
    """Suspended claims by reason and by age: charts and tables (or a line saying there are none)."""
    if not claims:
        return [f'<p class="muted">{escape(none)}</p>']
    return ["<h3>By reason</h3>",
            bar_chart(f"{name}-reasons", [(r["code"], r["claims"], str(r["claims"])) for r in by_reason], "#c28a1e"),
            _table([("code", "reason"), ("claims", "claims")], by_reason, {"claims"}),
            "<h3>By age (days since first suspended, at the run)</h3>",
            bar_chart(f"{name}-ages", [(r["age"], r["claims"], str(r["claims"])) for r in by_age], "#c28a1e"),
            _table([("age", "age"), ("claims", "claims")], by_age, {"claims"})]


def _amount(text: str) -> float:
    return float(text)  # chart lengths only; every figure shown is the exact text


def html(report: dict) -> str:
    run = report["run"]
    title = f"Run {run['run_id']} report"
    cards = "".join(
        f'<div class="card"><span class="muted">{label}</span><b id="{key}">{escape(str(run[field]))}</b></div>'
        for key, label, field in (("total-claims", "Claims", "claims"), ("total-paid", "Paid", "paid"),
                                  ("total-suspended", "Suspended", "suspended"),
                                  ("total-rejected", "Rejected", "rejected"), ("total-void", "Voids", "void"),
                                  ("amount-paid", "Amount paid", "amount_paid"),
                                  ("amount-reversed", "Amount reversed", "amount_reversed"),
                                  ("amount-net", "Net", "net"), ("amount-issued", "Amount issued", "amount_issued")))
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="muted">Started {escape(run["started_at"] or "")}, finished {escape(run["finished_at"] or "-")}'
             " (UTC).</p>", f'<div class="cards">{cards}</div>']

    parts.append("<h2>By status</h2>")
    parts.append(bar_chart("status", [(r["status"], r["claims"], f'{r["claims"]} claims, {r["amount"]}')
                                      for r in report["by_status"] if r["claims"]]))
    parts.append(_table([("status", "status"), ("claims", "claims"), ("amount", "amount")], report["by_status"],
                        {"claims", "amount"}))

    parts.append("<h2>By reason code</h2>")
    if report["by_reason"]:
        parts.append(bar_chart("reasons", [(r["code"], r["claims"], str(r["claims"])) for r in report["by_reason"]],
                               "#b5523b"))
        parts.append(_table([("code", "reason"), ("carc", "CARC"), ("suspended", "suspended"),
                             ("rejected", "rejected"), ("claims", "claims")], report["by_reason"],
                            {"suspended", "rejected", "claims"}))
    else:
        parts.append('<p class="muted">No claim was suspended or rejected.</p>')

    providers = report["by_provider"]
    parts.append(f"<h2>By provider ({len(providers)})</h2>")
    paid_providers = [r for r in providers if r["paid"] or r["reversals"]][:25]
    parts.append(bar_chart("providers", [(r["provider_id"], _amount(r["amount_paid"]), r["amount_paid"])
                                         for r in paid_providers]))
    shown = providers[:HTML_PROVIDER_ROWS]
    if len(providers) > len(shown):
        parts.append(f'<p class="muted">The {len(shown)} providers paid the most; the JSON report lists all '
                     f"{len(providers)}.</p>")
    # What the provider is sent (its 835's BPR02): the net, less a balance carried forward or
    # recovered (docs/remittance.md).
    parts.append(_table([("provider_id", "provider"), ("claims", "claims"), ("paid", "paid"),
                         ("suspended", "suspended"), ("rejected", "rejected"), ("void", "voids"),
                         ("amount_paid", "amount paid"), ("amount_reversed", "reversed"), ("net", "net"),
                         ("balance_carried_forward", "carried forward"), ("balance_recovered", "recovered"),
                         ("amount_issued", "issued")],
                        shown, {"claims", "paid", "suspended", "rejected", "void", "amount_paid", "amount_reversed",
                                "net", "balance_carried_forward", "balance_recovered", "amount_issued"}))

    parts.append("<h2>By procedure and modifier</h2>")
    procedures = report["by_procedure"]
    parts.append(bar_chart("procedures", [(f'{r["procedure_code"] or "?"}/{r["modifier"] or "-"}',
                                           _amount(r["amount_paid"]), r["amount_paid"]) for r in procedures[:25]
                                          if r["paid"]]))
    # A void needs no procedure code: voids (and lines rejected without one) are the row without.
    parts.append(_table([("procedure_code", "procedure"), ("modifier", "modifier"), ("claims", "claims"),
                         ("paid", "paid"), ("suspended", "suspended"), ("rejected", "rejected"), ("void", "voids"),
                         ("paid_units", "units paid"), ("amount_paid", "amount paid")],
                        [{**r, "procedure_code": r["procedure_code"] or "(none given)"} for r in procedures],
                        {"claims", "paid", "suspended", "rejected", "void", "paid_units", "amount_paid"}))

    reversals = report["reversals"]
    parts.append(f"<h2>Reversals ({reversals['count']}, {escape(reversals['amount'])})</h2>")
    if reversals["claims"]:
        parts.append(_table([("claim_id", "original"), ("reversed_by", "reversed by"), ("provider_id", "provider"),
                             ("procedure_code", "procedure"), ("modifier", "modifier"),
                             ("service_date", "service date"), ("amount_taken_back", "amount taken back")],
                            reversals["claims"], {"amount_taken_back"}))
    else:
        parts.append('<p class="muted">No payment was reversed in this run.</p>')

    parts.append("<h2>Suspended by this run</h2>")
    parts += _suspended("suspended", report["suspended_by_reason"], report["suspended_by_age"], run["suspended"],
                        "This run suspended no claim.")
    waiting = report["waiting_suspended"]
    parts.append(f'<h2>Waiting suspended after this run (<span id="waiting-claims">{waiting["claims"]}</span> '
                 "claims: this run's and earlier runs')</h2>")
    parts += _suspended("waiting", waiting["by_reason"], waiting["by_age"], waiting["claims"],
                        "No claim is waiting suspended.")

    previous = report["previous"]
    parts.append("<h2>Compared with the previous run</h2>")
    if previous is None:
        parts.append('<p class="muted">This is the first run.</p>')
    else:
        keys = ("claims", "paid", "suspended", "rejected", "void", "amount_paid", "amount_reversed", "net")
        rows = [{"figure": k.replace("_", " "), "this": run[k], "previous": previous[k],
                 "difference": previous["difference"][k]} for k in keys]
        parts.append(_table([("figure", "figure"), ("this", f"run {run['run_id']}"),
                             ("previous", f"run {previous['run_id']}"), ("difference", "difference")], rows,
                            {"this", "previous", "difference"}))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{OFFLINE_POLICY}'
            f"<title>{escape(title)}</title>{STYLE}</head><body>\n" + "\n".join(p for p in parts if p)
            + "\n</body></html>\n")
