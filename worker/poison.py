"""When a run fails anyway: name the batch and the claim it failed on, or what it was doing.

Every value a run reads is checked at submit, so no claim should make a run fail. Should one do it
all the same, the operator must not be left with `error: internal` and a queue that fails every
night: the failed computation is tried again on parts of the queue (each batch
alone, then halves of the batch that fails) until one claim is left, and the refusal names that
batch and claim, so the batch can be withdrawn (`adjudicate withdraw`) and the rest run. Only the
exception's type is reported: its text may carry values of the claim.

A run that fails anywhere else in its work (reading the queue, the state, storing) on something
that is no refusal (a stored row it cannot read back, a bug) is an internal error (RunBroke, exit
70) naming what the run was doing, and the batch when it is known; it too is recorded as failed.
"""

from __future__ import annotations

import logging

import polars as pl

from adjudication.engine import Checked, Decider
from worker.errors import UserError

log = logging.getLogger("adjudication")


class RunFailed(UserError):
    """A run failed on a claim: nothing was stored, the claims stay queued."""


class RunBroke(Exception):
    """A run failed on something that is no claim's doing and no refusal: nothing was stored, the
    claims stay queued (an internal error: exit code 70)."""


# Failures that are no claim's doing, left as they are: the workers of a distributed run did not
# answer, or the broker was lost (worker.distributed.ShardsFailed and its subclass BrokerUnavailable,
# named here because importing them would import Celery).
NOT_A_CLAIM = ("ShardsFailed",)


def _not_a_claim(error: BaseException) -> bool:
    """Whether `error` is, or derives from, one of NOT_A_CLAIM."""
    return any(kind.__name__ in NOT_A_CLAIM for kind in type(error).__mro__)


def naming_the_claim(decider: Decider, origin: pl.DataFrame) -> Decider:
    """`decider`, whose failures on a claim are reported as RunFailed naming its batch and claim
    (found by deciding parts of the queue again with `decider`). origin: claim_pk, batch_id of the
    queue (repository.Queue.origin)."""
    def decide_or_name(checked: Checked, reference, rules, ledger, waivers):
        try:
            return decider(checked, reference, rules, ledger, waivers)
        except UserError:
            raise
        except Exception as error:
            if _not_a_claim(error):
                raise

            def fails(part: pl.Series) -> bool:
                try:
                    decider(_subset(checked, part), reference, rules, ledger, waivers)
                except Exception:  # noqa: BLE001 - any failure is what is being looked for
                    return True
                return False

            found = _locate(checked, origin, fails)
            if found is None:
                raise  # the whole queue decides when tried again: not a claim's doing
            raise RunFailed(_message(error, *found)) from error
    return decide_or_name


def reported(error: BaseException, doing: str) -> BaseException:
    """What a run that failed with `error` while `doing` (its progress stage) reports: the error
    itself when it already says in one line what happened (a refusal, a service unavailable, the run
    lock, the database gone, an interruption), else RunBroke naming the stage and, when known, the
    batch (ids and the error's type only)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from worker.errors import Unavailable, unavailable
    from worker.runs import LockTimeout
    from worker.store.repository import StoredBatchUnreadable

    if (not isinstance(error, Exception) or _not_a_claim(error) or unavailable(error) is not None
            or isinstance(error, (UserError, Unavailable, LockTimeout, OperationalError, InterfaceError))):
        return error
    log.debug("run failed while %s", doing, exc_info=error)
    if isinstance(error, StoredBatchUnreadable):
        return RunBroke(f"run failed while {doing}: {error}; nothing was stored and the claims stay queued: "
                        f"withdraw the batch (adjudicate withdraw {error.batch_id}) to let the others run")
    return RunBroke(f"run failed while {doing} ({type(error).__name__}); nothing was stored and the claims stay "
                    "queued (the traceback is logged at --log-level debug)")


def _subset(checked: Checked, claim_pks: pl.Series) -> Checked:
    part = checked.claims.filter(pl.col("claim_pk").is_in(claim_pks.implode()))
    return Checked(part.with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64)), checked.held_pks)


def _locate(checked: Checked, origin: pl.DataFrame, fails) -> tuple[str, str | None, list[str]] | None:
    """(batch_id, claim_id or None, batches) of the first batch failing alone and, when one claim of
    it fails alone, that claim; None when the whole queue decides when tried again."""
    everything = checked.claims.get_column("claim_pk")
    if not fails(everything):
        return None
    queue = checked.claims.select("claim_pk", "claim_id").join(origin.select("claim_pk", "batch_id"), on="claim_pk",
                                                             maintain_order="left")
    batches = queue.get_column("batch_id").unique(maintain_order=True).to_list()
    for batch in batches:
        pks = queue.filter(pl.col("batch_id") == batch).get_column("claim_pk")
        if not fails(pks):
            continue
        while pks.len() > 1:
            half = pks.len() // 2
            if fails(pks.head(half)):
                pks = pks.head(half)
            elif fails(pks.tail(pks.len() - half)):
                pks = pks.tail(pks.len() - half)
            else:
                return batch, None, batches  # only claims of the batch together fail
        claim = queue.filter(pl.col("claim_pk") == pks.item()).get_column("claim_id").item()
        return batch, claim, batches
    return batches[0], None, batches


def _message(error: Exception, batch: str, claim: str | None, batches: list[str]) -> str:
    where = f"batch {batch}, claim {claim}" if claim is not None else f"batch {batch}"
    # INFO: the caller reports the refusal itself (the command line in one line, a scheduler in its log).
    log.info("run failed on %s (%s)", where, type(error).__name__)
    return (f"run failed on {where} ({type(error).__name__}); nothing was stored and the claims stay queued: "
            f"withdraw the batch (adjudicate withdraw {batch}) and post it corrected, then run again")
