"""The batch engine: SPEC section 4's sequential adjudication, computed vectorized with polars.

Sequential order only matters where claims can interact: a shared SPA period or client month
whose caps all the payable claims together could exceed, or two claims of one client and day that
collide (duplicate service, overlap). Everything else is decided at once. The few entangled
claims are walked in adjudication order to settle which get paid; then every claim's reasons are
computed vectorized against the claims paid before it, and checked against the walk.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from adjudication import reasons as R
from adjudication.claims import REASONS_BY_MASK, parse_claims
from adjudication.decimals import SCALE
from adjudication.rules import Rules

# The order of a claim paid in an earlier run: before everything in this one.
LEDGER_ORDER = -1
TOTAL_PERIOD_KEY = pl.date(1970, 1, 1)
# The SPA period a service date counts in: the day, its calendar month, or the SPA's whole span.
SPA_PERIOD = (
    pl.when(pl.col("unit_period") == "day")
    .then(pl.col("service_day"))
    .when(pl.col("unit_period") == "month")
    .then(pl.col("service_day").dt.month_start())
    .otherwise(TOTAL_PERIOD_KEY)
)

LEDGER_SCHEMA = {
    "claim_pk": pl.Int64,
    "claim_id": pl.String,
    "client_prime": pl.String,
    "service_day": pl.Date,
    "provider_id": pl.String,
    "procedure_code": pl.String,
    "modifier": pl.String,
    "start_min": pl.Int64,
    "end_min": pl.Int64,
    "units_s": pl.Int64,
    "spa_id": pl.String,
}
OUTCOME_SCHEMA = {
    "claim_pk": pl.Int64,
    "status": pl.String,
    "reasons": pl.List(pl.String),
    "carc": pl.List(pl.String),
    "spa_id": pl.String,
    "paid_units_s": pl.Int64,
    "paid_cents": pl.Int64,
    "conflicts_with": pl.List(pl.String),
}


@dataclass(frozen=True)
class ReferenceFrames:
    """Reference data as the engine reads it (dates as Date, numbers x10^4)."""

    plans: pl.DataFrame  # plan_id, client_prime, start_date, end_date, status, monthly_hours_s
    enrollments: pl.DataFrame  # client_prime, start_date, end_date
    spas: pl.DataFrame  # spa_id, plan_id, client_prime, provider_id, procedure_code, modifier,
    #                    start_date, end_date, units_s, unit_period, rate_s, status


@dataclass(frozen=True)
class Adjudication:
    outcomes: pl.DataFrame  # OUTCOME_SCHEMA, one row per queued claim, in adjudication order
    newly_paid: pl.DataFrame  # LEDGER_SCHEMA rows to append to the paid ledger


def adjudicate(
    queue: pl.DataFrame,
    reference: ReferenceFrames,
    rules: Rules,
    ledger: pl.DataFrame | None = None,
    holders: pl.DataFrame | None = None,
    waivers: pl.DataFrame | None = None,
) -> Adjudication:
    """Adjudicate `queue` (claim_pk + the raw claim columns, in adjudication order).

    ledger: claims paid in earlier runs (LEDGER_SCHEMA) for the clients, months and SPAs touched.
    holders: claim_id -> claim_pk of stored claims not rejected (they hold their claim id).
    waivers: claim_pk, code: edits an operator waived for a claim.
    """
    ledger = _empty(LEDGER_SCHEMA) if ledger is None else ledger.cast(LEDGER_SCHEMA).select(LEDGER_SCHEMA.keys())
    holders = holders if holders is not None else _empty({"claim_id": pl.String, "holder_pk": pl.Int64})
    waivers = waivers if waivers is not None else _empty({"claim_pk": pl.Int64, "code": pl.String})

    claims = _static(queue, reference, rules, holders, waivers)
    ledger_rows = _ledger_rows(ledger, reference, rules)
    candidates = claims.filter(pl.col("static_ok"))
    pairs = _conflict_pairs(claims.filter(~pl.col("rejected")), pl.concat([ledger_rows, _as_paid(candidates)]), rules)

    paid_orders = _settle(candidates, ledger_rows, pairs)
    outcomes, newly_paid = _outcomes(claims, ledger_rows, pairs, paid_orders, rules)
    return Adjudication(outcomes=outcomes, newly_paid=newly_paid)


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _waived(code: str) -> pl.Expr:
    return pl.col("waived").list.contains(pl.lit(code))


def _static(
    queue: pl.DataFrame, reference: ReferenceFrames, rules: Rules, holders: pl.DataFrame, waivers: pl.DataFrame
) -> pl.DataFrame:
    """Record checks and the edits that do not depend on other claims of the run."""
    claims = (
        parse_claims(queue.lazy(), rules)
        .with_columns(order=pl.int_range(pl.len(), dtype=pl.Int64), valid=pl.col("invalid_mask") == 0)
        # In row (= adjudication) order, before any join may reorder rows.
        .with_columns(first_in_run=pl.when(pl.col("valid")).then(pl.col("claim_id")).is_first_distinct())
        .drop("service_date", "start_time", "end_time", "units", "billed_rate", "staff_id")
        .join(holders.lazy(), on="claim_id", how="left", maintain_order="left")
        .with_columns(
            # The id is held by a stored claim not rejected (unless that is this claim, re-queued),
            # else by the first valid claim of this run that carries it.
            duplicate_id=pl.col("valid")
            & pl.when(pl.col("holder_pk").is_not_null())
            .then(pl.col("holder_pk") != pl.col("claim_pk"))
            .otherwise(~pl.col("first_in_run"))
        )
        .with_columns(rejected=~pl.col("valid") | pl.col("duplicate_id"))
        .with_columns(
            month=pl.col("service_day").dt.month_start(),
            attendant=pl.col("procedure_code").is_in(sorted(rules.attendant_care_procedures)).fill_null(False),
        )
        .collect()
        .lazy()
    )
    keyed = claims.filter(~pl.col("rejected")).select("order", "client_prime", "service_day", "provider_id",
                                                      "procedure_code", "modifier")

    plan = (
        keyed.join(reference.plans.lazy().filter(pl.col("status") == "accepted"), on="client_prime")
        .filter(pl.col("service_day").is_between(pl.col("start_date"), pl.col("end_date")))
        .group_by("order")
        .agg(plan_id=pl.col("plan_id").min(), monthly_hours_s=pl.col("monthly_hours_s").first())
    )
    enrolled = (
        keyed.join(reference.enrollments.lazy(), on="client_prime")
        .filter(pl.col("service_day").is_between(pl.col("start_date"), pl.col("end_date")))
        .select("order")
        .unique()
        .with_columns(enrolled=pl.lit(True))
    )
    spa = (
        keyed.join(plan.select("order", active_plan="plan_id"), on="order", how="left")
        .join(
            reference.spas.lazy().filter(pl.col("status") == "accepted"),
            on=["client_prime", "provider_id", "procedure_code", "modifier"],
        )
        .filter(pl.col("service_day").is_between(pl.col("start_date"), pl.col("end_date")))
        # Several accepted SPAs can cover a date across plans: prefer the active plan's, then the lowest id.
        .sort(["order", (pl.col("plan_id") != pl.col("active_plan")).fill_null(True), "spa_id"])
        .unique("order", keep="first", maintain_order=True)
        .select(
            "order",
            "spa_id",
            spa_units_s="units_s",
            spa_rate_s="rate_s",
            spa_period=SPA_PERIOD,
        )
    )
    waived = waivers.lazy().group_by("claim_pk").agg(waived=pl.col("code").unique().sort())
    return (
        claims.join(plan, on="order", how="left", maintain_order="left")
        .join(enrolled, on="order", how="left", maintain_order="left")
        .join(spa, on="order", how="left", maintain_order="left")
        .join(waived, on="claim_pk", how="left", maintain_order="left")
        .with_columns(
            waived=pl.col("waived").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            no_plan=pl.col("plan_id").is_null(),
            no_enrollment=pl.col("enrolled").is_null(),
            no_spa=pl.col("spa_id").is_null(),
            hours_cap_s=pl.when(pl.col("attendant")).then(pl.col("monthly_hours_s")),
        )
        .with_columns(
            static_ok=~pl.col("rejected") & ~pl.col("no_plan") & ~pl.col("no_enrollment") & ~pl.col("no_spa")
        )
        .collect()
    )


def _ledger_rows(ledger: pl.DataFrame, reference: ReferenceFrames, rules: Rules) -> pl.DataFrame:
    """Earlier paid claims in the shape of run claims, keyed for the edits as reference data says now."""
    spas = reference.spas.select("spa_id", "unit_period")
    return (
        ledger.join(spas, on="spa_id", how="left")
        .with_columns(
            order=pl.lit(LEDGER_ORDER, dtype=pl.Int64),
            month=pl.col("service_day").dt.month_start(),
            attendant=pl.col("procedure_code").is_in(sorted(rules.attendant_care_procedures)),
            group=pl.col("procedure_code").replace_strict(_group_map(rules), default=None, return_dtype=pl.Int32),
            spa_period=SPA_PERIOD,
        )
        .pipe(_as_paid)
    )


def _group_map(rules: Rules) -> dict[str, int]:
    return {proc: index for index, group in enumerate(rules.overlap_groups) for proc in group}


PAID_COLUMNS = ("order", "claim_id", "client_prime", "service_day", "month", "provider_id", "procedure_code",
                "modifier", "start_min", "end_min", "units_s", "spa_id", "spa_period", "attendant", "group")


def _as_paid(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(PAID_COLUMNS).cast({"group": pl.Int32, "spa_period": pl.Date})


def _conflict_pairs(claims: pl.DataFrame, paid: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Every (claim, earlier payable claim) pair of one client and day that collides, with its codes.

    Codes per pair, before waivers: DUPLICATE_SERVICE (same provider, service, date and times),
    OVERLAP_DUPLICATE (overlap in one group, pair not allowed), OVERLAP_SAME_PROVIDER (overlap in
    one group, one provider, pair not allowed for one provider).
    """
    allowed = pl.DataFrame(
        [
            (*first.split("/", 1), *second.split("/", 1), pair.providers)
            for pair in rules.allowed_overlaps
            for first, second in ((pair.first, pair.second), (pair.second, pair.first))
        ],
        schema=["procedure_code", "modifier", "p_procedure_code", "p_modifier", "allowance"],
        orient="row",
    )
    left = claims.select("order", "claim_id", "client_prime", "service_day", "provider_id", "procedure_code",
                         "modifier", "start_min", "end_min", "group", "waived")
    right = paid.select(pl.exclude("client_prime", "service_day").name.prefix("p_"), "client_prime", "service_day")
    same_times = (pl.col("start_min").eq_missing(pl.col("p_start_min"))) & (
        pl.col("end_min").eq_missing(pl.col("p_end_min"))
    )
    same_provider = pl.col("provider_id") == pl.col("p_provider_id")
    overlap = (
        (pl.col("group") == pl.col("p_group"))
        & (pl.col("start_min") < pl.col("p_end_min"))
        & (pl.col("p_start_min") < pl.col("end_min"))
    ).fill_null(False)
    return (
        left.lazy()
        .join(right.lazy(), on=["client_prime", "service_day"])
        .filter(pl.col("p_order") < pl.col("order"))
        .join(allowed.lazy(), on=["procedure_code", "modifier", "p_procedure_code", "p_modifier"], how="left")
        .with_columns(
            dup_service=same_provider
            & (pl.col("procedure_code") == pl.col("p_procedure_code"))
            & (pl.col("modifier") == pl.col("p_modifier"))
            & same_times
            & ~_waived(R.DUPLICATE_SERVICE),
            overlap_duplicate=overlap & pl.col("allowance").is_null() & ~_waived(R.OVERLAP_DUPLICATE),
            overlap_same_provider=overlap
            & same_provider
            & (pl.col("allowance") != "any").fill_null(True)
            & ~_waived(R.OVERLAP_SAME_PROVIDER),
        )
        .filter(pl.col("dup_service") | pl.col("overlap_duplicate") | pl.col("overlap_same_provider"))
        .select("order", "p_order", "p_claim_id", "dup_service", "overlap_duplicate", "overlap_same_provider")
        .collect()
    )


def _settle(candidates: pl.DataFrame, ledger_rows: pl.DataFrame, pairs: pl.DataFrame) -> pl.Series:
    """The orders of the run's claims that get paid.

    A candidate (passing record checks and static edits) is paid unless an earlier paid claim
    collides with it or a cap it counts against is already used up. Only candidates on a cap that
    all candidates together could exceed ('hot'), or colliding with another candidate, need the
    sequential walk; the rest are paid.
    """
    ledger_hit = pairs.filter(pl.col("p_order") == LEDGER_ORDER).get_column("order").unique()
    edges = pairs.filter(
        (pl.col("p_order") != LEDGER_ORDER) & pl.col("order").is_in(candidates["order"].implode())
    ).select("order", "p_order")

    spa_used = ledger_rows.group_by("spa_id", "spa_period").agg(used=pl.col("units_s").sum())
    hot_spa = (
        candidates.group_by("spa_id", "spa_period")
        .agg(total=pl.col("units_s").sum(), cap=pl.col("spa_units_s").first())
        .join(spa_used, on=["spa_id", "spa_period"], how="left")
        .with_columns(used=pl.col("used").fill_null(0))
        .filter(pl.col("used") + pl.col("total") > pl.col("cap"))
        .select("spa_id", "spa_period", "cap", "used")
    )
    month_used = (
        ledger_rows.filter(pl.col("attendant"))
        .group_by("client_prime", "month")
        .agg(used=pl.col("units_s").sum())
    )
    hot_month = (
        candidates.filter(pl.col("attendant") & pl.col("hours_cap_s").is_not_null())
        .group_by("client_prime", "month")
        .agg(total=pl.col("units_s").sum(), min_cap=pl.col("hours_cap_s").min())
        .join(month_used, on=["client_prime", "month"], how="left")
        .with_columns(used=pl.col("used").fill_null(0))
        .filter(pl.col("used") + pl.col("total") > pl.col("min_cap"))
        .select("client_prime", "month", "used")
    )
    marked = (
        candidates.filter(~pl.col("order").is_in(ledger_hit.implode()))
        .join(hot_spa.with_columns(hot_spa=pl.lit(True)), on=["spa_id", "spa_period"], how="left")
        .join(
            hot_month.rename({"used": "month_used"}).with_columns(hot_month=pl.lit(True)),
            on=["client_prime", "month"],
            how="left",
        )
        .with_columns(
            hot_spa=pl.col("hot_spa").fill_null(False),
            hot_month=pl.col("hot_month").fill_null(False) & pl.col("attendant"),
            edged=pl.col("order").is_in(pl.concat([edges["order"], edges["p_order"]]).implode()),
        )
        .with_columns(entangled=pl.col("hot_spa") | pl.col("hot_month") | pl.col("edged"))
    )
    free = marked.filter(~pl.col("entangled")).get_column("order")
    walk = marked.filter(pl.col("entangled")).sort("order")
    return pl.concat([free, pl.Series("order", _walk(walk, hot_spa, hot_month, edges), dtype=pl.Int64)])


def _walk(walk: pl.DataFrame, hot_spa: pl.DataFrame, hot_month: pl.DataFrame, edges: pl.DataFrame) -> list[int]:
    """Settle entangled claims one at a time, in adjudication order: the sequential definition."""
    spa_used = {(row[0], row[1]): row[2] for row in hot_spa.select("spa_id", "spa_period", "used").iter_rows()}
    spa_cap = {(row[0], row[1]): row[2] for row in hot_spa.select("spa_id", "spa_period", "cap").iter_rows()}
    month_used = {(row[0], row[1]): row[2] for row in hot_month.iter_rows()}
    earlier: dict[int, list[int]] = {}
    for order, p_order in edges.iter_rows():
        earlier.setdefault(order, []).append(p_order)
    paid: set[int] = set()
    columns = ("order", "spa_id", "spa_period", "client_prime", "month", "units_s", "hours_cap_s",
               "hot_spa", "hot_month", "waived")
    for order, spa_id, period, client, month, units, hours_cap, hot_s, hot_m, waived in walk.select(
        columns
    ).iter_rows():
        spa_key, month_key = (spa_id, period), (client, month)
        if hot_s and spa_used[spa_key] + units > spa_cap[spa_key]:
            continue
        if hot_m and R.MONTHLY_HOURS_EXCEEDED not in waived and month_used[month_key] + units > hours_cap:
            continue
        if any(p in paid for p in earlier.get(order, ())):
            continue
        paid.add(order)
        if hot_s:
            spa_used[spa_key] += units
        if hot_m:
            month_used[month_key] += units
    return sorted(paid)


def _outcomes(
    claims: pl.DataFrame, ledger_rows: pl.DataFrame, pairs: pl.DataFrame, paid_orders: pl.Series, rules: Rules
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every claim's reasons against the claims paid before it; the walk's verdicts must agree."""
    is_paid = pl.col("order").is_in(paid_orders.implode())
    paid_units = pl.when(pl.col("paid")).then(pl.col("units_s")).otherwise(0)
    ledger_spa = ledger_rows.group_by("spa_id", "spa_period").agg(spa_prior=pl.col("units_s").sum())
    ledger_month = (
        ledger_rows.filter(pl.col("attendant")).group_by("client_prime", "month").agg(month_prior=pl.col("units_s").sum())
    )
    collisions = (
        pairs.filter(pl.col("p_order").is_in(paid_orders.implode()) | (pl.col("p_order") == LEDGER_ORDER))
        .sort("order", "p_order")
        .group_by("order", maintain_order=True)
        .agg(
            hit_dup_service=pl.col("dup_service").any(),
            hit_overlap_duplicate=pl.col("overlap_duplicate").any(),
            hit_overlap_same_provider=pl.col("overlap_same_provider").any(),
            conflicts_with=pl.col("p_claim_id"),
        )
    )
    edit_failures = {
        R.NO_ACTIVE_PLAN: pl.col("no_plan"),
        R.NO_CM_ENROLLMENT: pl.col("no_enrollment"),
        R.NO_ACTIVE_SPA: pl.col("no_spa"),
        R.UNITS_EXCEED_SPA: pl.col("spa_before") + pl.col("units_s") > pl.col("spa_units_s"),
        R.MONTHLY_HOURS_EXCEEDED: pl.col("attendant")
        & (pl.col("month_before") + pl.col("units_s") > pl.col("hours_cap_s"))
        & ~_waived(R.MONTHLY_HOURS_EXCEEDED),
        R.DUPLICATE_SERVICE: pl.col("hit_dup_service"),
        R.OVERLAP_DUPLICATE: pl.col("hit_overlap_duplicate"),
        R.OVERLAP_SAME_PROVIDER: pl.col("hit_overlap_same_provider"),
    }
    assert tuple(edit_failures) == R.EDITS
    edit_mask = pl.sum_horizontal(
        [pl.when(failed.fill_null(False)).then(1 << bit).otherwise(0) for bit, failed in enumerate(edit_failures.values())]
    )
    # One small integer per combination of reasons: failing fields of a rejected record (negative),
    # a duplicate claim id, or the failing edits (0 = paid). Lists are looked up, not built per row.
    reason_key = (
        pl.when(~pl.col("valid")).then(-pl.col("invalid_mask"))
        .when(pl.col("duplicate_id")).then(pl.lit(DUPLICATE_ID_KEY))
        .otherwise(edit_mask)
    )
    reasons_by_key = _reasons_by_key()
    carc_by_key = {key: [rules.carc[r.split(":")[0]] for r in reasons] for key, reasons in reasons_by_key.items()}
    frame = (
        claims.lazy()
        .with_columns(paid=is_paid)
        .with_columns(paid_units=paid_units)
        .join(ledger_spa.lazy(), on=["spa_id", "spa_period"], how="left", maintain_order="left")
        .join(ledger_month.lazy(), on=["client_prime", "month"], how="left", maintain_order="left")
        .join(collisions.lazy(), on="order", how="left", maintain_order="left")
        .with_columns(
            spa_before=pl.col("spa_prior").fill_null(0)
            + (pl.col("paid_units").cum_sum() - pl.col("paid_units")).over("spa_id", "spa_period"),
            month_before=pl.col("month_prior").fill_null(0)
            + (
                pl.when(pl.col("attendant")).then(pl.col("paid_units")).otherwise(0).cum_sum()
                - pl.when(pl.col("attendant")).then(pl.col("paid_units")).otherwise(0)
            ).over("client_prime", "month"),
        )
        .with_columns(reason_key=reason_key.cast(pl.Int32))
        .with_columns(
            status=pl.when(pl.col("rejected"))
            .then(pl.lit(R.REJECTED))
            .when(pl.col("reason_key") == 0)
            .then(pl.lit(R.PAID))
            .otherwise(pl.lit(R.SUSPENDED)),
            reasons=pl.col("reason_key").replace_strict(reasons_by_key, return_dtype=pl.List(pl.String)),
            carc=pl.col("reason_key").replace_strict(carc_by_key, return_dtype=pl.List(pl.String)),
            rate_s=pl.min_horizontal("spa_rate_s", "rate_s"),
        )
        .with_columns(
            paid_units_s=pl.when(pl.col("paid")).then(pl.col("units_s")),
            paid_cents=pl.when(pl.col("paid")).then((pl.col("units_s") * pl.col("rate_s") + 500_000) // 1_000_000),
            spa_id=pl.when(~pl.col("rejected")).then(pl.col("spa_id")),
            conflicts_with=pl.col("conflicts_with").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .collect()
    )
    disagree = frame.filter(pl.col("paid") != (pl.col("status") == R.PAID))
    if disagree.height:
        raise AssertionError(f"engine inconsistency on claim_pk {disagree['claim_pk'].head(5).to_list()}")
    outcomes = frame.select(OUTCOME_SCHEMA.keys()).cast(OUTCOME_SCHEMA)
    newly_paid = frame.filter(pl.col("paid")).select(LEDGER_SCHEMA.keys()).cast(LEDGER_SCHEMA)
    return outcomes, newly_paid


DUPLICATE_ID_KEY = -(1 << 20)


def _reasons_by_key() -> dict[int, list[str]]:
    keys = {-mask: reasons for mask, reasons in REASONS_BY_MASK.items() if mask}
    keys[DUPLICATE_ID_KEY] = [R.DUPLICATE_CLAIM_ID]
    for mask in range(1 << len(R.EDITS)):
        keys[mask] = [code for bit, code in enumerate(R.EDITS) if mask >> bit & 1]
    return keys


assert SCALE == 10_000  # paid_cents above divides a x10^8 product by 10^6
