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
        if self.settings.broker_url:
            raise service.UserError("runs through a Celery broker are not built yet; "
                                    "unset --broker / ADJUDICATION_BROKER_URL to run in-process")
        return service.run(self.engine, self.rules, progress)


def build(**overrides) -> App:
    return App(Settings(**overrides))
