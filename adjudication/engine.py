"""The batch engine: SPEC section 4's sequential adjudication, computed vectorized with polars.

Sequential order only matters where claims can interact: a shared SPA period or client month
whose caps all the claims together could exceed ('tight'), or two claims of one client and day
that collide (duplicate service, overlap). Everything else is decided at once. The few entangled
claims are walked in adjudication order to settle which get paid; then every claim's reasons are
computed vectorized against the claims paid before it, and checked against the walk.

Speed: a claim's `order` is its row index in the run (0..n-1), so per-claim results found on
narrow frames are placed back by index (scatter / gather) instead of joined onto the wide claims
frame; joins and sorts touch only the few rows that need them (claims sharing a client and day,
claims on tight caps, claims matching several SPAs). Queries run on polars' in-memory engine,
several times faster here than the streaming default for order-keeping joins on a million rows;
only the plain pair join runs streaming, where that is the faster one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from adjudication import reasons as R
from adjudication.claims import REASONS_BY_MASK, check_fields, parse_fields
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
# The caps: units per SPA period, attendant-care hours per client month.
SPA_GROUP = ["spa_id", "spa_period"]
MONTH_GROUP = ["client_prime", "month"]
SPA_KEY = ["client_prime", "provider_id", "procedure_code", "modifier"]
IN_MEMORY = "in-memory"

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


@dataclass(frozen=True)
class Checked:
    """A queue after the record checks (typed columns, validity, duplicate claim ids), in order.

    Which claims are rejected, and so which claim ids the run takes, is known here, before any
    edit runs: the caller can store the ids while the edits are computed.
    """

    claims: pl.DataFrame
    held_pks: pl.Series  # claim_pks that held their claim id before this run

    def new_holders(self) -> pl.DataFrame:
        """claim_id (trimmed), claim_pk of the claims not rejected that hold their id from now on
        (a re-queued claim holds its id already)."""
        return self.claims.filter(~pl.col("rejected") & ~pl.col("claim_pk").is_in(self.held_pks.implode())).select(
            "claim_id", "claim_pk")


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
    fields = parse_fields(queue.lazy()).collect(engine=IN_MEMORY)
    return decide(check_records(fields, rules, holders), reference, rules, ledger, waivers)


def check_records(fields: pl.DataFrame, rules: Rules, holders: pl.DataFrame | None = None) -> Checked:
    """The record checks of SPEC 4 (invalid records, duplicate claim ids): the first half of `adjudicate`.

    fields: claim_pk + the queue's parsed fields (claims.FIELDS_SCHEMA, from `parse_fields`), in
    adjudication order. A run reads them as stored at submit; the texts are not parsed again.
    """
    holders = holders if holders is not None else _empty({"claim_id": pl.String, "holder_pk": pl.Int64})
    claims = (
        check_fields(fields.lazy(), rules)
        .drop("invalid", "service_date", "start_time", "end_time", "units", "billed_rate", "staff_id")
        .with_columns(
            order=pl.int_range(pl.len(), dtype=pl.Int64),
            valid=pl.col("invalid_mask") == 0,
            month=pl.col("service_day").dt.month_start(),
            attendant=pl.col("procedure_code").is_in(sorted(rules.attendant_care_procedures)).fill_null(False),
        )
        .collect(engine=IN_MEMORY)
    )
    claims = claims.with_columns(duplicate_id=_duplicate_ids(claims, holders)).with_columns(
        rejected=~pl.col("valid") | pl.col("duplicate_id")
    )
    return Checked(claims, holders.get_column("holder_pk"))


def crowded(checked: Checked, limit: int) -> pl.Series:
    """claim_pks of the claims (not rejected) that share their client and day with more than `limit`
    claims in all: the edits compare every two claims of a client and day, so such a day costs
    memory and time by its square."""
    day = ["client_prime", "service_day"]
    return (
        checked.claims.lazy().filter(~pl.col("rejected"))
        .filter(pl.len().over(day) > limit)
        .select("claim_pk")
        .collect(engine=IN_MEMORY)
        .to_series()
    )


def decide(
    checked: Checked,
    reference: ReferenceFrames,
    rules: Rules,
    ledger: pl.DataFrame | None = None,
    waivers: pl.DataFrame | None = None,
) -> Adjudication:
    """The edits and payment of SPEC 4 for claims through `check_records`: the second half of `adjudicate`."""
    ledger = _empty(LEDGER_SCHEMA) if ledger is None else ledger.cast(LEDGER_SCHEMA).select(LEDGER_SCHEMA.keys())
    waivers = waivers if waivers is not None else _empty({"claim_pk": pl.Int64, "code": pl.String})

    claims = _static(checked.claims, reference, waivers)
    ledger_rows = _ledger_rows(ledger, reference, rules)
    pairs = _conflict_pairs(claims, ledger_rows, rules)
    tight = _tight(claims, ledger_rows)
    unpaid = _settle(claims, tight, pairs)
    outcomes, newly_paid = _outcomes(claims, tight, pairs, unpaid, rules)
    return Adjudication(outcomes=outcomes, newly_paid=newly_paid)


# How a run has the edits decided: `decide` itself, or (adjudication.shards) split across workers.
Decider = Callable[[Checked, ReferenceFrames, Rules, pl.DataFrame | None, pl.DataFrame | None], Adjudication]


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _bit(code: str) -> int:
    """A failing (or waived) edit's bit in an edit mask."""
    return 1 << R.EDITS.index(code)


def _waived(code: str) -> pl.Expr:
    return (pl.col("waived") & _bit(code)) != 0


def _static(claims: pl.DataFrame, reference: ReferenceFrames, waivers: pl.DataFrame) -> pl.DataFrame:
    """The edits that do not depend on other claims of the run: one row per claim, in order."""
    return claims.hstack(_lookups(claims, reference, waivers)).with_columns(
        spa_period=SPA_PERIOD,
        no_plan=pl.col("plan_id").is_null(),
        no_enrollment=pl.col("enrolled").is_null(),
        no_spa=pl.col("spa_id").is_null(),
        hours_cap_s=pl.when(pl.col("attendant")).then(pl.col("monthly_hours_s")),
        static_ok=~pl.col("rejected")
        & pl.col("plan_id").is_not_null()
        & pl.col("enrolled").is_not_null()
        & pl.col("spa_id").is_not_null(),
    )


def _duplicate_ids(claims: pl.DataFrame, holders: pl.DataFrame) -> pl.Series:
    """Whether each claim is valid with an id held already: by a stored claim not rejected (unless
    that is this claim, re-queued), else by the first valid claim of this run that carries it.

    Ids are compared by hash first; only the claims whose id hash repeats, or is a holder's, need
    the exact check on the text.
    """
    ids = claims.select(pl.when(pl.col("valid")).then(pl.col("claim_id"))).to_series()
    hashes = ids.hash()
    repeats = hashes.is_duplicated()
    # In row (= adjudication) order.
    first_in_run = pl.repeat(True, claims.height, eager=True).scatter(
        repeats.arg_true(), ids.filter(repeats).is_first_distinct()
    )
    maybe_held = hashes.is_in(holders.get_column("claim_id").hash().implode())
    held = claims.filter(maybe_held).select("order", "claim_id").join(holders, on="claim_id")
    holder_pk = _at_orders(claims.height, held, "holder_pk")
    return claims.get_column("valid") & (holder_pk != claims.get_column("claim_pk")).fill_null(~first_in_run)


def _lookups(claims: pl.DataFrame, reference: ReferenceFrames, waivers: pl.DataFrame) -> pl.DataFrame:
    """Each claim's plan, enrollment, SPA and waived edits, aligned with `claims` (null when none).

    Matched for the claims not rejected on narrow frames; each claim then takes its plan and SPA
    rows by index, rather than joining the matches back onto it.
    """
    keyed = claims.lazy().filter(~pl.col("rejected")).select("order", "service_day", *SPA_KEY)
    plans = reference.plans.filter(pl.col("status") == "accepted").with_row_index("row")
    spas = reference.spas.filter(pl.col("status") == "accepted").with_row_index("row")
    dates = ["start_date", "end_date"]
    plan_matches, enrollment_matches, spa_matches, waived = pl.collect_all(
        [
            _covering(keyed, plans.lazy().select("row", "plan_id", "client_prime", *dates), ["client_prime"]),
            _covering(keyed, reference.enrollments.lazy().select("client_prime", *dates), ["client_prime"]),
            _covering(keyed, spas.lazy().select("row", "spa_id", "plan_id", *SPA_KEY, *dates), SPA_KEY),
            waivers.lazy()
            .join(claims.lazy().select("claim_pk", "order"), on="claim_pk")
            .group_by("order")
            .agg(waived=pl.col("code").replace_strict({c: _bit(c) for c in R.EDITS}, default=0).bitwise_or()),
        ],
        engine=IN_MEMORY,
    )
    n = claims.height
    plan_row = _at_orders(n, _preferred(plan_matches, ["plan_id"]), "row")
    # Several accepted SPAs can cover a date across plans: prefer the active plan's, then the lowest id.
    active_plan = pl.lit(plans.get_column("plan_id").gather(plan_row)).gather(pl.col("order"))
    spa = _preferred(spa_matches, [(pl.col("plan_id") != active_plan).fill_null(True), "spa_id"])
    spa_row = _at_orders(n, spa, "row")
    return pl.concat(
        [
            plans.select("plan_id", "monthly_hours_s")[plan_row],
            spas.select("spa_id", "unit_period", spa_units_s="units_s", spa_rate_s="rate_s")[spa_row],
            _at_orders(n, _preferred(enrollment_matches, []).with_columns(enrolled=True), "enrolled").to_frame(),
            _at_orders(n, waived, "waived").fill_null(0).cast(pl.Int32).to_frame(),
        ],
        how="horizontal",
    )


def _aligned(n: int, frame: pl.DataFrame) -> list[pl.Series]:
    """The columns of `frame` (a row per order) placed at the claims `frame["order"]` of a run of n claims."""
    position = _at_orders(n, frame.with_row_index("position"), "position")
    return frame.drop("order")[position].get_columns()


def _at_orders(n: int, frame: pl.DataFrame, column: str) -> pl.Series:
    """`frame[column]` placed at the claims `frame["order"]` of a run of `n` claims (null elsewhere)."""
    placed = pl.repeat(None, n, dtype=frame.schema[column], eager=True)
    return placed.scatter(frame.get_column("order"), frame.get_column(column)).rename(column)


def _covering(keyed: pl.LazyFrame, table: pl.LazyFrame, on: list[str]) -> pl.LazyFrame:
    """The rows of `table` matching a claim on `on` whose dates cover its service day, in claim order."""
    return keyed.join(table, on=on, maintain_order="left").filter(
        pl.col("service_day").is_between(pl.col("start_date"), pl.col("end_date"))
    )


def _preferred(matches: pl.DataFrame, prefer: list) -> pl.DataFrame:
    """The first match of each claim by `prefer` (ties: any). `matches` come grouped by order.

    Nearly every claim has a single match, so only the claims with several are sorted; the result
    is in no particular order.
    """
    several = (pl.col("order") == pl.col("order").shift(1)) | (pl.col("order") == pl.col("order").shift(-1))
    several = several.fill_null(False)
    first = matches.filter(several).sort(["order", *prefer]).unique("order", keep="first", maintain_order=True)
    return pl.concat([matches.filter(~several), first])


# A paid claim as the edits read it.
PAID_COLUMNS = ("order", "claim_id", "client_prime", "service_day", "month", "provider_id", "procedure_code",
                "modifier", "start_min", "end_min", "units_s", "spa_id", "spa_period", "attendant", "group")


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
        .select(PAID_COLUMNS)
        .cast({"group": pl.Int32, "spa_period": pl.Date})
    )


def _group_map(rules: Rules) -> dict[str, int]:
    return {proc: index for index, group in enumerate(rules.overlap_groups) for proc in group}


def _conflict_pairs(claims: pl.DataFrame, ledger_rows: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """Every (claim not rejected, earlier payable claim) pair of one client and day that collides, with its codes.

    Payable: a ledger claim or a candidate of this run. Codes per pair, after waivers: DUPLICATE_SERVICE
    (same provider, service, date and times), OVERLAP_DUPLICATE (overlap in one group, pair not allowed),
    OVERLAP_SAME_PROVIDER (overlap in one group, one provider, pair not allowed for one provider).
    The pairs are found on narrow frames (most claims share their client and day with no other
    claim of the run), then both sides' columns are taken by index.
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
    day = ["client_prime", "service_day"]
    rows = claims.lazy().filter(~pl.col("rejected")).select("order", "static_ok", *day)
    # Claims sharing their client and day with another claim of the run (found by hash: a collision
    # only lets a few more claims through to the exact join).
    shared = rows.filter(pl.struct(day).hash().is_duplicated())
    run_pairs, ledger_pairs = pl.collect_all(
        [
            shared.join(shared.filter("static_ok").select(*day, p_order="order"), on=day)
            .filter(pl.col("p_order") < pl.col("order"))
            .select("order", "p_order"),
            rows.join(ledger_rows.lazy().select(*day).with_row_index("ledger_row"), on=day)
            .select("order", "ledger_row"),
        ],
        engine="streaming",  # faster than in-memory for these plain joins
    )
    compared = ["order", "claim_id", "provider_id", "procedure_code", "modifier", "start_min", "end_min", "group"]
    mine = claims.select(*compared, "waived")
    candidates = pl.concat(
        [
            _side_by_side(mine[run_pairs["order"]], claims.select(compared)[run_pairs["p_order"]]),
            _side_by_side(mine[ledger_pairs["order"]], ledger_rows.select(compared)[ledger_pairs["ledger_row"]])
            .with_columns(ledger_pairs["ledger_row"]),
        ],
        how="diagonal",
    )
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
        candidates.lazy()
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
        .select("order", "p_order", "ledger_row", "p_claim_id", "dup_service", "overlap_duplicate",
                "overlap_same_provider")
        .collect(engine=IN_MEMORY)
    )


def _side_by_side(mine: pl.DataFrame, theirs: pl.DataFrame) -> pl.DataFrame:
    return mine.hstack(theirs.select(pl.all().name.prefix("p_")))


def _tight(claims: pl.DataFrame, ledger_rows: pl.DataFrame) -> pl.DataFrame:
    """The claims (not rejected) on a cap that they all together with the ledger could exceed, in order.

    On any other cap no claim can fail, whichever of them get paid: the cap edits need the claims
    paid before a claim only here. Columns: order, tight_spa / tight_month (the claim counts against
    that tight cap), spa_cap, and the units the ledger already used on each cap.
    """
    rows = claims.lazy().filter(~pl.col("rejected"))
    on_spa = rows.filter(pl.col("spa_id").is_not_null())
    on_month = rows.filter(pl.col("attendant") & pl.col("hours_cap_s").is_not_null())
    ledger = ledger_rows.lazy()
    spa_caps, month_caps = pl.collect_all(
        [
            on_spa.group_by(SPA_GROUP)
            .agg(total=pl.col("units_s").sum(), spa_cap=pl.col("spa_units_s").first())
            .join(ledger.group_by(SPA_GROUP).agg(spa_used=pl.col("units_s").sum()), on=SPA_GROUP, how="left")
            .with_columns(pl.col("spa_used").fill_null(0))
            .filter(pl.col("spa_used") + pl.col("total") > pl.col("spa_cap"))
            .select(*SPA_GROUP, "spa_cap", "spa_used"),
            on_month.group_by(MONTH_GROUP)
            .agg(total=pl.col("units_s").sum(), min_cap=pl.col("hours_cap_s").min())
            .join(
                ledger.filter(pl.col("attendant")).group_by(MONTH_GROUP).agg(month_used=pl.col("units_s").sum()),
                on=MONTH_GROUP,
                how="left",
            )
            .with_columns(pl.col("month_used").fill_null(0))
            .filter(pl.col("month_used") + pl.col("total") > pl.col("min_cap"))
            .select(*MONTH_GROUP, "month_used"),
        ],
        engine=IN_MEMORY,
    )
    # Tight caps are few: their claims are picked by SPA or client before the exact join.
    tight_spa = (
        on_spa.filter(pl.col("spa_id").is_in(spa_caps.get_column("spa_id").implode()))
        .join(spa_caps.lazy(), on=SPA_GROUP)
        .select("order", "spa_cap", "spa_used", tight_spa=pl.lit(True))
    )
    tight_month = (
        on_month.filter(pl.col("client_prime").is_in(month_caps.get_column("client_prime").implode()))
        .join(month_caps.lazy(), on=MONTH_GROUP)
        .select("order", "month_used", tight_month=pl.lit(True))
    )
    return (
        tight_spa.join(tight_month, on="order", how="full", coalesce=True)
        .sort("order")
        .with_columns(pl.col("tight_spa", "tight_month").fill_null(False))
        .collect(engine=IN_MEMORY)
    )


def _settle(claims: pl.DataFrame, tight: pl.DataFrame, pairs: pl.DataFrame) -> pl.Series:
    """The orders of the candidates (claims passing record checks and static edits) that are not paid.

    A candidate is paid unless an earlier paid claim collides with it or a cap it counts against is
    already used up. Only candidates on a tight cap, or colliding with another candidate, need the
    sequential walk; the rest are paid.
    """
    is_candidate = claims.get_column("static_ok")
    ledger_hit = pairs.filter(pl.col("p_order") == LEDGER_ORDER).get_column("order").unique()
    ledger_hit = ledger_hit.filter(is_candidate.gather(ledger_hit))
    edges = pairs.filter(pl.col("p_order") != LEDGER_ORDER).select("order", "p_order")
    edges = edges.filter(is_candidate.gather(edges.get_column("order")))
    walked = (
        pl.concat([tight.get_column("order"), edges.get_column("order"), edges.get_column("p_order")])
        .unique()
        .sort()
    )
    walked = walked.filter(is_candidate.gather(walked) & ~walked.is_in(ledger_hit.implode()))
    walk = (
        claims.select("order", *SPA_GROUP, *MONTH_GROUP, "units_s", "hours_cap_s", "waived")[walked]
        .join(tight, on="order", how="left", maintain_order="left")
        .with_columns(pl.col("tight_spa", "tight_month").fill_null(False))
    )
    paid = _walk(walk, edges)
    return pl.concat([ledger_hit, walked.filter(~walked.is_in(pl.Series(paid, dtype=pl.Int64).implode()))])


def _walk(walk: pl.DataFrame, edges: pl.DataFrame) -> list[int]:
    """Settle entangled claims one at a time, in adjudication order: the sequential definition."""
    walk = walk.with_columns(pl.col("spa_period", "month").to_physical())  # plain ints are quicker in Python
    spa_caps = walk.filter("tight_spa").unique(SPA_GROUP).select(*SPA_GROUP, "spa_used", "spa_cap")
    spa_used = {(spa_id, period): used for spa_id, period, used, _cap in spa_caps.iter_rows()}
    spa_cap = {(spa_id, period): cap for spa_id, period, _used, cap in spa_caps.iter_rows()}
    month_caps = walk.filter("tight_month").unique(MONTH_GROUP).select(*MONTH_GROUP, "month_used")
    month_used = {(client, month): used for client, month, used in month_caps.iter_rows()}
    earlier: dict[int, list[int]] = {}
    for order, p_order in edges.iter_rows():
        earlier.setdefault(order, []).append(p_order)
    paid: list[int] = []
    paid_set: set[int] = set()
    rows = walk.select(
        "order", *SPA_GROUP, *MONTH_GROUP, "units_s", "hours_cap_s", "tight_spa", "tight_month",
        hours_waived=_waived(R.MONTHLY_HOURS_EXCEEDED),
    )
    for order, spa_id, period, client, month, units, hours_cap, hot_s, hot_m, hours_waived in zip(
        *(rows.get_column(c).to_list() for c in rows.columns)
    ):
        spa_key, month_key = (spa_id, period), (client, month)
        if hot_s and spa_used[spa_key] + units > spa_cap[spa_key]:
            continue
        if hot_m and not hours_waived and month_used[month_key] + units > hours_cap:
            continue
        if any(p in paid_set for p in earlier.get(order, ())):
            continue
        paid.append(order)
        paid_set.add(order)
        if hot_s:
            spa_used[spa_key] += units
        if hot_m:
            month_used[month_key] += units
    return paid


def _outcomes(
    claims: pl.DataFrame, tight: pl.DataFrame, pairs: pl.DataFrame, unpaid: pl.Series, rules: Rules
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every claim's reasons against the claims paid before it; the walk's verdicts must agree."""
    paid = claims.select(pl.col("static_ok") & ~pl.col("order").is_in(unpaid.implode())).to_series()
    # Units paid on a tight cap before each claim (elsewhere no cap can be exceeded). A claim counts
    # on a cap only where it is flagged: the tight frame also holds its other claims, by client or SPA.
    spa_units = pl.when(pl.col("paid") & pl.col("tight_spa")).then(pl.col("units_s")).otherwise(0)
    month_units = pl.when(pl.col("paid") & pl.col("tight_month")).then(pl.col("units_s")).otherwise(0)
    before = (
        tight.hstack(claims.select(*SPA_GROUP, *MONTH_GROUP, "units_s")[tight["order"]])
        .with_columns(paid=paid.gather(tight["order"]))
        .select(
            "order",
            spa_before=pl.when("tight_spa").then(
                pl.col("spa_used") + (spa_units.cum_sum() - spa_units).over(SPA_GROUP)
            ),
            month_before=pl.when("tight_month").then(
                pl.col("month_used") + (month_units.cum_sum() - month_units).over(MONTH_GROUP)
            ),
        )
    )
    collisions = (
        pairs
        # Every claim on the paying side of a pair is from the ledger or a candidate.
        .filter((pl.col("p_order") == LEDGER_ORDER) | ~pl.col("p_order").is_in(unpaid.implode()))
        .sort("order", "p_order", "ledger_row")  # conflicts in the order they were paid
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
        [pl.when(failed.fill_null(False)).then(_bit(code)).otherwise(0) for code, failed in edit_failures.items()]
    )
    # One small integer per combination of reasons: failing fields of a rejected record (negative),
    # a duplicate claim id, or the failing edits (0 = paid). Lists are looked up, not built per row.
    reason_key = (
        pl.when(~pl.col("valid")).then(-pl.col("invalid_mask"))
        .when(pl.col("duplicate_id")).then(pl.lit(DUPLICATE_ID_KEY))
        .otherwise(edit_mask)
    )
    reason_lists = REASON_LISTS.with_columns(
        carc=pl.col("reasons").list.eval(
            pl.element().str.split(":").list.first().replace_strict(rules.carc, return_dtype=pl.String)
        )
    )
    frame = (
        claims.lazy()
        .select(
            *LEDGER_SCHEMA, "valid", "invalid_mask", "duplicate_id", "rejected", "no_plan", "no_enrollment", "no_spa",
            "attendant", "hours_cap_s", "spa_units_s", "spa_rate_s", "rate_s", "waived",
        )
        .with_columns(paid=paid)
        .with_columns(*_aligned(claims.height, before), *_aligned(claims.height, collisions))
        .with_columns(reason_key=reason_key.cast(pl.Int32))
        .join(reason_lists.lazy(), on="reason_key", how="left", maintain_order="left")
        .with_columns(
            status=pl.when(pl.col("rejected"))
            .then(pl.lit(R.REJECTED))
            .when(pl.col("reason_key") == 0)
            .then(pl.lit(R.PAID))
            .otherwise(pl.lit(R.SUSPENDED)),
            rate_s=pl.min_horizontal("spa_rate_s", "rate_s"),
        )
        .with_columns(
            paid_units_s=pl.when(pl.col("paid")).then(pl.col("units_s")),
            paid_cents=pl.when(pl.col("paid")).then((pl.col("units_s") * pl.col("rate_s") + 500_000) // 1_000_000),
            spa_id=pl.when(~pl.col("rejected")).then(pl.col("spa_id")),
            conflicts_with=pl.col("conflicts_with").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .collect(engine=IN_MEMORY)
    )
    disagree = frame.filter(pl.col("paid") != (pl.col("status") == R.PAID))
    if disagree.height:
        raise AssertionError(f"engine inconsistency on claim_pk {disagree['claim_pk'].head(5).to_list()}")
    outcomes = frame.select(OUTCOME_SCHEMA.keys()).cast(OUTCOME_SCHEMA)
    newly_paid = frame.select(*LEDGER_SCHEMA, "paid").filter("paid").drop("paid").cast(LEDGER_SCHEMA)
    return outcomes, newly_paid


DUPLICATE_ID_KEY = -(1 << 20)


def _reasons_by_key() -> dict[int, list[str]]:
    keys = {-mask: reasons for mask, reasons in REASONS_BY_MASK.items() if mask}
    keys[DUPLICATE_ID_KEY] = [R.DUPLICATE_CLAIM_ID]
    for mask in range(1 << len(R.EDITS)):
        keys[mask] = [code for bit, code in enumerate(R.EDITS) if mask >> bit & 1]
    return keys


# Every reason key with its reasons, built once (the CARCs come from the rules of a run).
REASON_LISTS = pl.DataFrame(
    {"reason_key": list(_reasons_by_key()), "reasons": list(_reasons_by_key().values())},
    schema={"reason_key": pl.Int32, "reasons": pl.List(pl.String)},
)
assert SCALE == 10_000  # paid_cents above divides a x10^8 product by 10^6
