"""Runs through Celery workers: the run stays one transaction in the process that starts it.

`adjudicate --broker URL run` reads the queue and the state, does the record checks for the whole
queue, splits the edits by client (adjudication.shards) and sends each shard, with the reference
data, ledger and waivers of its clients and the rules, to the workers. A worker decides its shard
and sends the outcomes back; the run's process stores them all in its one transaction. Workers
never touch the database: a task is a pure function of its message, so a task delivered twice or
retried changes nothing, and a run whose shard failed or timed out stores nothing.

Messages are JSON (Celery's default; pickle would let anyone who can write to the broker run code
on the workers) with each frame as base64 Arrow IPC, which keeps every dtype exactly. They carry
claim data, so the broker is as sensitive as the database; results are deleted once read.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from celery import Celery, group
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import OperationalError

from adjudication.engine import Adjudication, Checked, ReferenceFrames
from adjudication.rules import Rules
from adjudication.shards import Shard

DECIDE = "adjudication.decide_shard"
FRAMES = ("claims", "plans", "enrollments", "spas", "providers", "ledger", "waivers")


class ShardsFailed(Exception):
    """The workers did not decide every shard (nothing of the run is stored)."""


def _encoded(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="zstd")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decoded(text: str) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(base64.b64decode(text)))


def shard_message(shard: Shard, rules: Rules) -> dict:
    frames = {"claims": shard.checked.claims, "plans": shard.reference.plans,
              "enrollments": shard.reference.enrollments, "spas": shard.reference.spas,
              "providers": shard.reference.providers, "ledger": shard.ledger, "waivers": shard.waivers}
    return {"rules": rules.model_dump(mode="json"),
            **{name: _encoded(frame) for name, frame in frames.items() if frame is not None}}


def read_shard(message: dict) -> tuple[Shard, Rules]:
    frames = {name: _decoded(message[name]) if name in message else None for name in FRAMES}
    shard = Shard(
        checked=Checked(frames["claims"], pl.Series("holder_pk", [], dtype=pl.Int64)),  # held ids: not needed
        reference=ReferenceFrames(plans=frames["plans"], enrollments=frames["enrollments"], spas=frames["spas"],
                                  providers=frames["providers"]),
        ledger=frames["ledger"],
        waivers=frames["waivers"],
    )
    return shard, Rules.model_validate(message["rules"])


def result_message(result: Adjudication) -> dict:
    return {"outcomes": _encoded(result.outcomes), "newly_paid": _encoded(result.newly_paid),
            "reversals": _encoded(result.reversals)}


def read_result(message: dict) -> Adjudication:
    return Adjudication(outcomes=_decoded(message["outcomes"]), newly_paid=_decoded(message["newly_paid"]),
                        reversals=_decoded(message["reversals"]))


@dataclass(frozen=True)
class CeleryShards:
    """Decides shards on the Celery workers (adjudication.shards.ShardDecider)."""

    celery: Celery
    timeout: float
    # (stage, claims decided, claims in all), called as each shard comes back: a long run through
    # the workers shows how far it is.
    progress: Callable[[str, int, int], None] = lambda _stage, _done, _total: None

    def check_broker(self) -> None:
        """Fail in seconds, before a run starts, when the broker cannot be reached."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=5)
        except OperationalError as error:
            raise ShardsFailed(f"cannot reach the broker: {error}") from None

    def __call__(self, shards: list[Shard], rules: Rules) -> list[Adjudication]:
        count = len(shards)
        try:
            job = group(
                self.celery.signature(DECIDE, args=(shard_message(shard, rules),)).set(
                    argsrepr=f"(shard {index + 1} of {count}, {shard.checked.claims.height} claims)")  # no claim data
                for index, shard in enumerate(shards)
            ).apply_async()
        except OperationalError as error:
            raise ShardsFailed(f"cannot send the shards to the broker: {error}") from None
        claims = {result.id: shard.checked.claims.height for result, shard in zip(job.results, shards, strict=True)}
        decided: dict[str, Adjudication] = {}

        def received(task_id: str, message: dict) -> None:
            decided[task_id] = read_result(message)
            self.progress("adjudicate", sum(claims[i] for i in decided), sum(claims.values()))

        try:
            job.get(timeout=self.timeout, interval=0.05, callback=received)
        except CeleryTimeout:
            job.revoke()
            raise ShardsFailed(f"the workers did not decide all {count} shards within {self.timeout:g} s "
                               "(is a worker running: adjudicate --broker URL worker?)") from None
        except Exception as error:  # a shard raised on its worker; its text may quote claim data
            raise ShardsFailed(f"a worker failed on a shard ({type(error).__name__}; the worker's log "
                               "has the traceback)") from None
        finally:
            job.forget()
        return [decided[result.id] for result in job.results]
