"""`adjudicate demo`: the whole story on the shipped fixtures, in a temporary SQLite database."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adjudication.remittance import money
from worker import access, service
from worker.bootstrap import build

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run_demo(console: Console, rules_file: Path | None = None) -> None:
    if not console.is_terminal:
        console = Console(width=160, highlight=False)
    with tempfile.TemporaryDirectory(prefix="adjudication-demo-") as folder:
        app = build(database_url=f"sqlite:///{Path(folder) / 'demo.db'}",
                    **({"rules_file": rules_file} if rules_file else {}))
        service.upgrade_schema(app.engine)
        example = FIXTURES / "worked_example"
        service.load_reference(app.engine, example)
        console.print(f"[bold]1.[/] reference data loaded from {example.relative_to(FIXTURES.parent)}")
        batch = service.submit(app.engine, example / "claims.csv", app.rules, app.limits)
        console.print(f"[bold]2.[/] claim file submitted as batch {batch.batch_id} ({batch.claims} claims)")
        again = service.submit(app.engine, example / "claims.csv", app.rules, app.limits)
        console.print(f"    submitting it again is a no-op: same batch {again.batch_id}")
        summary = app.run()
        console.print(f"[bold]3.[/] nightly run {summary.run_id}: {summary.paid} paid, {summary.suspended} suspended, "
                      f"{summary.rejected} rejected, amount paid {money(summary.paid_cents)}")
        _table(console, service.outcomes(app.engine), "Outcomes of the worked example (SPEC section 7)")
        # Seed 004: an agency bills its 2:1 shift as one OR526/RB line, not as a second staff member's
        # line (WX-5 stays suspended: one provider cannot overlap itself). G1 replaces WX-4 by the RB
        # line, and P1 voids WX-6, a shift that did not happen.
        fixed = service.submit(app.engine, example / "corrections.csv", app.rules, app.limits)
        console.print(f"[bold]4.[/] corrections submitted as batch {fixed.batch_id}: WX-7 replaces WX-4 "
                      "(agency G1 bills its 2:1 shift as OR526/RB), WX-8 voids WX-6")
        second = app.run()
        console.print(f"[bold]5.[/] run {second.run_id}: {second.paid} paid, {second.suspended} suspended, "
                      f"{second.rejected} rejected, {second.voids} void, amount paid {money(second.paid_cents)}, "
                      f"amount reversed {money(second.reversed_cents)}")
        _table(console, service.outcomes(app.engine, history=True), "Every attempt (history)")
        access.bootstrap_admin(app.engine, "admin")
        access.grant(app.engine, "ops.clerk", "operator", "admin", "demo: the billing office")
        service.outcomes(app.engine, operator="ops.clerk", export_format="csv")  # an export, audited
        trail = service.audit_trail(app.engine)
        console.print(f"[bold]6.[/] audit trail: {trail.height} entries: "
                      + "; ".join(f"{r['operator']} {r['action']}" for r in trail.iter_rows(named=True)))
        app.engine.dispose()


def _table(console: Console, frame, title: str) -> None:
    table = Table(title=title, title_justify="left")
    columns = ("claim_id", "line", "status", "reasons", "spa_id", "paid_units", "paid_amount",
               "conflicts_with", "carc", "attempt", "adjusts", "reversed_by")
    for column in columns:
        table.add_column(column)
    for row in frame.iter_rows(named=True):
        table.add_row(*[str(row[c]) for c in columns])
    console.print(table)
