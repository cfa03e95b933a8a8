"""The batch engine: SPEC section 4's sequential adjudication, computed vectorized with polars.

Every check is declared once, in adjudication.reasons: its CARC, whether it may be waived, and how
it is decided. The checks that depend only on a claim and the reference data ("static") are polars
expressions decided for all claims at once. The ones that depend on the claims paid before a claim
(caps, collisions, held claim ids, replacements and voids) are decided by one ordered walk, and only
for the claims where order can matter: claims on a SPA period or client month whose cap all the
claims together could exceed ('tight'), claims of one client and day that collide, replacements and
voids and the claims they name, and claims sharing an id with a replacement or void. Every other
claim's outcome is its static verdict.

Speed: a claim's `order` is its row index in the run (0..n-1), so per-claim results found on
narrow frames are placed back by index (scatter / gather) instead of joined onto the wide claims
frame; joins and sorts touch only the few rows that need them (claims sharing a client and day,
claims on tight caps, claims matching several SPAs). Queries run on polars' in-memory engine,
several times faster here than the streaming default for order-keeping joins on a million rows;
only the plain pair join runs streaming, where that is the faster one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from adjudication import reasons as R
from adjudication.claims import REASONS_BY_MASK, check_fields, parse_fields, reasons_by_mask
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
OPEN_START, OPEN_END = dt.date(1, 1, 1), dt.date(9999, 12, 31)

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
    "adjusts": pl.String,
}
REVERSAL_SCHEMA = {"claim_pk": pl.Int64, "reversed_by": pl.Int64}
PROVIDER_SCHEMA = {"provider_id": pl.String, "start_date": pl.Date, "end_date": pl.Date}


@dataclass(frozen=True)
class ReferenceFrames:
    """Reference data as the engine reads it (dates as Date, numbers x10^4)."""

    plans: pl.DataFrame  # plan_id, client_prime, start_date, end_date, status, monthly_hours_s
    enrollments: pl.DataFrame  # client_prime, start_date, end_date
    spas: pl.DataFrame  # spa_id, plan_id, client_prime, provider_id, procedure_code, modifier,
    #                    start_date, end_date, units_s, unit_period, rate_s, status
    # provider_id, start_date, end_date (null: open-ended). None: not given, every provider enrolled
    # throughout (for callers that predate provider enrollment; the store passes the providers).
    providers: pl.DataFrame | None = None


@dataclass(frozen=True)
class Adjudication:
    outcomes: pl.DataFrame  # OUTCOME_SCHEMA, one row per queued claim, in adjudication order
    # LEDGER_SCHEMA rows to append to the paid ledger: the claims this run paid that it did not also reverse
    newly_paid: pl.DataFrame
    # REVERSAL_SCHEMA: each paid claim (of an earlier run or this one) that an accepted replacement or
    # void of this run reversed, in adjudication order: remove it from the paid ledger
    reversals: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REVERSAL_SCHEMA))


@dataclass(frozen=True)
class Checked:
    """A queue after the static record checks (typed columns, validity, held claim ids, received
    dates), in order. Whether a replacement or void is accepted, and so whether it holds its claim
    id, is only known after the walk: `new_holders` takes the outcomes.
    """

    claims: pl.DataFrame
    held_pks: pl.Series  # claim_pks that held their claim id before this run

    def new_holders(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """claim_id (trimmed), claim_pk of the claims not rejected that hold their id from now on
        (a re-queued claim holds its id already). `outcomes`: this queue's, in queue order."""
        return (
            self.claims.select("claim_id", "claim_pk")
            .filter((outcomes.get_column("status") != R.REJECTED) & ~pl.col("claim_pk").is_in(self.held_pks.implode()))
        )


def adjudicate(
    queue: pl.DataFrame,
    reference: ReferenceFrames,
    rules: Rules,
    ledger: pl.DataFrame | None = None,
    holders: pl.DataFrame | None = None,
    waivers: pl.DataFrame | None = None,
    received: dt.date | None = None,
) -> Adjudication:
    """Adjudicate `queue` (claim_pk + the raw claim columns, and `received_day` unless `received`
    gives one received date for all (default today), in adjudication order).

    ledger: claims paid in earlier runs and not reversed (LEDGER_SCHEMA) for the clients, months and
    SPAs touched, and the claims the queue's replacements and voids name.
    holders: claim_id -> claim_pk of stored claims not rejected (they hold their claim id).
    waivers: claim_pk, code: edits an operator waived for a claim.
    """
    fields = parse_fields(queue.lazy()).collect(engine=IN_MEMORY)
    if "received_day" not in fields.columns:
        fields = fields.with_columns(received_day=pl.lit(received or dt.date.today(), dtype=pl.Date))
    return decide(check_records(fields, rules, holders), reference, rules, ledger, waivers)


def check_records(fields: pl.DataFrame, rules: Rules, holders: pl.DataFrame | None = None) -> Checked:
    """The record checks of SPEC 4 that need no walk: the first half of `adjudicate`.

    fields: claim_pk + the queue's parsed fields (claims.FIELDS_SCHEMA, from `parse_fields`) and
    `received_day` (Date: the claim's batch's received date), in adjudication order. A run reads
    them as stored at submit; the texts are not parsed again.
    Columns added: order, valid, future, duplicate_id, id_open (an earlier claim of the run with
    this id is a replacement or void: the walk decides who holds it), requeued (holds its id
    already), rejected (surely: INVALID_RECORD, DUPLICATE_CLAIM_ID or FUTURE_SERVICE_DATE).
    """
    holders = holders if holders is not None else _empty({"claim_id": pl.String, "holder_pk": pl.Int64})
    claims = (
        check_fields(fields.lazy(), rules)
        .drop("invalid", "service_date", "start_time", "end_time", "units", "billed_rate", "staff_id", "frequency")
        .with_columns(
            order=pl.int_range(pl.len(), dtype=pl.Int64),
            valid=pl.col("invalid_mask") == 0,
            month=pl.col("service_day").dt.month_start(),
            attendant=pl.col("procedure_code").is_in(sorted(rules.attendant_care_procedures)).fill_null(False),
        )
        .with_columns(future=pl.col("valid") & _decided(R.FUTURE_SERVICE_DATE).fill_null(False))
        .collect(engine=IN_MEMORY)
    )
    claims = claims.hstack(_held_ids(claims, holders)).with_columns(
        rejected=~pl.col("valid") | pl.col("duplicate_id") | pl.col("future")
    )
    return Checked(claims, holders.get_column("holder_pk"))


def crowded(checked: Checked, limit: int) -> pl.Series:
    """claim_pks of the claims (not rejected) that share their client and day with more than `limit`
    claims in all: the edits compare every two claims of a client and day, so such a day costs
    memory and time by its square."""
    day = ["client_prime", "service_day"]
    return (
        checked.claims.lazy().filter(~pl.col("rejected") & ~pl.col("void"))
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
    """The rest of SPEC 4 for claims through `check_records`: the second half of `adjudicate`."""
    ledger = _empty(LEDGER_SCHEMA) if ledger is None else ledger.cast(LEDGER_SCHEMA).select(LEDGER_SCHEMA.keys())
    waivers = waivers if waivers is not None else _empty({"claim_pk": pl.Int64, "code": pl.String})

    claims = _static(checked.claims, reference, rules, waivers)
    ledger_rows = _ledger_rows(ledger, reference, rules)
    pairs = _conflict_pairs(claims, ledger_rows, rules)
    tight = _tight(claims, ledger_rows)
    walked = _walk(claims, ledger_rows, tight, pairs)
    return _outcomes(claims, walked, rules)


# How a run has the edits decided: `decide` itself, or (adjudication.shards) split across workers.
Decider = Callable[[Checked, ReferenceFrames, Rules, pl.DataFrame | None, pl.DataFrame | None], Adjudication]


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


CHECKS = {check.code: check for check in R.ALL_CHECKS}


def _bit(code: str) -> int:
    """A failing (or waived) edit's bit in an edit mask."""
    return 1 << R.EDITS.index(code)


def _decided(code: str) -> pl.Expr:
    """Whether a static check fails, as declared (a waivable edit: unless waived)."""
    check = CHECKS[code]
    failed = check.claim if check.claim is not None else check.pair
    return failed & ~_waived(code) if check.waivable else failed


def _waived(code: str) -> pl.Expr:
    return (pl.col("waived") & _bit(code)) != 0


def _mask(checks) -> pl.Expr:
    """An edit mask: the bits of the failing `checks` (declared expressions, after waivers)."""
    return pl.sum_horizontal(
        [pl.when(_decided(c.code).fill_null(False)).then(_bit(c.code)).otherwise(0) for c in checks]
    ).cast(pl.Int32)


STATIC_EDITS = [check for check in R.EDITS_TABLE if check.claim is not None]
PAIR_EDITS = [check for check in R.EDITS_TABLE if check.pair is not None]


def _static(claims: pl.DataFrame, reference: ReferenceFrames, rules: Rules, waivers: pl.DataFrame) -> pl.DataFrame:
    """The static edits, and what the walk needs: one row per claim, in order.

    candidate: could be paid (not surely rejected, not a void, no static edit fails); an uncertain
    claim (a replacement or void not re-queued, or a claim whose id is open) may still be rejected
    by the walk.
    """
    return claims.hstack(_lookups(claims, reference, waivers)).with_columns(
        spa_period=SPA_PERIOD,
        hours_cap_s=pl.when(pl.col("attendant")).then(pl.col("monthly_hours_s")),
        timely_filing_days=pl.lit(rules.timely_filing_days, dtype=pl.Int64),
    ).with_columns(static_mask=_mask(STATIC_EDITS)).with_columns(
        candidate=~pl.col("rejected") & ~pl.col("void") & (pl.col("static_mask") == 0),
        uncertain=(pl.col("adjustment") & ~pl.col("requeued") & ~pl.col("rejected")) | pl.col("id_open"),
    )


def _held_ids(claims: pl.DataFrame, holders: pl.DataFrame) -> pl.DataFrame:
    """Who holds each valid claim's id before it: duplicate_id, id_open, requeued (aligned with claims).

    Held by a stored claim not rejected: a duplicate unless that is this claim, re-queued. Else by
    the first claim of the run carrying it that is not rejected: one that passes the record checks,
    or a replacement or void that is accepted, which only the walk knows; where such a claim comes
    before another carrying its id, the id is `open` and the walk decides who holds it.

    Ids are compared by hash first; only the claims whose id hash repeats, or is a holder's, need
    the exact check on the text.
    """
    n = claims.height
    ids = claims.select(pl.when(pl.col("valid")).then(pl.col("claim_id"))).to_series()
    hashes = ids.hash()
    maybe_held = hashes.is_in(holders.get_column("claim_id").hash().implode())
    held = claims.filter(maybe_held).select("order", "claim_id").join(holders, on="claim_id")
    holder_pk = _at_orders(n, held, "holder_pk")
    shared = (
        claims.lazy()
        .select("order", "claim_id", "valid", "future", "adjustment")
        .with_columns(holder_pk=holder_pk, repeated=hashes.is_duplicated())
        .filter(pl.col("valid") & pl.col("repeated") & pl.col("holder_pk").is_null())
        .select("order", "claim_id", holds=~pl.col("future") & ~pl.col("adjustment"),
                maybe=~pl.col("future") & pl.col("adjustment"))
        .with_columns(
            held_before=(pl.col("holds").cast(pl.Int32).cum_sum() - pl.col("holds").cast(pl.Int32)).over("claim_id") > 0,
            id_open=(pl.col("maybe") & (pl.col("order") < pl.col("order").max())).any().over("claim_id"),
        )
        .collect(engine=IN_MEMORY)
    )
    in_run = _at_orders(n, shared, "held_before").fill_null(False)
    id_open = _at_orders(n, shared, "id_open").fill_null(False)
    return pl.DataFrame([
        (claims.get_column("valid") & (holder_pk != claims.get_column("claim_pk")).fill_null(in_run & ~id_open))
        .alias("duplicate_id"),
        id_open,
        (holder_pk == claims.get_column("claim_pk")).fill_null(False).alias("requeued"),
    ])


def _lookups(claims: pl.DataFrame, reference: ReferenceFrames, waivers: pl.DataFrame) -> pl.DataFrame:
    """Each claim's plan, enrollment, SPA, provider enrollment and waived edits, aligned with
    `claims` (null when none).

    Matched for the claims not rejected on narrow frames; each claim then takes its plan and SPA
    rows by index, rather than joining the matches back onto it.
    """
    keyed = claims.lazy().filter(~pl.col("rejected") & ~pl.col("void")).select("order", "service_day", *SPA_KEY)
    plans = reference.plans.filter(pl.col("status") == "accepted").with_row_index("row")
    # A SPA counts only under an accepted plan.
    spas = reference.spas.filter(
        (pl.col("status") == "accepted") & pl.col("plan_id").is_in(plans.get_column("plan_id").implode())
    ).with_row_index("row")
    dates = ["start_date", "end_date"]
    providers = reference.providers
    if providers is None:  # not given: every provider enrolled throughout
        providers = claims.select("provider_id").unique().with_columns(
            start_date=pl.lit(None, dtype=pl.Date), end_date=pl.lit(None, dtype=pl.Date))
    # Most providers are enrolled throughout: a claim of theirs needs no date comparison.
    throughout = providers.filter(pl.col("start_date").is_null() & pl.col("end_date").is_null())
    windows = providers.filter(pl.col("start_date").is_not_null() | pl.col("end_date").is_not_null()).select(
        "provider_id", pl.col("start_date").fill_null(OPEN_START), pl.col("end_date").fill_null(OPEN_END))
    windowed = pl.col("provider_id").is_in(windows.get_column("provider_id").implode())
    plan_matches, enrollment_matches, spa_matches, provider_matches, waived = pl.collect_all(
        [
            _covering(keyed, plans.lazy().select("row", "plan_id", "client_prime", *dates), ["client_prime"]),
            _covering(keyed, reference.enrollments.lazy().select("client_prime", *dates), ["client_prime"]),
            _covering(keyed, spas.lazy().select("row", "spa_id", "plan_id", *SPA_KEY, *dates), SPA_KEY),
            _covering(keyed.filter(windowed), windows.lazy(), ["provider_id"]),
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
            claims.select(provider_enrolled=pl.when(pl.col("provider_id").is_in(
                throughout.get_column("provider_id").implode())).then(True).otherwise(
                _at_orders(n, _preferred(provider_matches, []).with_columns(provider_enrolled=True),
                           "provider_enrolled"))),
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
    return keyed.join(table, on=on).filter(
        pl.col("service_day").is_between(pl.col("start_date"), pl.col("end_date"))
    ).sort("order")


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
PAID_COLUMNS = ("order", "claim_pk", "claim_id", "client_prime", "service_day", "month", "provider_id", "procedure_code",
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
    """Every (claim not rejected, earlier payable claim) pair of one client and day that collides, with
    the bits of the pair edits it fails (`pair_mask`, after waivers: adjudication.reasons).

    Payable: a ledger claim or a candidate of this run. Voids take part in no pair. The pairs are
    found on narrow frames (most claims share their client and day with no other claim of the run),
    then both sides' columns are taken by index.
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
    rows = claims.lazy().filter(~pl.col("rejected") & ~pl.col("void")).select("order", "candidate", *day)
    # Claims sharing their client and day with another claim of the run (found by hash: a collision
    # only lets a few more claims through to the exact join).
    shared = rows.filter(pl.struct(day).hash().is_duplicated())
    run_pairs, ledger_pairs = pl.collect_all(
        [
            shared.join(shared.filter("candidate").select(*day, p_order="order"), on=day)
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
    return (
        candidates.lazy()
        .join(allowed.lazy(), on=["procedure_code", "modifier", "p_procedure_code", "p_modifier"], how="left")
        .with_columns(pair_mask=_mask(PAIR_EDITS))
        .filter(pl.col("pair_mask") != 0)
        .select("order", "p_order", "ledger_row", "p_claim_id", "pair_mask")
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
    rows = claims.lazy().filter(~pl.col("rejected") & ~pl.col("void"))
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


# Reason keys: one small integer per combination of reasons. Failing fields of an invalid record
# (negative: -mask), a record check that fails, an accepted void (no reasons), or the failing edits
# (a mask, 0 = paid). Lists are looked up, not built per row.
DUPLICATE_ID_KEY = -(1 << 20)
FUTURE_KEY = DUPLICATE_ID_KEY - 1
INVALID_ADJUSTMENT_KEY = DUPLICATE_ID_KEY - 2
VOID_KEY = DUPLICATE_ID_KEY - 3


@dataclass(frozen=True)
class Walked:
    """The walk's verdicts on the claims it decided (a row per claim, in order), and its reversals."""

    verdicts: pl.DataFrame  # order, reason_key, accepted (a replacement or void), void_spa_id
    conflicts: pl.DataFrame  # order, conflicts_with: the paid claims each claim collides with, in paid order
    reversals: pl.DataFrame  # REVERSAL_SCHEMA


WALK_VERDICTS = {"order": pl.Int64, "reason_key": pl.Int32, "accepted": pl.Boolean, "void_spa_id": pl.String}
WALK_CONFLICTS = {"order": pl.Int64, "conflicts_with": pl.List(pl.String)}


def _walk(claims: pl.DataFrame, ledger_rows: pl.DataFrame, tight: pl.DataFrame, pairs: pl.DataFrame) -> Walked:
    """The one place that decides what depends on the claims paid before a claim: held claim ids
    where a replacement or void carries one first, INVALID_ADJUSTMENT and the reversals, the cap
    edits and the collisions. Claims are taken one at a time, in adjudication order (the sequential
    definition), but only the claims where order can matter (module docstring).
    """
    uncertain = claims.filter("uncertain")
    named_ids = uncertain.filter("adjustment").get_column("original_claim_id").drop_nulls().unique()
    named = claims.filter(pl.col("candidate") & pl.col("claim_id").is_in(named_ids.implode())).get_column("order")
    walked = (
        pl.concat([tight.get_column("order"), pairs.get_column("order"),
                   pairs.get_column("p_order").filter(pairs.get_column("p_order") >= 0),
                   uncertain.get_column("order"), named])
        .unique()
        .sort()
    )
    if walked.len() == 0:
        return Walked(_empty(WALK_VERDICTS), _empty(WALK_CONFLICTS), _empty(REVERSAL_SCHEMA))
    rows = (
        claims.select(
            "order", "claim_pk", "claim_id", "original_claim_id", "client_prime", "provider_id", *SPA_GROUP, "month",
            "units_s", "hours_cap_s", "candidate", "static_mask", "future", "id_open", "adjustment", "void",
            "requeued", hours_waived=_waived(R.MONTHLY_HOURS_EXCEEDED),
        )[walked]
        .join(tight, on="order", how="left", maintain_order="left")
        .with_columns(pl.col("tight_spa", "tight_month").fill_null(False))
        .with_columns(pl.col("spa_period", "month").to_physical())  # plain ints are quicker in Python
    )
    spa_caps = rows.filter("tight_spa").unique(SPA_GROUP).select(*SPA_GROUP, "spa_used", "spa_cap")
    spa_used = {(spa_id, period): used for spa_id, period, used, _cap in spa_caps.iter_rows()}
    spa_cap = {(spa_id, period): cap for spa_id, period, _used, cap in spa_caps.iter_rows()}
    month_caps = rows.filter("tight_month").unique(MONTH_GROUP).select(*MONTH_GROUP, "month_used")
    month_used = {(client, month): used for client, month, used in month_caps.iter_rows()}

    # A claim paid before that an adjustment may name, by claim id: the payer key (ledger rows
    # negative), claim_pk, client, provider, spa_id, its units and the tight caps they count on.
    paid_by_id: dict[str, tuple] = {}
    named_ledger = (
        ledger_rows.with_row_index("ledger_row")
        .filter(pl.col("claim_id").is_in(named_ids.implode()))
        .with_columns(pl.col("spa_period", "month").to_physical())
    )
    for row, pk, claim_id, client, provider, spa_id, period, month, units, attendant in named_ledger.select(
        "ledger_row", "claim_pk", "claim_id", "client_prime", "provider_id", *SPA_GROUP, "month", "units_s",
        "attendant",
    ).iter_rows():
        spa_key, month_key = (spa_id, period), (client, month)
        paid_by_id[claim_id] = (_ledger_key(row), pk, client, provider, spa_id, units,
                                spa_key if spa_key in spa_used else None,
                                month_key if attendant and month_key in month_used else None)
    named_set = set(named_ids.to_list())

    partners: dict[int, list[tuple[int, int, str]]] = {}
    ordered = pairs.sort("order", "p_order", "ledger_row")  # conflicts in the order they were paid
    for order, p_order, ledger_row, p_claim_id, pair_mask in ordered.iter_rows():
        key = p_order if p_order != LEDGER_ORDER else _ledger_key(ledger_row)
        partners.setdefault(order, []).append((key, pair_mask, p_claim_id))

    units_bit, hours_bit = _bit(R.UNITS_EXCEED_SPA), _bit(R.MONTHLY_HOURS_EXCEEDED)
    held: set[str] = set()  # ids taken in this run by a claim of an open id
    reversed_keys: set[int] = set()
    paid_run: set[int] = set()
    keys: list[int] = []
    conflict_orders: list[int] = []  # (claim, claim it collides with), flat: lists per claim cost far more
    conflict_ids: list[str] = []
    accepted: list[bool] = []
    void_spa: list[str | None] = []
    reversals: list[tuple[int, int]] = []
    columns = ("order", "claim_pk", "claim_id", "original_claim_id", "client_prime", "provider_id", "spa_id",
               "spa_period", "month", "units_s", "hours_cap_s", "candidate", "static_mask", "future", "id_open",
               "adjustment", "void", "requeued", "hours_waived", "tight_spa", "tight_month")
    for (order, pk, claim_id, original_id, client, provider, spa_id, period, month, units, hours_cap, candidate,
         mask, future, id_open, adjustment, void, requeued, hours_waived, hot_s, hot_m) in zip(
            *(rows.get_column(c).to_list() for c in columns)):
        accepted.append(False)
        void_spa.append(None)
        if id_open and claim_id in held:
            keys.append(DUPLICATE_ID_KEY)
            continue
        if future:
            keys.append(FUTURE_KEY)
            continue
        if adjustment and not requeued:  # a re-queued replacement reversed its original already
            original = paid_by_id.get(original_id)
            if (original is None or original[0] in reversed_keys or original[2] != client
                    or original[3] != provider):
                keys.append(INVALID_ADJUSTMENT_KEY)
                continue
            o_key, o_pk, _client, _provider, o_spa, o_units, o_spa_key, o_month_key = original
            reversed_keys.add(o_key)
            reversals.append((o_pk, pk))
            if o_spa_key is not None:
                spa_used[o_spa_key] -= o_units
            if o_month_key is not None:
                month_used[o_month_key] -= o_units
            accepted[-1] = True
            if void:
                if id_open:
                    held.add(claim_id)
                void_spa[-1] = o_spa
                keys.append(VOID_KEY)
                continue
        if id_open:
            held.add(claim_id)
        spa_key, month_key = (spa_id, period), (client, month)
        if hot_s and spa_used[spa_key] + units > spa_cap[spa_key]:
            mask |= units_bit
        if hot_m and not hours_waived and month_used[month_key] + units > hours_cap:
            mask |= hours_bit
        for key, pair_mask, p_claim_id in partners.get(order, ()):
            if key not in reversed_keys and (key < 0 or key in paid_run):
                mask |= pair_mask
                conflict_orders.append(order)
                conflict_ids.append(p_claim_id)
        keys.append(mask)
        if candidate and mask == 0:
            paid_run.add(order)
            if hot_s:
                spa_used[spa_key] += units
            if hot_m:
                month_used[month_key] += units
            if claim_id in named_set:
                paid_by_id[claim_id] = (order, pk, client, provider, spa_id, units, spa_key if hot_s else None,
                                        month_key if hot_m else None)
    verdicts = pl.DataFrame(
        {"order": walked, "reason_key": keys, "accepted": accepted, "void_spa_id": void_spa}, schema=WALK_VERDICTS)
    conflicts = (
        pl.DataFrame({"order": conflict_orders, "p_claim_id": conflict_ids},
                     schema={"order": pl.Int64, "p_claim_id": pl.String})
        .group_by("order", maintain_order=True)
        .agg(conflicts_with="p_claim_id")
    )
    return Walked(verdicts, conflicts, pl.DataFrame(reversals, schema=REVERSAL_SCHEMA, orient="row"))


def _ledger_key(ledger_row: int) -> int:
    """A ledger claim's payer key in the walk (run claims are keyed by their order, from 0)."""
    return -2 - ledger_row


def _outcomes(claims: pl.DataFrame, walked: Walked, rules: Rules) -> Adjudication:
    """Every claim's outcome: its static verdict, or the walk's where the walk decided it."""
    n = claims.height
    static_key = (
        pl.when(~pl.col("valid")).then(-pl.col("invalid_mask"))
        .when(pl.col("duplicate_id")).then(pl.lit(DUPLICATE_ID_KEY))
        .when(pl.col("future")).then(pl.lit(FUTURE_KEY))
        .otherwise(pl.col("static_mask"))
    ).cast(pl.Int32)
    reason_lists = REASON_LISTS.with_columns(
        carc=pl.col("reasons").list.eval(
            pl.element().str.split(":").list.first().replace_strict(rules.carc, return_dtype=pl.String)
        )
    )
    verdicts = walked.verdicts
    frame = (
        claims.lazy()
        .select(*LEDGER_SCHEMA, "original_claim_id", "adjustment", "requeued", "spa_rate_s", "rate_s",
                static_key=static_key)
        .with_columns(*_aligned(n, verdicts), *_aligned(n, walked.conflicts))
        .with_columns(reason_key=pl.coalesce("reason_key", "static_key"))
        .join(reason_lists.lazy(), on="reason_key", how="left", maintain_order="left")
        .with_columns(
            status=pl.when(pl.col("reason_key") == VOID_KEY)
            .then(pl.lit(R.VOID))
            .when(pl.col("reason_key") < 0)
            .then(pl.lit(R.REJECTED))
            .when(pl.col("reason_key") == 0)
            .then(pl.lit(R.PAID))
            .otherwise(pl.lit(R.SUSPENDED)),
            rate_s=pl.min_horizontal("spa_rate_s", "rate_s"),
        )
        .with_columns(
            paid=pl.col("status") == R.PAID,
            spa_id=pl.when(pl.col("status") == R.VOID).then("void_spa_id")
            .when(pl.col("status") != R.REJECTED).then("spa_id"),
            adjusts=pl.when(
                pl.col("accepted").fill_null(False)
                | (pl.col("adjustment") & pl.col("requeued") & (pl.col("status") != R.REJECTED))
            ).then("original_claim_id"),
            conflicts_with=pl.col("conflicts_with").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .with_columns(
            paid_units_s=pl.when("paid").then(pl.col("units_s")),
            paid_cents=pl.when("paid").then((pl.col("units_s") * pl.col("rate_s") + 500_000) // 1_000_000),
        )
        .collect(engine=IN_MEMORY)
    )
    outcomes = frame.select(OUTCOME_SCHEMA.keys()).cast(OUTCOME_SCHEMA)
    reversed_pks = walked.reversals.get_column("claim_pk").implode()
    newly_paid = (
        frame.filter(pl.col("paid") & ~pl.col("claim_pk").is_in(reversed_pks))
        .select(LEDGER_SCHEMA.keys())
        .cast(LEDGER_SCHEMA)
    )
    return Adjudication(outcomes=outcomes, newly_paid=newly_paid, reversals=walked.reversals)


def _reason_lists() -> pl.DataFrame:
    """Every reason key with its reasons: a failing-fields mask negated (its INVALID_RECORD reasons),
    the four fixed keys, and an edits mask (its edits' codes)."""
    edits = reasons_by_mask(R.EDITS)
    fixed = {DUPLICATE_ID_KEY: [R.DUPLICATE_CLAIM_ID], FUTURE_KEY: [R.FUTURE_SERVICE_DATE],
             INVALID_ADJUSTMENT_KEY: [R.INVALID_ADJUSTMENT], VOID_KEY: []}
    keys = [-mask for mask in range(1, len(REASONS_BY_MASK))] + list(fixed) + list(range(len(edits)))
    reasons = pl.concat([REASONS_BY_MASK.slice(1), pl.Series(list(fixed.values()), dtype=pl.List(pl.String)), edits])
    return pl.DataFrame({"reason_key": keys, "reasons": reasons},
                        schema={"reason_key": pl.Int32, "reasons": pl.List(pl.String)})


# Every reason key with its reasons, built once (the CARCs come from the rules of a run).
REASON_LISTS = _reason_lists()
assert SCALE == 10_000  # paid_cents above divides a x10^8 product by 10^6
