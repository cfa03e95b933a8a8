"""The one place that wires configuration, database, rules and the way runs are executed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine

from adjudication.claim_file import Limits
from adjudication.rules import Rules, load_rules
from worker import service
from worker.settings import Settings
from worker.store.database import make_engine


@dataclass
class App:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url, self.settings.sqlite_busy_timeout)

    @cached_property
    def rules(self) -> Rules:
        return load_rules(self.settings.rules_file)

    @property
    def limits(self) -> Limits:
        return Limits(self.settings.max_file_bytes, self.settings.max_decompressed_bytes)

    def run(self, progress: service.Progress = service._quiet) -> service.RunSummary:
        """In-process, or with a broker, the edits split by client across the Celery workers."""
        limit = self.settings.run_max_claims_per_client_day
        if not self.settings.broker_url:
            return service.run(self.engine, self.rules, progress, max_claims_per_client_day=limit)
        from adjudication.shards import sharded
        from worker.celery_app import make_celery
        from worker.distributed import BrokerUnavailable, CeleryShards, ShardsFailed

        s = self.settings
        try:
            shards = CeleryShards(make_celery(s), s.run_timeout_seconds, progress, s.run_shard_resend_seconds,
                                  s.run_shard_claims_per_second, s.broker_outage_seconds)
            shards.check_broker()
            shards.check_workers()  # in seconds, not after the run's timeout
            return service.run(self.engine, self.rules, progress, sharded(s.run_shards, shards), limit)
        except BrokerUnavailable as error:
            raise service.Unavailable(f"{error}; nothing was stored, the claims stay queued") from None
        except ShardsFailed as error:
            raise service.UserError(f"{error}; nothing was stored, the claims stay queued") from None

def build(**overrides) -> App:
    return App(Settings(**overrides))
