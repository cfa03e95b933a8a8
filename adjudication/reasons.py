"""Every reason code, declared once: its X12 CARC, whether an override may waive it, and how it is
decided. The tables below are in the order of SPEC section 4, which is the order reasons are listed
on an outcome.

How a check is decided, one of:
- `claim`: a polars expression over a claim's own columns and its reference look-ups (true = fails);
  these do not depend on other claims and are decided for all claims at once (adjudication.engine);
- `pair`: a polars expression over a (claim, claim paid before it) pair of one client and day (the
  pair frame: the claim's columns, and the other claim's with a `p_` prefix); it fails when a pair
  with a claim still paid at this point in adjudication order is true;
- neither (`walk`): it depends on which claims are paid at this point in adjudication order, and the
  engine's ordered walk (adjudication.engine._walk) is the one place that decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

INVALID_RECORD = "INVALID_RECORD"
DUPLICATE_CLAIM_ID = "DUPLICATE_CLAIM_ID"
FUTURE_SERVICE_DATE = "FUTURE_SERVICE_DATE"
INVALID_ADJUSTMENT = "INVALID_ADJUSTMENT"
NO_ACTIVE_PLAN = "NO_ACTIVE_PLAN"
NO_CM_ENROLLMENT = "NO_CM_ENROLLMENT"
NO_ACTIVE_SPA = "NO_ACTIVE_SPA"
PROVIDER_NOT_ENROLLED = "PROVIDER_NOT_ENROLLED"
TIMELY_FILING = "TIMELY_FILING"
UNITS_EXCEED_SPA = "UNITS_EXCEED_SPA"
MONTHLY_HOURS_EXCEEDED = "MONTHLY_HOURS_EXCEEDED"
DUPLICATE_SERVICE = "DUPLICATE_SERVICE"
OVERLAP_DUPLICATE = "OVERLAP_DUPLICATE"
OVERLAP_SAME_PROVIDER = "OVERLAP_SAME_PROVIDER"


@dataclass(frozen=True)
class Check:
    code: str
    carc: str  # the X12 Claim Adjustment Reason Code (a rules file may map the code to another)
    waivable: bool = False  # an override may waive it (the rules' `waivable` says which ones a deployment allows)
    claim: pl.Expr | None = None
    pair: pl.Expr | None = None

    @property
    def walk(self) -> bool:
        return self.claim is None and self.pair is None


_c = pl.col
_same_provider = _c("provider_id") == _c("p_provider_id")
_same_service = (_c("procedure_code") == _c("p_procedure_code")) & (_c("modifier") == _c("p_modifier"))
_same_times = _c("start_min").eq_missing(_c("p_start_min")) & _c("end_min").eq_missing(_c("p_end_min"))
# [start, end) intervals of one overlap group sharing a positive length (the pair is of one client and day).
_overlap = ((_c("group") == _c("p_group")) & (_c("start_min") < _c("p_end_min"))
            & (_c("p_start_min") < _c("end_min"))).fill_null(False)
# `allowance`: how the rules allow this pair of procedure/modifiers to overlap (null: not at all).

# Record checks: the first that fails is the claim's only reason, and it is rejected.
RECORD_CHECKS = (
    # `invalid_mask`: a bit per failing field (adjudication.claims); the reason names each field.
    Check(INVALID_RECORD, "16", claim=_c("invalid_mask") != 0),
    # Held ids: adjudication.engine.check_records, and the walk where an earlier claim of the run
    # carrying the id is a replacement or void (it holds the id only if it is accepted).
    Check(DUPLICATE_CLAIM_ID, "18"),
    Check(FUTURE_SERVICE_DATE, "110", claim=~_c("void") & (_c("service_day") > _c("received_day"))),
    Check(INVALID_ADJUSTMENT, "129"),
)

# Edits: every one that fails is listed, and the claim is suspended.
EDITS_TABLE = (
    Check(NO_ACTIVE_PLAN, "197", claim=_c("plan_id").is_null()),
    Check(NO_CM_ENROLLMENT, "177", claim=_c("enrolled").is_null()),
    Check(NO_ACTIVE_SPA, "197", claim=_c("spa_id").is_null()),
    Check(PROVIDER_NOT_ENROLLED, "B7", claim=_c("provider_enrolled").is_null()),
    Check(TIMELY_FILING, "29", waivable=True,
          claim=(_c("received_day") - _c("service_day")).dt.total_days() > _c("timely_filing_days")),
    Check(UNITS_EXCEED_SPA, "198"),
    Check(MONTHLY_HOURS_EXCEEDED, "119", waivable=True),
    Check(DUPLICATE_SERVICE, "18", waivable=True, pair=_same_provider & _same_service & _same_times),
    Check(OVERLAP_DUPLICATE, "B20", waivable=True, pair=_overlap & _c("allowance").is_null()),
    Check(OVERLAP_SAME_PROVIDER, "18", waivable=True,
          pair=_overlap & _same_provider & (_c("allowance") != "any").fill_null(True)),
)

EDITS = tuple(check.code for check in EDITS_TABLE)
ALL_CHECKS = RECORD_CHECKS + EDITS_TABLE
ALL_CODES = tuple(check.code for check in ALL_CHECKS)
WAIVABLE = frozenset(check.code for check in ALL_CHECKS if check.waivable)
DEFAULT_CARC = {check.code: check.carc for check in ALL_CHECKS}

PAID = "paid"
SUSPENDED = "suspended"
REJECTED = "rejected"
VOID = "void"
