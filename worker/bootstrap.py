"""The one place that wires configuration, database, rules and the way runs are executed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from adjudication.claim_file import Limits
from adjudication.rules import Rules
from worker.files import load_rules
from worker import runs, service
from worker.settings import Settings
from worker.store.database import make_engine
from worker.store.records import now


@dataclass
class App:
    settings: Settings
    # The command line checks the database before use (it exists, and its schema is this version's);
    # `db upgrade` and the demo, which create it, do not.
    check_database: bool = False

    @cached_property
    def engine(self) -> Engine:
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            engine = make_engine(self.settings.database_url, self.settings.sqlite_busy_timeout)
        except (ArgumentError, NoSuchModuleError):  # not the URL itself: it may carry a password
            raise service.UserError("configuration: the database URL is not one this program can open "
                                    "(sqlite:///FILE or postgresql+psycopg://USER@HOST/DATABASE)") from None
        if self.check_database:
            require_database(engine)
        return engine

    @cached_property
    def rules(self) -> Rules:
        return load_rules(self.settings.rules_file)

    @property
    def limits(self) -> Limits:
        return Limits(self.settings.max_file_bytes, self.settings.max_decompressed_bytes)

    @property
    def payer(self):
        from adjudication.remittance import Payer

        s = self.settings
        return Payer(id=s.payer_id, name=s.payer_name, tin=s.payer_tin, address=s.payer_address, city=s.payer_city,
                     state=s.payer_state, postal_code=s.payer_postal_code, contact_name=s.payer_contact_name,
                     contact_phone=s.payer_contact_phone, receiver_id=s.remit_receiver_id,
                     payee_qualifier=s.payee_id_qualifier, usage=s.x12_usage)

    def run(self, progress: service.Progress = service._quiet, dry_run: bool = False, operator: str = service.SYSTEM):
        """In-process, or with a broker, the edits split by client across the Celery workers; a
        service.RunSummary (a service.DryRun with dry_run). Rewrites the metrics file when set."""
        try:
            return self._run(progress, dry_run=dry_run, operator=operator)
        finally:
            self.write_metrics()

    def write_metrics(self) -> None:
        if self.settings.metrics_file is None:
            return
        from worker import metrics

        try:
            metrics.write_textfile(self.engine, self.settings.metrics_file)
        except Exception as error:  # noqa: BLE001 - a metrics file must never fail the run it describes
            log = logging.getLogger("adjudication")
            log.warning("could not write the metrics file %s (%s)", self.settings.metrics_file, type(error).__name__)
            log.debug("metrics file", exc_info=True)

    def _run(self, progress: service.Progress, **options):
        limit = self.settings.run_max_claims_per_client_day
        options["lock_wait_seconds"] = self.settings.lock_wait_seconds
        if not self.settings.broker_url:
            return service.run(self.engine, self.rules, progress, max_claims_per_client_day=limit, **options)
        from adjudication.shards import sharded
        from worker.celery_app import make_celery
        from worker.distributed import CeleryShards, ShardsFailed

        s = self.settings
        started = now()
        try:
            shards = CeleryShards(make_celery(s), s.run_timeout_seconds, progress, s.run_shard_resend_seconds,
                                  s.run_shard_claims_per_second, s.broker_outage_seconds)
            shards.check_broker()
            shards.check_workers()  # in seconds, not after the run's timeout
        except ShardsFailed as error:  # BrokerUnavailable too
            # The run did not start, but it failed all the same: its record says so (the nightly
            # alert on the last run's status counts on it), as service.run records its own failures.
            # A dry run tried while the broker is down is no failed night: not recorded.
            refusal = _refusal(error)
            if not options.get("dry_run"):
                runs.record_failure(self.engine, started, refusal)
            raise refusal from None
        try:
            return service.run(self.engine, self.rules, progress, sharded(s.run_shards, shards), limit, **options)
        except ShardsFailed as error:  # BrokerUnavailable too
            raise _refusal(error) from None


def _refusal(error: Exception) -> Exception:
    """A distributed run's failure as the command line reports it (broker gone: exit 3)."""
    from worker.distributed import BrokerUnavailable

    kind = service.Unavailable if isinstance(error, BrokerUnavailable) else service.UserError
    return kind(f"{error}; nothing was stored, the claims stay queued")


def require_database(engine: Engine) -> None:
    """service.Unavailable (exit 3) unless the database exists and its schema is at this version's
    head. A SQLite file that does not exist is not created here: a command run in the wrong folder
    would otherwise start an empty database there and report an empty queue."""
    from sqlalchemy.exc import OperationalError

    from worker.store.database import current_revisions, head_revisions, sqlite_file

    path = sqlite_file(engine)
    if path is not None and not path.exists():
        raise service.Unavailable(f"no database at {path.resolve()}; run `adjudicate db upgrade` to create it "
                                  "(or name another with --db / ADJUDICATION_DATABASE_URL)")
    try:
        current = current_revisions(engine)
    except OperationalError as error:
        raise service.Unavailable(f"database unreachable: {_first_line(error)}") from None
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise service.Unavailable(f"the database at {where} has no schema; run `adjudicate db upgrade`")
    heads = head_revisions()
    if current != heads:
        raise service.Unavailable(
            f"the database at {where} is at schema revision {', '.join(sorted(current))}, this version needs "
            f"{', '.join(sorted(heads))}; run `adjudicate db upgrade`")


def _first_line(error) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build(check_database: bool = False, **overrides) -> App:
    return App(Settings(**overrides), check_database)
