"""The column-wise reference load against the row-by-row one it replaced (tests/reference_oracle.py):
the same rows, or the same first error (file, line, field and message), for hostile CSV text and
for loads merged into stored rows that break every load rule."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_oracle as oracle
from adjudication.reference import (ATTRS, FILES, KEYS, Enrollment, Plan, Provider, ReferenceLoadError, ReferenceSet, Spa, merge,
                                    parse_file, rows_frame)
from adjudication.rules import default_rules

RULES = default_rules()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

# Per kind of field: plain valid texts, then others (valid with spaces or in another spelling, or not).
IDS = (["P1", "P2"], [" P1 ", "P1\t", "\xa0P1", "P1\x1c", "P1\u3000", "é", "a b", "", "  "])
DATES = (["2026-01-01", "2026-12-31", "2025-06-30", "2026-06-01"],
         [" 2026-01-01", "2026-01-01 ", "2026-1-01", "0000-01-01", "2026-01-01T00:00:00", "20260101", "", "x",
          "2026-02-30"])
AMOUNTS = (["300", "0", "0.0000", "1.5", "1.50", "17.53", "1.0000"],
           ["-1", "-0", "007", "1e2", "1.23456", "+5", " 10 ", "1_000", "NaN", "inf", "", "123456789012345678", ".5",
            "5.", "0.00001"])
TEXTS = (["", "x", "SE49", "NA"], [" x ", "\u3000x", "x\x85", "x\x1f"])


def literal(*values: str) -> tuple[list[str], list[str]]:
    return list(values), [f" {values[0]}", values[0].upper(), "", "x"]


KINDS = {
    "provider_id": IDS, "name": TEXTS, "kind": literal("psw", "agency", "generic"), "start_date": DATES,
    "end_date": DATES, "plan_id": IDS, "client_prime": IDS, "status": literal("accepted", "draft", "closed", "void",
                                                                              "pending"),
    "monthly_hours": AMOUNTS, "cme_id": TEXTS, "spa_id": IDS, "service_element": TEXTS, "procedure_code": IDS,
    "modifier": TEXTS, "units": AMOUNTS, "unit_period": literal("month", "day", "total"), "rate": AMOUNTS,
}


def quoted(draw, value: str) -> str:
    form = draw(st.sampled_from(["plain"] * 40 + ["quoted"] * 6 + ["comma", "doubled"]))
    if form == "quoted":
        return f'"{value}"'
    if form == "comma":
        return f'"{value},x"'
    if form == "doubled":
        return f'"{value}""x"'
    return value


@st.composite
def csv_texts(draw):
    name = draw(st.sampled_from(list(FILES)))
    fields = list(FILES[name].model_fields)
    header = draw(st.permutations(fields))
    if draw(st.integers(0, 4)) == 0:
        header = header[:-1]  # a column left out: required (refused) or optional (its default)
    if draw(st.booleans()):
        header = [*header, "note"]
    lines = [",".join(f" {h}" if draw(st.integers(0, 9)) == 0 else h for h in header)]
    good = draw(st.integers(0, 3)) == 0  # now and then a file of only plain, valid values, unquoted
    for _ in range(draw(st.integers(0, 6))):
        shape = draw(st.sampled_from(["row"] * 8 + ["blank", "short", "long", "spaces"]))
        if shape == "blank":
            lines.append("")
            continue
        if shape == "spaces":
            lines.append("  ")
            continue
        values = []
        for column in header:
            plain, others = KINDS.get(column, TEXTS)
            value = draw(st.sampled_from(plain if good or draw(st.integers(0, 4)) else others))
            values.append(quoted(draw, value) if not good else value)
        if shape == "short":
            values = values[:draw(st.integers(1, len(values)))]
        if shape == "long":
            values.append("extra")
        lines.append(",".join(values))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"] if not good else ["\n", "\r\n"]))
    text = ending.join(lines) + draw(st.sampled_from([ending, ""]))
    if draw(st.integers(0, 19)) == 0:
        text = text.replace(",", ",\x00", 1)
    return name, text


def outcome(parse, name: str, text: str):
    try:
        return parse(name, text)
    except ReferenceLoadError as error:
        return str(error)


@SETTINGS
@given(csv_texts())
def test_a_file_parses_to_the_rows_or_the_first_error_of_the_row_by_row_parser(drawn):
    name, text = drawn
    got, expected = outcome(parse_file, name, text), outcome(oracle.parse_file, name, text)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, pl.DataFrame), got
        assert got.equals(rows_frame(name, [item.row.model_dump(mode="json") for item in expected],
                                     [item.line for item in expected]))


PLAIN_ROWS = {"providers.csv": {"provider_id": "P1", "name": "n", "kind": "psw", "start_date": "2026-01-01",
                                 "end_date": "2026-12-31"},
              "plans.csv": {"plan_id": "PL1", "client_prime": "c1", "start_date": "2026-01-01",
                            "end_date": "2026-12-31", "status": "accepted", "monthly_hours": "300"},
              "enrollments.csv": {"client_prime": "c1", "cme_id": "C", "start_date": "2026-01-01",
                                  "end_date": "2026-12-31"},
              "spas.csv": {"spa_id": "S1", "plan_id": "PL1", "provider_id": "P1", "service_element": "SE49",
                           "procedure_code": "OR526", "modifier": "NA", "start_date": "2026-01-01",
                           "end_date": "2026-12-31", "units": "10", "unit_period": "month", "rate": "20",
                           "status": "accepted"}}


def test_every_value_of_every_field_parses_as_its_model_reads_it():
    """Each value of the pools above in each field of a row otherwise plain, bare and in quotes."""
    for name, row in PLAIN_ROWS.items():
        for column in row:
            plain, others = KINDS[column]
            for value in plain + others:
                for form in (value, f'"{value}"'):
                    text = ",".join(row) + "\n" + ",".join(form if c == column else v for c, v in row.items()) + "\n"
                    got, expected = outcome(parse_file, name, text), outcome(oracle.parse_file, name, text)
                    if isinstance(expected, str):
                        assert got == expected, (name, column, form)
                    else:
                        assert isinstance(got, pl.DataFrame) and got.equals(rows_frame(
                            name, [item.row.model_dump(mode="json") for item in expected],
                            [item.line for item in expected])), (name, column, form)


def test_a_status_kind_or_period_with_spaces_around_is_trimmed_as_ids_are():
    row = PLAIN_ROWS["spas.csv"] | {"unit_period": " month ", "status": "accepted\t"}
    text = ",".join(row) + "\n" + ",".join(row.values()) + "\n"
    assert parse_file("spas.csv", text).select("unit_period", "status").row(0) == ("month", "accepted")
    row = PLAIN_ROWS["providers.csv"] | {"kind": "psw "}
    assert parse_file("providers.csv", ",".join(row) + "\n" + ",".join(row.values()) + "\n").get_column("kind")[0] == "psw"


# --- merge and the load rules -----------------------------------------------------------------

DAYS = [dt.date(2026, 1, 1), dt.date(2026, 3, 15), dt.date(2026, 3, 16), dt.date(2026, 6, 30), dt.date(2026, 12, 31),
        dt.date(2027, 1, 1)]


def span(draw) -> tuple[dt.date, dt.date]:
    first, second = draw(st.sampled_from(DAYS)), draw(st.sampled_from(DAYS))
    return min(first, second), max(first, second)


@st.composite
def rows(draw, name: str, coherent: bool = False):
    """One row; `coherent`: SPAs of the three plans always stored, inside their year, so that the
    load rules past the unknown references and the plan dates come into play."""
    if name == "providers.csv":
        start, end = span(draw)
        return Provider(provider_id=draw(st.sampled_from(["P1", "P2", "P3"])), name="n", kind="psw",
                        start_date=draw(st.sampled_from([None, start])), end_date=draw(st.sampled_from([None, end])))
    if name == "plans.csv":
        start, end = draw(st.sampled_from([(DAYS[0], DAYS[4])] * 2 + [span(draw)]))
        return Plan(plan_id=draw(st.sampled_from(["PL1", "PL2", "PL3", "PL4"])),
                    client_prime=draw(st.sampled_from(["c1", "c1", "c2"])), start_date=start, end_date=end,
                    status=draw(st.sampled_from(["accepted", "accepted", "draft"])), monthly_hours="300")
    if name == "enrollments.csv":
        start, end = span(draw)
        return Enrollment(client_prime=draw(st.sampled_from(["c1", "c2", "c3"])), cme_id="CME", start_date=start,
                          end_date=end)
    # Whole year, moving day (in-home ending on the day residential starts) and a day later, or any.
    spans = [(DAYS[0], DAYS[4]), (DAYS[0], DAYS[1]), (DAYS[1], DAYS[4]), (DAYS[2], DAYS[4]), (DAYS[1], DAYS[3])]
    start, end = draw(st.sampled_from(spans if coherent else [*spans, span(draw)]))
    return Spa(spa_id=draw(st.sampled_from([f"S{i}" for i in range(1, 8)])),
               plan_id=draw(st.sampled_from(["PL1", "PL2", "PL3"] if coherent else
                                            ["PL1"] * 3 + ["PL2"] * 2 + ["PL3", "PL4", "PL5"])),
               provider_id=draw(st.sampled_from(["P1", "P2"] if coherent else ["P1"] * 4 + ["P2", "P3", "P4"])),
               service_element=draw(st.sampled_from(["SE49", "SE151", "SE50", "SE158", "SE1"])),
               procedure_code="OR526", modifier=draw(st.sampled_from(["NA"] if coherent else ["NA", ""])),
               start_date=start, end_date=end,
               units="10", unit_period="month", rate="20", status=draw(st.sampled_from(["accepted", "accepted",
                                                                                        "pending"])))




@st.composite
def stored_and_loaded(draw):
    coherent = draw(st.booleans())
    stored = {}
    for name in FILES:
        drawn = draw(st.lists(rows(name, coherent), min_size=4 if name == "providers.csv" else 0, max_size=6))
        if coherent and name == "plans.csv":
            drawn = [Plan(plan_id=p, client_prime=c, start_date=DAYS[0], end_date=DAYS[4], status="accepted",
                          monthly_hours="300") for p, c in (("PL1", "c1"), ("PL2", "c1"), ("PL3", "c2"))]
        if coherent and name == "providers.csv":
            drawn = [Provider(provider_id=p, name="n", kind="psw") for p in ("P1", "P2")]
        if name in KEYS:
            drawn = list({getattr(row, KEYS[name]): row for row in drawn}.values())
        stored[name] = drawn
    loaded = {}
    for name in draw(st.lists(st.sampled_from(list(FILES)), min_size=1, max_size=4, unique=True)):
        drawn = draw(st.lists(rows(name, coherent), max_size=8))
        if name in KEYS and draw(st.integers(0, 3)):
            drawn = list({getattr(row, KEYS[name]): row for row in drawn}.values())  # mostly no repeated id
        same_line = draw(st.integers(0, 4)) == 0  # as tests load whole sets: every row on line 2
        loaded[name] = [(row, 2 if same_line else line) for line, row in enumerate(drawn, start=2)]
    return stored, loaded


def frame(name: str, located: list[tuple]) -> pl.DataFrame:
    return rows_frame(name, [row.model_dump(mode="json") for row, _ in located], [line for _, line in located])


def assert_merged_as_row_by_row(stored: dict[str, list], loaded: dict[str, list[tuple]]) -> str | None:
    """Merge `loaded` (rows and their lines) into `stored` (rows) both ways; the same error or result.
    Returns the error."""
    old_current = oracle.ReferenceSet(
        providers={p.provider_id: oracle.Located(p) for p in stored.get("providers.csv", [])},
        plans={p.plan_id: oracle.Located(p) for p in stored.get("plans.csv", [])},
        enrollments=tuple(oracle.Located(e) for e in stored.get("enrollments.csv", [])),
        spas={s.spa_id: oracle.Located(s) for s in stored.get("spas.csv", [])})
    old_loaded = {name: [oracle.Located(row, name, line) for row, line in items] for name, items in loaded.items()}
    try:
        expected = oracle.merge(old_current, old_loaded, RULES)
    except ReferenceLoadError as error:
        expected = str(error)
    current = ReferenceSet(*(frame(name, [(row, None) for row in stored.get(name, [])]) for name in FILES))
    try:
        got = merge(current, {name: frame(name, items) for name, items in loaded.items()}, RULES)
    except ReferenceLoadError as error:
        got = str(error)
    if isinstance(expected, str):
        assert got == expected
        return got
    assert not isinstance(got, str), got
    for name in KEYS:
        expected_rows = getattr(expected, ATTRS[name]).values()
        assert got.of(name).equals(frame(name, [(item.row, item.line) for item in expected_rows]))
    assert got.enrollments.equals(frame("enrollments.csv", [(item.row, item.line) for item in expected.enrollments]))
    return None


@SETTINGS
@given(stored_and_loaded())
def test_a_merge_refuses_as_the_row_by_row_checks_did_and_keeps_their_order(drawn):
    assert_merged_as_row_by_row(*drawn)


def test_conflicts_are_reported_for_the_first_client_or_group_met():
    """Row by row, clients and groups were taken in the order their first row was met, not by the
    line of their conflict."""
    year = (DAYS[0], DAYS[4])
    plans = [Plan(plan_id=p, client_prime=c, start_date=year[0], end_date=year[1], status="accepted",
                  monthly_hours="300") for p, c in (("PL1", "c1"), ("PL3", "c2"))]
    providers = [Provider(provider_id=p, name="n", kind="psw") for p in ("P1", "P2")]

    def spa(spa_id, plan, element, start=DAYS[0], provider="P1"):
        return Spa(spa_id=spa_id, plan_id=plan, provider_id=provider, service_element=element,
                   procedure_code="OR526", modifier="NA", start_date=start, end_date=year[1], units="10",
                   unit_period="month", rate="20", status="accepted")

    stored = {"providers.csv": providers, "plans.csv": plans}
    # c2 is met first (an SE1 SPA); c1's conflict is on an earlier line than c2's.
    spas = [spa("S1", "PL3", "SE1"), spa("S2", "PL1", "SE49"), spa("S3", "PL1", "SE50"), spa("S4", "PL3", "SE49"),
            spa("S5", "PL3", "SE50")]
    error = assert_merged_as_row_by_row(stored, {"spas.csv": [(s, line) for line, s in enumerate(spas, start=2)]})
    assert error.startswith("spas.csv line 6, field start_date: accepted in-home and residential SPAs of one "
                            "client overlap (S4)")
    # The group of S1 and S2 is met first; the other group's rows start earlier.
    spas = [spa("S1", "PL1", "SE1", DAYS[2]), spa("S2", "PL1", "SE1", DAYS[2]),
            spa("S3", "PL1", "SE1", provider="P2"), spa("S4", "PL1", "SE1", provider="P2")]
    error = assert_merged_as_row_by_row(stored, {"spas.csv": [(s, line) for line, s in enumerate(spas, start=2)]})
    assert error.startswith("spas.csv line 3, field start_date: accepted SPA S1 of the same plan")
