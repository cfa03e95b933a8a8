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

    @property
    def payer(self):
        from adjudication.remittance import Payer

        s = self.settings
        return Payer(id=s.payer_id, name=s.payer_name, tin=s.payer_tin, address=s.payer_address, city=s.payer_city,
                     state=s.payer_state, postal_code=s.payer_postal_code, contact_name=s.payer_contact_name,
                     contact_phone=s.payer_contact_phone, receiver_id=s.remit_receiver_id,
                     payee_qualifier=s.payee_id_qualifier, usage=s.x12_usage)

    def run(self, progress: service.Progress = service._quiet) -> service.RunSummary:
        """In-process, or with a broker, the edits split by client across the Celery workers."""
        limit = self.settings.run_max_claims_per_client_day
        if not self.settings.broker_url:
            return service.run(self.engine, self.rules, progress, max_claims_per_client_day=limit)
        from adjudication.shards import sharded
        from worker.distributed import CeleryShards, ShardsFailed
        from worker.tasks import make_celery

        shards = CeleryShards(make_celery(self.settings), self.settings.run_timeout_seconds, progress)
        try:
            shards.check_broker()
            return service.run(self.engine, self.rules, progress, sharded(self.settings.run_shards, shards), limit)
        except ShardsFailed as error:
            raise service.UserError(f"{error}; nothing was stored, the claims stay queued") from None


def build(**overrides) -> App:
    return App(Settings(**overrides))
