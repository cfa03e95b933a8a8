"""Runs through Celery workers: the run stays one transaction in the process that starts it.

`adjudicate --broker URL run` reads the queue and the state, does the record checks for the whole
queue, splits the edits by client (adjudication.shards) and sends each shard, with the reference
data, ledger and waivers of its clients and the rules, to the workers (queue `adjudication.shards`).
A worker decides its shard and hands the outcomes back; the run's process stores them all in its one
transaction. Workers never touch the database: a task is a pure function of its message, so a shard
decided twice changes nothing, and a run whose shard failed or timed out stores nothing.

Workers come and go, so the run does not wait on any one of them: a shard that has not answered
within a time derived from its size is sent again (the wait doubling at each send), and the first
answer wins. A broker outage is waited out for `broker_outage_seconds`, then the run fails (after a
restart that lost the broker's data, every shard not yet answered is sent again).

Answers do not go through Celery's result backend: a worker pushes its shard's outcomes onto a list
of the run's own (`adjudication:run:TOKEN:answers`), and only while the run's key
`adjudication:run:TOKEN:open` exists (one Lua script, so atomically). However the run ends, it deletes
its keys and removes its shard messages from the queue and from the broker's `unacked` hash and
index: once a run is over no message or answer with its claim data is left in Redis, and a worker
started later, or one still deciding a duplicate, finds the run closed and decides nothing. A run
also removes the shard messages of earlier runs that are over (a run process killed outright cannot
clean up after itself). Messages also carry the run's deadline as their expiry.

Messages are JSON (Celery's default; pickle would let anyone who can write to the broker run code
on the workers) with each frame as base64 Arrow IPC, which keeps every dtype exactly. They carry
claim data, so the broker is as sensitive as the database.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import polars as pl
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from adjudication.engine import Adjudication, Checked, ReferenceFrames, decide
from adjudication.rules import Rules
from adjudication.shards import Shard
from worker.errors import BrokerUnavailable, ShardsFailed  # noqa: F401 - raised here, named by callers as distributed.*

log = logging.getLogger("adjudication")

DECIDE = "adjudication.decide_shard"
SHARDS_QUEUE = "adjudication.shards"
FRAMES = ("claims", "plans", "enrollments", "spas", "providers", "ledger", "waivers")
TASK_ID_PREFIX = "shard-"  # shard-TOKEN-INDEX-SEND: how a run finds its messages in the broker
PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: a queue's priority lists are QUEUE + SEP + N
PRIORITY_STEPS = (3, 6, 9)
KEY_TTL_MARGIN = 300  # seconds the run's keys outlive its deadline (a run killed outright)

# A worker's answer is kept only while its run is open: checking and pushing in one script leaves no
# moment where a closed run could receive claim data.
ANSWER = """
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('rpush', KEYS[2], ARGV[1])
  redis.call('expire', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


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


def decide_message(message: dict) -> dict:
    """What a worker does with a shard: a pure function of its message."""
    shard, rules = read_shard(message)
    return result_message(decide(shard.checked, shard.reference, rules, shard.ledger, shard.waivers))


# --- the run's keys in Redis -----------------------------------------------------------------

def open_key(token: str) -> str:
    return f"adjudication:run:{token}:open"


def answers_key(token: str) -> str:
    return f"adjudication:run:{token}:answers"


def done_key(token: str) -> str:
    return f"adjudication:run:{token}:done"


def answer_shard(client: redis.Redis, token: str, index: int, message: dict) -> dict:
    """The worker's side of one shard: decide it unless its run is over or already has it, and push
    the answer while the run is open. Returns a summary without claim data (the task's result)."""
    if not client.exists(open_key(token)):
        return {"shard": index, "decided": False, "why": "run closed"}
    if client.sismember(done_key(token), index):
        return {"shard": index, "decided": False, "why": "already answered"}
    try:
        answer = {"shard": index, "result": decide_message(message)}
    except Exception as error:  # its text may quote claim data: the run hears the type only
        answer = {"shard": index, "error": type(error).__name__}
        _push(client, token, answer)
        log.debug("shard %s of run %s failed", index, token, exc_info=True)
        raise ShardFailed(f"shard {index} of run {token} failed: {type(error).__name__}") from None
    kept = _push(client, token, answer)
    return {"shard": index, "decided": True, "kept": kept}


class ShardFailed(Exception):
    """Raised on the worker (its text names the shard and the error's type, never claim data)."""


def _push(client: redis.Redis, token: str, answer: dict) -> bool:
    ttl = max(int(client.ttl(open_key(token))), 1) + KEY_TTL_MARGIN
    return bool(client.eval(ANSWER, 2, open_key(token), answers_key(token), json.dumps(answer), ttl))


def _task_token(raw: bytes) -> str | None:
    """The run token of a shard message as the Redis transport stores it (None: not a shard)."""
    if TASK_ID_PREFIX.encode() not in raw:
        return None
    try:
        document = json.loads(raw)
        if isinstance(document, list):  # the unacked hash holds [message, exchange, routing key]
            document = document[0]
        task_id = document["headers"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if document["headers"].get("task") != DECIDE or not task_id.startswith(TASK_ID_PREFIX):
        return None
    return task_id[len(TASK_ID_PREFIX):].split("-", 1)[0]


def remove_shard_messages(client: redis.Redis, keep: Callable[[str], bool]) -> int:
    """Remove from the shards queue and the broker's unacked hash every shard message whose run
    `keep` refuses; returns how many were removed."""
    removed = 0
    for key in (SHARDS_QUEUE, *(f"{SHARDS_QUEUE}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS)):
        for raw in client.lrange(key, 0, -1):
            token = _task_token(raw)
            if token is not None and not keep(token):
                removed += client.lrem(key, 0, raw)
    for tag, raw in client.hgetall("unacked").items():
        token = _task_token(raw)
        if token is not None and not keep(token):
            removed += client.pipeline().zrem("unacked_index", tag).hdel("unacked", tag).execute()[1]
    return removed


def leftovers(client: redis.Redis) -> list[str]:
    """Keys and messages with claim data of runs that are over (the tests check none is left)."""
    found = [key.decode() for key in client.scan_iter("adjudication:run:*:answers")]
    for key in (SHARDS_QUEUE, *(f"{SHARDS_QUEUE}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS)):
        found += [f"{key}: {_task_token(raw)}" for raw in client.lrange(key, 0, -1) if _task_token(raw)]
    found += [f"unacked: {_task_token(raw)}" for raw in client.hgetall("unacked").values() if _task_token(raw)]
    found += [key.decode() for key in client.scan_iter("celery-task-meta-*")
              if b"outcomes" in (client.get(key) or b"")]
    return found


def _missing(count: int, timeout: float, missing: list[_Pending]) -> ShardsFailed:
    """Why a run's shards did not all come back in time. A shard sent again and again without an
    answer while others came back took its workers down (out of memory, say): no broker trouble,
    and another run of the same claims would do the same. Otherwise no worker took them."""
    late = f"the workers did not decide all {count} shards within {timeout:g} s ({len(missing)} missing"
    if len(missing) < count and all(item.sends > 1 for item in missing):
        shown = ", ".join(f"shard {item.index} of {item.claims:,} claims sent {item.sends} times" for item in missing[:3])
        return ShardsFailed(f"{late}: {shown}, never answered while the others were: the workers that took "
                            "it may have died deciding it (out of memory?); see the workers' logs)")
    return BrokerUnavailable(f"{late}; is a worker running: adjudicate --broker URL worker?)")


def redis_client(broker_url: str) -> redis.Redis:
    if not broker_url.startswith(("redis://", "rediss://")):
        raise BrokerUnavailable(f"the broker must be Redis (redis://host:port/db), not {broker_url.split(':')[0]}")
    return redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=5)


# --- the run's side --------------------------------------------------------------------------

@dataclass
class _Pending:
    index: int
    claims: int
    sends: int = 0
    next_send: float = 0.0
    task_ids: list[str] = field(default_factory=list)


@dataclass
class CeleryShards:
    """Decides shards on the Celery workers (adjudication.shards.ShardDecider)."""

    celery: Celery
    timeout: float
    # (stage, claims decided, claims in all), called as each shard comes back: a long run through
    # the workers shows how far it is.
    progress: Callable[[str, int, int], None] = lambda _stage, _done, _total: None
    resend_seconds: float = 30.0  # a shard silent this long (+ its size's share) is sent again
    claims_per_second: float = 20000.0
    outage_seconds: float = 30.0  # a broker unreachable this long fails the run
    client: redis.Redis | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = redis_client(self.celery.conf.broker_url)

    def check_broker(self) -> None:
        """Fail in seconds, before a run starts, when the broker cannot be reached."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=5)
        except OperationalError as error:
            raise BrokerUnavailable(f"cannot reach the broker: {error}") from None

    def workers(self, timeout: float = 2.0) -> list[str]:
        """The live workers that take shards (they answer a ping on the broker within `timeout`)."""
        try:
            queues = self.celery.control.inspect(timeout=timeout).active_queues() or {}
        except OperationalError as error:
            raise BrokerUnavailable(f"cannot reach the broker: {error}") from None
        return sorted(name for name, consumed in queues.items() if any(q["name"] == SHARDS_QUEUE for q in consumed))

    def check_workers(self) -> None:
        """Fail in seconds when no live worker takes shards, instead of waiting for the run's timeout."""
        if not self.workers():
            raise BrokerUnavailable(f"no worker answers on the broker (none takes the queue {SHARDS_QUEUE}): "
                                    "start one with adjudicate --broker URL worker")

    def __call__(self, shards: list[Shard], rules: Rules) -> list[Adjudication]:
        token = uuid.uuid4().hex
        messages = [shard_message(shard, rules) for shard in shards]
        pending = {i: _Pending(i, shard.checked.claims.height) for i, shard in enumerate(shards)}
        total = sum(p.claims for p in pending.values())
        decided: dict[int, Adjudication] = {}
        start = time.monotonic()
        deadline = start + self.timeout
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.timeout)
        ttl = int(self.timeout) + KEY_TTL_MARGIN
        outage_since: float | None = None
        try:
            self.client.set(open_key(token), 1, ex=ttl)
            remove_shard_messages(self.client, self._run_is_open)  # messages of runs killed outright
            while pending:
                now = time.monotonic()
                if now > deadline:
                    raise _missing(len(shards), self.timeout, list(pending.values()))
                try:
                    if not self.client.exists(open_key(token)):
                        # The broker came back without its data: the run's messages are gone too.
                        log.warning("run %s: the broker lost its data; sending %d shards again", token, len(pending))
                        self.client.set(open_key(token), 1, ex=ttl)
                        for item in pending.values():
                            item.next_send = now
                    for item in pending.values():
                        if item.next_send <= now:
                            self._send(token, item, messages[item.index], expires, deadline - now)
                    popped = self.client.blpop([answers_key(token)], timeout=1)
                    outage_since = None
                except (redis.ConnectionError, redis.TimeoutError, OperationalError) as error:
                    outage_since = outage_since or now
                    if now - outage_since > self.outage_seconds:
                        raise BrokerUnavailable(f"lost the broker for more than {self.outage_seconds:g} s "
                                                f"({type(error).__name__})") from None
                    time.sleep(1)
                    continue
                if popped is None:
                    continue
                answer = json.loads(popped[1])
                index = answer["shard"]
                if index not in pending:
                    continue  # a duplicate's answer
                if "error" in answer:
                    raise ShardsFailed(f"a worker failed on a shard ({answer['error']}; a worker run with "
                                       "--loglevel DEBUG logs the traceback)")
                decided[index] = read_result(answer["result"])
                del pending[index]
                try:  # duplicates still queued need not be decided (only a saving: errors are ignored)
                    self.client.pipeline().sadd(done_key(token), index).expire(done_key(token), ttl).execute()
                except redis.RedisError:
                    pass
                self.progress("adjudicate", total - sum(p.claims for p in pending.values()), total)
        except redis.RedisError as error:  # anything the outage handling above does not cover
            raise BrokerUnavailable(f"the broker failed during the run ({type(error).__name__})") from None
        finally:
            self._close(token, [task_id for item in pending.values() for task_id in item.task_ids])
        log.info("run %s: %d shards decided in %.1f s", token, len(shards), time.monotonic() - start)
        return [decided[i] for i in range(len(shards))]

    def _send(self, token: str, item: _Pending, message: dict, expires: datetime, remaining: float) -> None:
        wait = (self.resend_seconds + item.claims / self.claims_per_second) * 2 ** item.sends
        if item.sends:
            log.warning("run %s: shard %d has not answered; sending it again (send %d)", token, item.index,
                        item.sends + 1)
        task_id = f"{TASK_ID_PREFIX}{token}-{item.index}-{item.sends}"
        limit = max(remaining, 1.0)
        self.celery.send_task(
            DECIDE, args=(token, item.index, message), task_id=task_id, expires=expires,
            soft_time_limit=limit, time_limit=limit + 30,
            argsrepr=f"(run {token}, shard {item.index}, {item.claims} claims)",  # no claim data
        )
        item.task_ids.append(task_id)
        item.sends += 1
        item.next_send = time.monotonic() + wait

    def _run_is_open(self, token: str) -> bool:
        return bool(self.client.exists(open_key(token)))

    def _close(self, token: str, unanswered: list[str]) -> None:
        """However the run ended: its keys deleted, its messages out of the broker, its tasks revoked."""
        for attempt in range(3):
            try:
                self.client.delete(open_key(token), answers_key(token), done_key(token))
                remove_shard_messages(self.client, self._run_is_open)
                break
            except (redis.ConnectionError, redis.TimeoutError) as error:
                # The broker is down: the messages go with it, or the next run removes them.
                log.warning("run %s: could not clean up in the broker (%s)", token, type(error).__name__)
                time.sleep(1)
        if unanswered:  # a worker holding one drops it (and one deciding it finds the run closed)
            try:
                self.celery.control.revoke(unanswered)
            except (OperationalError, redis.RedisError, OSError):
                pass
