"""`adjudicate serve` and `adjudicate submitters ...` (registered by worker.cli). Only typer is
imported here: uvicorn and FastAPI load when the service starts."""

from __future__ import annotations

import json
import os
from typing import Annotated, Optional

import typer

submitters_cli = typer.Typer(no_args_is_help=True, help="Submitters: upstream systems posting claim files over HTTP.")
# The acting admin, as worker.cli's --operator (a flag, or ADJUDICATION_OPERATOR when it is absent).
Operator = Annotated[Optional[str], typer.Option(
    "--operator", help="The acting admin, audited (env ADJUDICATION_OPERATOR)")]

# uvicorn's own logging, reduced: its access log (which would show query strings) is off, and the
# service logs one line per request itself (method, path, status, time: worker.http.app.AccessLog).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "adjudication": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API for upstream systems (SPEC section 9): post claim files, read batches back."""
    import uvicorn

    from worker.cli import app

    a = app(ctx)
    # Settings given as flags reach the worker processes through the environment they inherit.
    os.environ["ADJUDICATION_DATABASE_URL"] = a.settings.database_url
    if a.settings.broker_url:
        os.environ["ADJUDICATION_BROKER_URL"] = a.settings.broker_url
    if a.settings.rules_file:
        os.environ["ADJUDICATION_RULES_FILE"] = str(a.settings.rules_file)
    a.rules  # a broken rules file stops here, in one line, not in every worker  # noqa: B018
    # So does a missing database or one at another schema version (exit 3), before anything listens
    # (a SQLite file is not created; each worker process opens its own engine).
    a.engine.dispose()
    uvicorn.run("worker.http.app:from_environment", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_config=LOG_CONFIG, server_header=False, proxy_headers=False)


@submitters_cli.command("add")
def submitters_add(
    ctx: typer.Context,
    name: str,
    provider: Annotated[list[str], typer.Option("--provider", help="A provider it may post for; repeat for more")],
    operator: Operator = None,
    note: Annotated[str, typer.Option(help="Why (audited with the providers)")] = "",
) -> None:
    """Register a submitter and print its token, once (only its hash is stored); by an admin."""
    from worker import submitters
    from worker.cli import acting, app, err, out

    token = submitters.add(app(ctx).engine, name, provider, acting(ctx, operator), note)
    out.print(token, markup=False)
    err.print(f"submitter {name}: keep this token, it is not shown again", markup=False)


@submitters_cli.command("list")
def submitters_list(ctx: typer.Context) -> None:
    """Every submitter, its providers, and whether it is revoked (JSON lines; never a token)."""
    from worker import submitters
    from worker.cli import app, out

    for row in submitters.listing(app(ctx).engine):
        out.print(json.dumps(row, default=str), markup=False)


@submitters_cli.command("revoke")
def submitters_revoke(
    ctx: typer.Context,
    name: str,
    operator: Operator = None,
    note: Annotated[str, typer.Option(help="Why (audited)")] = "",
) -> None:
    """Revoke a submitter's token (by an admin): its requests are refused (401) from now on."""
    from worker import submitters
    from worker.cli import acting, app, out

    submitters.revoke(app(ctx).engine, name, acting(ctx, operator), note)
    out.print(f"submitter {name}: revoked")
