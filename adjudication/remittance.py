"""Remittance advice, built from what a run decided: an X12 835 (005010X221A1), CSV and HTML.

Pure: frames in, text out. `decisions` is one row per claim the run decided and `reversals` one row
per original a replacement or void reversed in the run (worker.store.repository.DECISION_SCHEMA and
REVERSAL_SCHEMA). Every claim line becomes text through polars expressions and is joined per
provider, so a million-claim run is never turned into Python objects.

The 835 per provider: ISA/GS/ST, BPR with the amount paid (the net, paid minus reversed, less the
provider-level adjustments of balance_forward: a negative net pays 0 and carries the balance
forward in a PLB FB adjustment, a later positive net recovers it; BPR02 = sum of CLP04 - sum of
PLB04), TRN
with the trace number `RUN-PROVIDER`, the payer (N1*PR with N3/N4/PER*BL) and payee (N1*PE, REF*PQ),
then LX and one CLP per reversal (CLP02 22, negative amounts) and per paid claim (CLP02 1), each with
NM1*QC (the client), SVC (HC:procedure:modifier), DTM*472 and, where the billed amount exceeds the
paid one, CAS*CO*45 with the difference. Suspended and rejected claims are not in the 835.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import polars as pl

from adjudication.decimals import SCALE

PAID, SUSPENDED, REJECTED, VOID = "paid", "suspended", "rejected", "void"


@dataclass(frozen=True)
class Payer:
    """Who pays, as the 835 names it: built from the settings (worker.settings, the defaults)."""

    id: str  # ISA06 / GS02 sender
    name: str  # N1*PR
    tin: str  # TRN03 is "1" followed by this (the payer's federal tax id)
    address: str  # N3
    city: str  # N4
    state: str
    postal_code: str
    contact_name: str  # PER*BL
    contact_phone: str
    receiver_id: str  # ISA08 / GS03; empty: the provider's id
    payee_qualifier: str  # N1*PE N103 for the provider's id (FI, XV or XX)
    usage: str  # ISA15: P production, T test


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    finished_at: dt.datetime  # the 835's dates and times: the same run always gives the same file


# --- amounts ---------------------------------------------------------------------------------

def scaled_text(value: pl.Expr, places: int) -> pl.Expr:
    """Shortest exact decimal text of an integer scaled by 10^places, signed ('-70.1', '4', '0')."""
    factor = 10 ** places
    magnitude = value.abs()
    fraction = (magnitude % factor).replace_strict(_fractions(places), return_dtype=pl.String)
    text = (magnitude // factor).cast(pl.String) + fraction
    return pl.when(value < 0).then("-" + text).otherwise(text)


@functools.cache
def _fractions(places: int) -> dict[int, str]:
    """Every fraction of 10^places as its shortest text ('', '.5', '.25'): a lookup is cheaper than string work."""
    return {i: "" if i == 0 else "." + f"{i:0{places}d}".rstrip("0") for i in range(10 ** places)}


def money_text(cents: pl.Expr) -> pl.Expr:
    """Cents as '70.12' (always two places, signed): for people (CSV, HTML)."""
    magnitude = cents.abs()
    text = (magnitude // 100).cast(pl.String) + (magnitude % 100).replace_strict(_CENTS, return_dtype=pl.String)
    return pl.when(cents < 0).then("-" + text).otherwise(text)


_CENTS = {i: f".{i:02d}" for i in range(100)}


def money(cents: int) -> str:
    """money_text for one amount."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def units_text(units_s: pl.Expr) -> pl.Expr:
    return scaled_text(units_s, 4)


def billed_cents(units_s: pl.Expr, rate_s: pl.Expr) -> pl.Expr:
    """units x billed rate, half-up to cents (both x10^4, non-negative)."""
    assert SCALE == 10_000
    return (units_s * rate_s + 500_000) // 1_000_000


def claim_lines(decisions: pl.LazyFrame, reversals: pl.LazyFrame) -> pl.LazyFrame:
    """The lines of a remittance, one per reversal, payment, pending and rejected claim, in that
    order (and adjudication order within), signed: a reversal's amounts are negative.

    Columns: provider_id, section (reversal|payment|pending|rejected), order, claim_id, adjusts
    (the original a payment replaces, or the claim that reversed a reversal's original), batch_id,
    line, client_prime, procedure_code, modifier, service_date, units_s, billed_cents, paid_cents,
    adjustment_cents (CO-45: billed minus paid), reasons, carc.
    """
    decided = decisions.with_row_index("order").with_columns(order=pl.col("order").cast(pl.Int64))
    paid_billed = pl.coalesce(billed_cents(pl.col("units_s"), pl.col("billed_rate_s")), pl.col("paid_cents"))
    payments = decided.filter(pl.col("status") == PAID).select(
        "provider_id", section=pl.lit("payment"), order="order", claim_id="claim_id", adjusts="adjusts",
        batch_id="batch_id", line="line", client_prime="client_prime", procedure_code="procedure_code",
        modifier="modifier", service_date="service_date", units_s="paid_units_s", billed_cents=paid_billed,
        paid_cents="paid_cents", reasons=pl.lit([], pl.List(pl.String)), carc=pl.lit([], pl.List(pl.String)))
    reversed_billed = pl.coalesce(billed_cents(pl.col("paid_units_s"), pl.col("billed_rate_s")), pl.col("paid_cents"))
    taken_back = reversals.with_row_index("order").select(
        "provider_id", section=pl.lit("reversal"), order=pl.col("order").cast(pl.Int64), claim_id="claim_id",
        adjusts="reversed_by", batch_id=pl.lit(None, pl.String), line=pl.lit(None, pl.Int64),
        client_prime="client_prime", procedure_code="procedure_code", modifier="modifier",
        service_date="service_date", units_s=-pl.col("paid_units_s"), billed_cents=-reversed_billed,
        paid_cents=-pl.col("paid_cents"), reasons=pl.lit([], pl.List(pl.String)),
        carc=pl.lit([], pl.List(pl.String)))
    not_paid = [
        decided.filter(pl.col("status") == status).select(
            "provider_id", section=pl.lit(section), order="order", claim_id="claim_id", adjusts="adjusts",
            batch_id="batch_id", line="line", client_prime="client_prime", procedure_code="procedure_code",
            modifier="modifier", service_date="service_date", units_s="units_s",
            billed_cents=billed_cents(pl.col("units_s"), pl.col("billed_rate_s")),
            paid_cents=pl.lit(0, pl.Int64), reasons="reasons", carc="carc")
        for status, section in ((SUSPENDED, "pending"), (REJECTED, "rejected"))
    ]
    # In section order, each in adjudication order; not sorted by provider (a million strings):
    # what is made per provider groups them keeping that order.
    return (pl.concat([taken_back, payments, *not_paid], how="vertical_relaxed")
            .filter(pl.col("provider_id").is_not_null())  # a line without a provider is only in its batch's ack
            .with_columns(adjustment_cents=pl.when(pl.col("section").is_in(["payment", "reversal"]))
                          .then(pl.col("billed_cents") - pl.col("paid_cents"))))


def provider_totals(lines: pl.LazyFrame) -> pl.LazyFrame:
    """Per provider: paid, reversed (positive), net, and the counts of each section."""
    section = pl.col("section")
    return lines.group_by("provider_id").agg(
        paid_cents=pl.col("paid_cents").filter(section == "payment").sum(),
        reversed_cents=-pl.col("paid_cents").filter(section == "reversal").sum(),
        payments=(section == "payment").sum().cast(pl.Int64),
        reversals=(section == "reversal").sum().cast(pl.Int64),
        pending=(section == "pending").sum().cast(pl.Int64),
        rejected=(section == "rejected").sum().cast(pl.Int64),
    ).with_columns(net_cents=pl.col("paid_cents") - pl.col("reversed_cents")).sort("provider_id")


# --- balances carried forward ------------------------------------------------------------------

ADJUSTMENT_SCHEMA = {"provider_id": pl.String, "balance_run_id": pl.Int64, "plb_cents": pl.Int64}
# What balance_forward reads of the runs before: each provider's net in each run.
NET_SCHEMA = {"run_id": pl.Int64, "provider_id": pl.String, "net_cents": pl.Int64}


def balance_forward(history: pl.DataFrame, run_id: int, nets: pl.DataFrame) -> pl.DataFrame:
    """The provider-level adjustments (PLB FB) of run `run_id`, ADJUSTMENT_SCHEMA, sorted by
    provider and balance_run_id: the run whose negative balance each one concerns.

    history: the provider's nets of the runs before (run_id, provider_id, net_cents; any provider
    that ever had a negative net, all its runs); nets: this run's (provider_id, net_cents). A
    negative net pays nothing and carries the balance forward (plb_cents = the net, negative,
    naming this run). A positive net recovers the balances still outstanding, oldest first
    (plb_cents positive, naming the run each came from), up to the net: what it cannot recover
    carries on. So the amount paid (BPR02) is net - sum(plb_cents), never below 0, and the same
    history always gives the same adjustments."""
    owed: dict[str, list[list[int]]] = {}  # provider -> [[run, cents still owed], ...], oldest first

    def settle(provider: str, run: int, net: int) -> list[tuple[str, int, int]]:
        queue = owed.setdefault(provider, [])
        if net < 0:
            queue.append([run, -net])
            return [(provider, run, net)]
        recovered = []
        while net > 0 and queue:
            take = min(net, queue[0][1])
            recovered.append((provider, queue[0][0], take))
            net -= take
            queue[0][1] -= take
            if queue[0][1] == 0:
                queue.pop(0)
        return recovered

    for run, provider, net in history.sort("provider_id", "run_id").select("run_id", "provider_id", "net_cents").iter_rows():
        settle(provider, run, net)
    concerned = nets.filter((pl.col("net_cents") < 0) | pl.col("provider_id").is_in(
        [p for p, queue in owed.items() if queue]))
    rows = [row for provider, net in concerned.select("provider_id", "net_cents").iter_rows()
            for row in settle(provider, run_id, net)]
    return pl.DataFrame(rows, schema=ADJUSTMENT_SCHEMA, orient="row").sort("provider_id", "balance_run_id")


# What a provider is sent for a run (the 835's BPR02): its net less the sum of its balance-forward
# adjustments (plb_cents, adjustment_totals); never below 0 (balance_forward).
AMOUNT_SENT = pl.col("net_cents") - pl.col("plb_cents")


def adjustment_totals(adjustments: pl.DataFrame) -> pl.DataFrame:
    """Per provider: plb_cents (the sum), and forwarded and recovered (positive amounts)."""
    plb = pl.col("plb_cents")
    return adjustments.group_by("provider_id").agg(
        plb_cents=plb.sum(), forwarded_cents=-plb.filter(plb < 0).sum(), recovered_cents=plb.filter(plb > 0).sum())


# --- X12 835 ---------------------------------------------------------------------------------

def x12_safe(text: pl.Expr) -> pl.Expr:
    """A value as an X12 element: the delimiters (* ~ : ^) and anything outside printable ASCII
    become '?', so no posted text can end a segment or an element early; spaces around are dropped."""
    return text.fill_null("").str.replace_all(r"[*~:^]|[^\x20-\x7E]", "?").str.strip_chars(" ")


def cat(*parts: str | pl.Expr) -> pl.Expr:
    """Concatenated text; a str part is literal text (not a column name)."""
    return pl.concat_str([pl.lit(p, pl.String) if isinstance(p, str) else p for p in parts])


def _claim_segments(lines: pl.LazyFrame) -> pl.LazyFrame:
    """Adds the 2100/2110 loops of each claim line as text (segment_text), and how many segments
    that is (segments). Each value is made text once, then put together."""
    adjusted = pl.col("adjustment_cents") != 0
    modifier = x12_safe(pl.col("modifier"))
    texts = lines.with_columns(
        claim_text=x12_safe(pl.col("claim_id")), client_text=x12_safe(pl.col("client_prime")),
        procedure_text=cat("HC:", x12_safe(pl.col("procedure_code")),
                           pl.when(modifier != "").then(":" + modifier).otherwise(pl.lit(""))),
        billed_text=scaled_text(pl.col("billed_cents"), 2), paid_text=scaled_text(pl.col("paid_cents"), 2),
        units_text=units_text(pl.col("units_s")),
        day_text=(pl.col("service_date").dt.year() * 10_000 + pl.col("service_date").dt.month().cast(pl.Int32) * 100
                  + pl.col("service_date").dt.day().cast(pl.Int32)).cast(pl.String),
    )
    return texts.with_columns(segment_text=cat(
        "CLP*", pl.col("claim_text"), "*", pl.when(pl.col("section") == "reversal").then(pl.lit("22"))
        .otherwise(pl.lit("1")), "*", pl.col("billed_text"), "*", pl.col("paid_text"), "**MC*", pl.col("claim_text"),
        "~\nNM1*QC*1******MI*", pl.col("client_text"),
        "~\nSVC*", pl.col("procedure_text"), "*", pl.col("billed_text"), "*", pl.col("paid_text"), "**",
        pl.col("units_text"), "~\nDTM*472*", pl.col("day_text"), "~\n",
        pl.when(adjusted).then("CAS*CO*45*" + scaled_text(pl.col("adjustment_cents"), 2) + "~\n").otherwise(pl.lit("")),
    ), segments=pl.lit(4, pl.Int64) + adjusted.cast(pl.Int64))


# Values posted as claim-file text that an 835 element holds only so long (005010X221A1): intake
# takes ids of up to 64 characters, which most 835 elements hold, but not these.
X12_CLAIM_LIMITS = (("claim_id", 38, "CLP01"), ("procedure_code", 48, "SVC01-2"), ("modifier", 2, "SVC01-3"))
X12_REFERENCE_LIMIT = 50  # TRN02 and PLB03-2: RUN-PROVIDER
X12_RECEIVER_LIMIT = 15  # ISA08 and GS03, the provider's id when no receiver id is configured
X12_ID_MINIMUM = 2  # N104 (and GS03): a provider id of one character is too short
X12_NAME_LIMIT = 60  # N102, the payee's name: cut to it (a name identifies nothing the 835 reconciles)


def x12_unfit(lines: pl.LazyFrame, payer: Payer, run_id: int) -> pl.DataFrame:
    """provider_id, element: the providers whose 835 cannot be made (the first element a value of
    theirs would overflow); their CSV and HTML remittances carry every claim."""
    money = lines.filter(pl.col("section").is_in(["reversal", "payment"]))
    provider = x12_safe(pl.col("provider_id")).str.len_chars()
    checks = [(x12_safe(pl.col(column)).str.len_chars() > limit, f"{element} ({column} over {limit} characters)")
              for column, limit, element in X12_CLAIM_LIMITS]
    # An id with an X12 delimiter or a character outside printable ASCII would reach CLP01 or N104
    # altered ('?' in its place): the provider could not match it to what it billed.
    for column, element in (("claim_id", "CLP01"), ("provider_id", "N104")):
        value = pl.col(column).fill_null("")
        checks.append((value != x12_safe(value), f"{element} ({column} holds a character an 835 cannot carry: "
                                                 "* ~ : ^ or one outside printable ASCII)"))
    checks.append((provider + len(f"{run_id}-") > X12_REFERENCE_LIMIT,
                   f"TRN02 (run and provider_id over {X12_REFERENCE_LIMIT} characters)"))
    checks.append((provider < X12_ID_MINIMUM, f"N104 (provider_id under {X12_ID_MINIMUM} characters)"))
    if not payer.receiver_id:
        checks.append((provider > X12_RECEIVER_LIMIT, f"ISA08 (provider_id over {X12_RECEIVER_LIMIT} characters, "
                                                      "and no ADJUDICATION_REMIT_RECEIVER_ID)"))
    element = pl.lit(None, pl.String)
    for broken, name in reversed(checks):
        element = pl.when(broken).then(pl.lit(name)).otherwise(element)
    return (money.select("provider_id", element=element).drop_nulls("element")
            .unique("provider_id", keep="first", maintain_order=True).collect())


def x12_835(lines: pl.LazyFrame, names: pl.DataFrame, payer: Payer, run: RunInfo,
            adjustments: pl.DataFrame) -> pl.DataFrame:
    """One 835 per provider with at least one payment or reversal: provider_id, text.
    adjustments: the run's balance_forward, one PLB FB each."""
    money = lines.filter(pl.col("section").is_in(["reversal", "payment"]))
    bodies = _claim_segments(money).group_by("provider_id", maintain_order=True).agg(
        body=pl.col("segment_text").str.join(""), segments=pl.col("segments").sum(),
        net_cents=pl.col("paid_cents").sum())
    when = run.finished_at.astimezone(dt.timezone.utc)
    provider = x12_safe(pl.col("provider_id"))
    # A PLB holds up to six adjustments (PLB03-PLB14): FB (forwarding balance) with the trace
    # number of the run whose balance it is, and the amount.
    pairs = adjustments.lazy().with_columns(
        plb_segment=pl.int_range(pl.len()).over("provider_id") // 6,
        pair=cat(pl.lit("FB:"), pl.col("balance_run_id").cast(pl.String), pl.lit("-"), provider, pl.lit("*"),
                 scaled_text(pl.col("plb_cents"), 2)))
    plbs = pairs.group_by("provider_id", "plb_segment", maintain_order=True).agg(
        text=cat(pl.lit("PLB*"), provider.first(), pl.lit(f"*{when.year}1231*"), pl.col("pair").str.join("*"),
                 pl.lit("~\n")), plb_cents=pl.col("plb_cents").sum()
    ).group_by("provider_id", maintain_order=True).agg(
        plb=pl.col("text").str.join(""), plb_segments=pl.len().cast(pl.Int64), plb_cents=pl.col("plb_cents").sum())
    bodies = bodies.sort("provider_id").with_row_index("index").join(
        names.lazy(), on="provider_id", how="left").join(plbs, on="provider_id", how="left").with_columns(
        pl.col("plb").fill_null(""), pl.col("plb_segments", "plb_cents").fill_null(0)).sort("provider_id")
    day, short_day, clock = when.strftime("%Y%m%d"), when.strftime("%y%m%d"), when.strftime("%H%M")
    # Control numbers: run id and the provider's place among the run's providers, 9 digits.
    control = (pl.lit(run.run_id % 100_000 * 10_000, pl.Int64) + (pl.col("index").cast(pl.Int64) + 1) % 10_000)
    control9 = control.cast(pl.String).str.pad_start(9, "0")
    receiver = pl.lit(_element(payer.receiver_id)) if payer.receiver_id else provider
    pays = AMOUNT_SENT
    bpr = pl.when(pays > 0).then(cat("BPR*I*", scaled_text(pays, 2), pl.lit(f"*C*CHK************{day}~\n"))
                                 ).otherwise(pl.lit(f"BPR*H*0*C*NON************{day}~\n"))
    sender = _element(payer.id)
    header = cat(
        pl.lit(f"ISA*00*          *00*          *ZZ*{sender[:15]:<15}*ZZ*"), receiver.str.slice(0, 15).str.pad_end(15),
        pl.lit(f"*{short_day}*{clock}*^*00501*"), control9, pl.lit(f"*0*{payer.usage}*:~\n"),
        pl.lit(f"GS*HP*{sender}*"), receiver, pl.lit(f"*{day}*{clock}*"), control.cast(pl.String),
        pl.lit("*X*005010X221A1~\nST*835*0001~\n"),
        bpr,
        pl.lit(f"TRN*1*{run.run_id}-"), provider, pl.lit(f"*1{_element(payer.tin)}~\n"),
        pl.lit(f"DTM*405*{day}~\n"),
        pl.lit(f"N1*PR*{_element(payer.name)}~\nN3*{_element(payer.address)}~\n"
               f"N4*{_element(payer.city)}*{_element(payer.state)}*{_element(payer.postal_code)}~\n"
               f"PER*BL*{_element(payer.contact_name)}*TE*{_element(payer.contact_phone)}~\n"),
        pl.lit("N1*PE*"), x12_safe(pl.coalesce(pl.col("name"), pl.col("provider_id"))
                                   .str.slice(0, X12_NAME_LIMIT)),
        pl.lit(f"*{_element(payer.payee_qualifier)}*"), provider, pl.lit("~\n"),
        pl.lit("REF*PQ*"), provider, pl.lit("~\nLX*1~\n"),
    )
    # ST, BPR, TRN, DTM, N1, N3, N4, PER, N1, REF, LX (11), the claims, the PLBs and SE.
    segments = pl.lit(12, pl.Int64) + pl.col("segments") + pl.col("plb_segments")
    trailer = cat(pl.lit("SE*"), segments.cast(pl.String), pl.lit("*0001~\nGE*1*"), control.cast(pl.String),
                            pl.lit("~\nIEA*1*"), control9, pl.lit("~\n"))
    return bodies.select("provider_id", text=cat(header, pl.col("body"), pl.col("plb"), trailer)).collect()


def _element(value: str) -> str:
    """A configured value as an X12 element (the same rule as x12_safe)."""
    return pl.select(x12_safe(pl.lit(value, pl.String))).item()


# --- readable remittances: CSV and HTML ---------------------------------------------------------

CSV_COLUMNS = ("provider_id", "section", "claim_id", "adjusts", "batch_id", "line", "client_prime", "procedure_code",
               "modifier", "service_date", "units", "billed_amount", "paid_amount", "adjustment", "reasons", "carc")


def csv_rows(lines: pl.LazyFrame, totals: pl.LazyFrame, adjustments: pl.DataFrame) -> pl.LazyFrame:
    """Every line in CSV_COLUMNS (all text), then per provider three rows: total_paid,
    total_reversed and net (the amount in paid_amount) and, for a provider with balance
    adjustments, one row each (balance_forward: a negative net carried forward;
    balance_forward_recovered: a balance of an earlier run recovered; `adjusts` names the
    balance's trace number RUN-PROVIDER) and amount_paid (the 835's BPR02). Providers are
    interleaved: a provider's rows, taken in order, are its remittance."""
    body = lines.select(
        "provider_id", "section", "claim_id", "adjusts", "batch_id", pl.col("line").cast(pl.String), "client_prime",
        "procedure_code", "modifier", pl.col("service_date").dt.strftime("%Y-%m-%d"), units=units_text(pl.col("units_s")),
        billed_amount=money_text(pl.col("billed_cents")), paid_amount=money_text(pl.col("paid_cents")),
        adjustment=pl.when(pl.col("adjustment_cents") != 0).then(
            pl.lit("CO-45 ") + money_text(pl.col("adjustment_cents"))),
        reasons=pl.col("reasons").list.join(";"), carc=pl.col("carc").list.join(";"),
    )
    sums = [totals.select("provider_id", section=pl.lit(name), paid_amount=money_text(pl.col(column)))
            for name, column in (("total_paid", "paid_cents"), ("total_reversed", "reversed_cents"),
                                 ("net", "net_cents"))]
    plb = pl.col("plb_cents")
    balances = adjustments.lazy().select(
        "provider_id", section=pl.when(plb < 0).then(pl.lit("balance_forward")).otherwise(
            pl.lit("balance_forward_recovered")),
        adjusts=cat(pl.col("balance_run_id").cast(pl.String), "-", pl.col("provider_id")), paid_amount=money_text(-plb))
    paid = adjustment_totals(adjustments).lazy().join(totals, on="provider_id").select(
        "provider_id", section=pl.lit("amount_paid"), paid_amount=money_text(AMOUNT_SENT))
    return pl.concat([body, *sums, balances, paid], how="diagonal_relaxed").select(CSV_COLUMNS)


def html_escape(text: pl.Expr) -> pl.Expr:
    """HTML text of a value, in one pass over it."""
    return text.fill_null("").str.replace_many(["&", "<", ">", '"', "'"], ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"])


def escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# Nothing is fetched: no scripts, no fonts, no images but inline ones, styles only from the page.
OFFLINE_POLICY = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                  "style-src 'unsafe-inline'; img-src data:\">")
STYLE = """<style>
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#1b1f24;max-width:72em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #d0d4da;padding:.25em .6em;text-align:left}th{background:#eef1f5}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.totals td{font-weight:600}.muted{color:#5a6270}
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #d0d4da;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:1.3em}
</style>"""

SECTION_TITLES = {
    "reversal": "Reversals (payments taken back)",
    "payment": "Payments",
    "pending": "Pending (suspended claims)",
    "rejected": "Rejected lines",
}
HTML_COLUMNS = {
    "reversal": ("claim_id", "adjusts", "client_prime", "procedure", "service_date", "units", "billed", "paid",
                 "adjustment"),
    "payment": ("claim_id", "adjusts", "client_prime", "procedure", "service_date", "units", "billed", "paid",
                "adjustment"),
    "pending": ("claim_id", "batch_id", "line", "client_prime", "procedure", "service_date", "units", "reasons",
                "carc"),
    "rejected": ("claim_id", "batch_id", "line", "client_prime", "procedure", "service_date", "reasons", "carc"),
}
HEADINGS = {"adjusts": {"reversal": "reversed by", "payment": "replaces"}, "adjustment": "CO-45 adjustment"}
NUMERIC = {"line", "units", "billed", "paid", "adjustment"}
POSTED = {"claim_id", "adjusts", "client_prime", "procedure"}  # texts from claim files: escaped (the rest are ours)


def html_sections(lines: pl.LazyFrame) -> pl.DataFrame:
    """Per provider and section: the table rows as HTML (provider_id, section, rows, count)."""
    cells = {
        "claim_id": pl.col("claim_id"), "adjusts": pl.col("adjusts"), "batch_id": pl.col("batch_id"),
        "line": pl.col("line").cast(pl.String), "client_prime": pl.col("client_prime"),
        "procedure": cat(pl.col("procedure_code").fill_null(""),
                                   pl.when(pl.col("modifier").fill_null("") != "").then("/" + pl.col("modifier"))
                                   .otherwise(pl.lit(""))),
        "service_date": pl.col("service_date").dt.strftime("%Y-%m-%d"), "units": units_text(pl.col("units_s")),
        "billed": money_text(pl.col("billed_cents")), "paid": money_text(pl.col("paid_cents")),
        "adjustment": pl.when(pl.col("adjustment_cents") != 0).then(money_text(pl.col("adjustment_cents"))),
        "reasons": pl.col("reasons").list.join(", "), "carc": pl.col("carc").list.join(", "),
    }
    parts = []
    for section, columns in HTML_COLUMNS.items():
        row = cat("<tr>", *[
            cat('<td class="n">' if c in NUMERIC else "<td>",
                html_escape(cells[c]) if c in POSTED else cells[c].fill_null(""), "</td>")
            for c in columns], "</tr>\n")
        parts.append(lines.filter(pl.col("section") == section).group_by("provider_id", maintain_order=True).agg(
            section=pl.lit(section), rows=row.str.join(""), count=pl.len().cast(pl.Int64)))
    return pl.concat(parts).collect()


def html_remittance(provider_id: str, name: str | None, sections: dict[str, tuple[str, int]], totals: dict,
                    payer: Payer, run: RunInfo, balances: list[tuple[int, int]] = ()) -> str:
    """One provider's readable remittance. sections: section -> (rows HTML, count); totals: a
    provider_totals row, with the provider's adjustment_totals when it has balances; balances: its
    balance_forward adjustments (balance_run_id, plb_cents)."""
    title = f"Remittance advice: run {run.run_id}, provider {provider_id}"
    figures = [("total-paid", "Paid", money(totals["paid_cents"])),
               ("total-reversed", "Reversed", money(totals["reversed_cents"])),
               ("net", "Net", money(totals["net_cents"]))]
    if balances:
        forwarded, recovered = totals["forwarded_cents"], totals["recovered_cents"]
        figures += [("balance-forward", "Balance carried forward", money(forwarded))] if forwarded else []
        figures += [("balance-recovered", "Balance forward recovered", money(recovered))] if recovered else []
        figures += [("amount-paid", "Amount paid", money(totals["net_cents"] - totals["plb_cents"]))]
    figures += [("count-pending", "Pending claims", str(totals["pending"])),
                ("count-rejected", "Rejected lines", str(totals["rejected"]))]
    cards = "".join(f'<div class="card"><span class="muted">{label}</span><b id="{key}">{value}</b></div>'
                    for key, label, value in figures)
    body = []
    if balances:
        rows = "".join(f"<tr><td>{'balance carried forward' if cents < 0 else 'balance forward recovered'}</td>"
                       f"<td>{escape(f'{balance_run}-{provider_id}')}</td><td class=\"n\">{money(-cents)}</td></tr>\n"
                       for balance_run, cents in balances)
        body.append(f'<h2 id="balance">Balance forward ({len(balances)})</h2>')
        body.append('<table><thead><tr><th>adjustment</th><th>balance of (trace number)</th><th class="n">amount</th>'
                    f"</tr></thead><tbody>\n{rows}</tbody></table>")
    for section, columns in HTML_COLUMNS.items():
        rows, count = sections.get(section, ("", 0))
        body.append(f'<h2 id="{section}">{SECTION_TITLES[section]} ({count})</h2>')
        if not count:
            body.append('<p class="muted">None.</p>')
            continue
        body.append(f"<table><thead><tr>{_table_heads(section)}</tr></thead><tbody>\n{rows}</tbody></table>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{OFFLINE_POLICY}'
            f"<title>{escape(title)}</title>{STYLE}</head><body>\n"
            f"<h1>{escape(title)}</h1>\n"
            f'<p class="muted">From {escape(payer.name)} to {escape(name or provider_id)} ({escape(provider_id)}), '
            f"run finished {run.finished_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. "
            f"Trace number {escape(f'{run.run_id}-{provider_id}')}.</p>\n"
            f'<div class="cards">{cards}</div>\n' + "\n".join(body) + "\n</body></html>\n")


@functools.cache
def _table_heads(section: str) -> str:
    return "".join(f'<th class="n">{_heading(c, section)}</th>' if c in NUMERIC else f"<th>{_heading(c, section)}</th>"
                   for c in HTML_COLUMNS[section])


def _heading(column: str, section: str) -> str:
    heading = HEADINGS.get(column, column.replace("_", " "))
    return heading[section] if isinstance(heading, dict) else heading
