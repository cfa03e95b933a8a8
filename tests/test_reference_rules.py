"""Reference load rules of claim corrections and authorizations: a SPA inside its plan's dates,
no overlapping in-home and residential SPAs of one client (except moving day), provider enrollment."""

from __future__ import annotations

import pytest

from adjudication.reference import ReferenceLoadError, ReferenceSet, merge, parse_file
from adjudication.rules import default_rules

PROVIDERS = "provider_id,name,kind,start_date,end_date\nP1,Pat,psw,,\nG1,Agency,agency,2026-01-01,2026-06-30\n"
PLANS = "plan_id,client_prime,start_date,end_date,status,monthly_hours\nPL1,c1,2026-01-01,2026-12-31,accepted,300\n"
SPA_HEADER = ("spa_id,plan_id,provider_id,service_element,procedure_code,modifier,start_date,end_date,units,"
              "unit_period,rate,status\n")


def load(spas: str, plans: str = PLANS, providers: str = PROVIDERS) -> ReferenceSet:
    files = {"providers.csv": providers, "plans.csv": plans, "spas.csv": SPA_HEADER + spas}
    return merge(ReferenceSet(), {name: parse_file(name, text) for name, text in files.items()})


def spa(spa_id: str, element: str, start: str, end: str, status: str = "accepted", plan: str = "PL1") -> str:
    procedure = "OR542" if element in ("SE50", "SE158") else "OR526"  # a residential service
    return f"{spa_id},{plan},P1,{element},{procedure},NA,{start},{end},10,month,20,{status}\n"


def test_provider_enrollment_dates_are_optional_and_checked():
    ref = load(spa("S1", "SE49", "2026-01-01", "2026-12-31"))
    providers = {p.provider_id: p for p in ref.rows("providers.csv")}
    assert providers["G1"].end_date.isoformat() == "2026-06-30" and providers["P1"].start_date is None
    frame = ref.frames().providers
    assert frame.columns == ["provider_id", "start_date", "end_date"] and frame.height == 2
    with pytest.raises(ReferenceLoadError, match="providers.csv line 2, field end_date"):
        load("", providers="provider_id,name,kind,start_date,end_date\nP1,Pat,psw,2026-02-01,2026-01-01\n")


@pytest.mark.parametrize("start,end,field", [("2025-12-31", "2026-03-01", "start_date"),
                                             ("2026-03-01", "2027-01-01", "end_date")])
def test_a_spa_outside_its_plan_is_refused(start, end, field):
    with pytest.raises(ReferenceLoadError, match=f"spas.csv line 2, field {field}: SPA S1 is not inside"):
        load(spa("S1", "SE49", start, end))


def test_a_plan_reloaded_around_its_spas_is_refused():
    loaded = load(spa("S1", "SE49", "2026-01-01", "2026-12-31"))
    ref = ReferenceSet.from_rows(*(loaded.rows(n) for n in ("providers.csv", "plans.csv", "enrollments.csv",
                                                             "spas.csv")))  # as stored
    narrower = PLANS.replace("2026-12-31", "2026-06-30")
    with pytest.raises(ReferenceLoadError, match="plans.csv line 2, field end_date: SPA S1"):
        merge(ref, {"plans.csv": parse_file("plans.csv", narrower)})


def test_in_home_and_residential_may_overlap_only_on_moving_day():
    """An in-home SPA may end on the day a residential SPA starts (seed 000); not a day later, and
    not the other way round."""
    moving = load(spa("S1", "SE49", "2026-01-01", "2026-03-15") + spa("S2", "SE50", "2026-03-15", "2026-12-31"))
    assert set(moving.spas.get_column("spa_id")) == {"S1", "S2"}
    with pytest.raises(ReferenceLoadError, match="spas.csv line 3, field start_date: accepted in-home and "
                                                 "residential SPAs of one client overlap \\(S1\\)"):
        load(spa("S1", "SE151", "2026-01-01", "2026-03-16") + spa("S2", "SE158", "2026-03-15", "2026-12-31"))
    with pytest.raises(ReferenceLoadError, match="overlap"):
        load(spa("S1", "SE50", "2026-01-01", "2026-03-15") + spa("S2", "SE49", "2026-03-15", "2026-12-31"))


def test_a_plan_reload_that_puts_overlapping_stored_spas_in_force_is_refused():
    plans = PLANS.replace("accepted", "draft")
    loaded = load(spa("S1", "SE49", "2026-01-01", "2026-06-30") + spa("S2", "SE50", "2026-03-01", "2026-12-31"),
                  plans=plans)  # a draft plan: its SPAs are not in force
    ref = ReferenceSet.from_rows(*(loaded.rows(n) for n in ("providers.csv", "plans.csv", "enrollments.csv",
                                                             "spas.csv")))  # as stored
    with pytest.raises(ReferenceLoadError, match="plans.csv line 2, field status: plan PL1 would put in force "
                                                 "in-home and residential SPAs of one client that overlap \\(S1, S2\\)"):
        merge(ref, {"plans.csv": parse_file("plans.csv", PLANS)})
    merge(ref, {"plans.csv": parse_file("plans.csv", plans)})  # the plan reloaded as it was: nothing in force


def test_a_plan_reloaded_as_it_was_passes_and_a_plan_moved_to_a_client_is_checked():
    """Stored SPAs that overlap under an accepted plan (loaded under rules that had SE50 in neither
    list) do not block a reload of the plan as it was; moving a plan to the client of an in-home SPA
    its residential SPA overlaps is refused, naming client_prime."""
    plans = PLANS + "PL2,c2,2026-01-01,2026-12-31,accepted,300\n"
    lenient = default_rules().model_copy(update={"residential_service_elements": frozenset({"SE158"})})
    files = {"providers.csv": PROVIDERS, "plans.csv": PLANS,
             "spas.csv": SPA_HEADER + spa("S1", "SE49", "2026-01-01", "2026-06-30") + spa("S2", "SE50", "2026-03-01",
                                                                                          "2026-12-31")}
    loaded = merge(ReferenceSet(), {n: parse_file(n, t) for n, t in files.items()}, lenient)
    ref = ReferenceSet.from_rows(*(loaded.rows(n) for n in ("providers.csv", "plans.csv", "enrollments.csv",
                                                             "spas.csv")))
    merge(ref, {"plans.csv": parse_file("plans.csv", PLANS)})  # default rules: S1 and S2 now overlap; unchanged plan
    moved = load(spa("S1", "SE49", "2026-01-01", "2026-06-30") + spa("S2", "SE50", "2026-03-01", "2026-12-31",
                                                                      plan="PL2"), plans=plans)
    ref = ReferenceSet.from_rows(*(moved.rows(n) for n in ("providers.csv", "plans.csv", "enrollments.csv",
                                                            "spas.csv")))
    with pytest.raises(ReferenceLoadError, match="plans.csv line 2, field client_prime: plan PL2 would put in force"):
        merge(ref, {"plans.csv": parse_file("plans.csv", PLANS.splitlines()[0] + "\nPL2,c1,2026-01-01,2026-12-31,"
                                                         "accepted,300\n")})


def test_only_accepted_spas_under_accepted_plans_count_for_the_overlap():
    load(spa("S1", "SE49", "2026-01-01", "2026-12-31") + spa("S2", "SE50", "2026-01-01", "2026-12-31", "pending"))
    plans = PLANS + "PL2,c1,2026-01-01,2026-12-31,draft,300\n"
    load(spa("S1", "SE49", "2026-01-01", "2026-12-31") + spa("S2", "SE50", "2026-01-01", "2026-12-31", plan="PL2"),
         plans=plans)
    with pytest.raises(ReferenceLoadError, match="overlap"):  # across two accepted plans of one client
        plans = PLANS.replace("2026-12-31", "2026-06-30") + "PL2,c1,2026-07-01,2026-12-31,accepted,300\n"
        load(spa("S1", "SE49", "2026-01-01", "2026-06-30") + spa("S2", "SE50", "2026-07-01", "2026-12-31", plan="PL2")
             + spa("S3", "SE49", "2026-07-01", "2026-08-01", plan="PL2"), plans=plans)
