"""Use-case rules that need no database, on the fake unit of work (tests/fakes.py): which suspended
claims a re-queue selects, and what override, withdraw and re-queue refuse (storing nothing)."""

from __future__ import annotations

import datetime as dt

import pytest

from adjudication.rules import default_rules
from fakes import FakeUnitOfWork
from worker import service

RULES = default_rules()


def _suspended(pk: int, claim_id: str, batch: str, reasons: str, provider: str, client: str, day: int) -> dict:
    return {"claim_pk": pk, "batch_id": batch, "reasons": reasons, "claim_id": claim_id, "provider_id": provider,
            "client_prime": client, "service_date": dt.date(2026, 3, day)}


@pytest.fixture
def uow() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    repo = uow.repo
    repo.suspended = [
        _suspended(3, "WX-3", "B1", "OVERLAP_DUPLICATE;OVERLAP_SAME_PROVIDER", "P1", "c1", 2),
        _suspended(5, "WX-5", "B1", "OVERLAP_SAME_PROVIDER", "G1", "c1", 2),
        _suspended(9, "WX-9", "B2", "MONTHLY_HOURS_EXCEEDED", "P1", "c2", 20),
    ]
    repo.statuses = {1: "paid", 3: "suspended", 5: "suspended", 9: "suspended"}
    repo.holder_pks = {"WX-1": 1, "WX-3": 3, "WX-5": 5, "WX-9": 9}
    repo.operators.update({"ann": {"operator"}, "bob": {"override"}})
    repo.batches = {"B1": {"batch_id": "B1", "status": "adjudicated", "claims": 6},
                    "B3": {"batch_id": "B3", "status": "queued", "claims": 4}}
    return uow


@pytest.mark.parametrize(("selection", "chosen"), [
    (service.Selection(claim_ids=("WX-3", " WX-9 ")), ["WX-3", "WX-9"]),
    (service.Selection(batch="B1"), ["WX-3", "WX-5"]),
    (service.Selection(provider="P1"), ["WX-3", "WX-9"]),
    (service.Selection(client="c2"), ["WX-9"]),
    (service.Selection(reason="OVERLAP_SAME_PROVIDER"), ["WX-3", "WX-5"]),
    (service.Selection(reason="TIMELY_FILING"), []),
    (service.Selection(date_from="2026-03-03"), ["WX-9"]),
    (service.Selection(date_to="2026-03-02", provider="P1"), ["WX-3"]),
])
def test_requeue_selects_suspended_claims_by_every_selector(uow, selection, chosen):
    assert service.requeue(uow, selection, "ann", "recheck") == chosen
    assert [pk for pk, _kind in uow.repo.queue] == [uow.repo.holder_pks[i] for i in chosen]
    assert uow.repo.audit_rows[-1][:2] == ("ann", "requeue") and uow.repo.locked_by == ["requeue"]


@pytest.mark.parametrize(("selection", "note", "message"), [
    (service.Selection(), "n", "name the claims"),
    (service.Selection(batch="B1"), " ", "--note must say why"),
    (service.Selection(claim_ids=("WX-404",)), "n", "no adjudicated claim WX-404"),
    (service.Selection(claim_ids=("WX-3", "WX-1")), "n", "claim WX-1 is paid; only suspended claims are re-queued"),
    (service.Selection(reason="OVERLAP"), "n", "no reason code OVERLAP"),  # a reason code is matched whole
    (service.Selection(batch="B404"), "n", "no batch B404"),
])
def test_requeue_refusals_store_nothing(uow, selection, note, message):
    with pytest.raises(service.UserError, match=message):
        service.requeue(uow, selection, "ann", note)
    assert uow.repo.queue == [] and uow.repo.audit_rows == []


@pytest.mark.parametrize(("claim", "code", "operator", "message"), [
    ("WX-5", "NO_ACTIVE_SPA", "bob", "NO_ACTIVE_SPA cannot be waived"),
    ("WX-5", "OVERLAP_SAME_PROVIDER", "ann", "operator ann does not have the override role"),
    ("WX-5", "OVERLAP_SAME_PROVIDER", "nobody", "operator nobody is not registered"),
    ("WX-5", "OVERLAP_DUPLICATE", "bob", r"not suspended for OVERLAP_DUPLICATE \(it is for OVERLAP_SAME_PROVIDER\)"),
    ("WX-1", "OVERLAP_SAME_PROVIDER", "bob", "claim WX-1 is paid"),
])
def test_override_refusals_store_nothing(uow, claim, code, operator, message):
    with pytest.raises(service.UserError, match=message):
        service.override(uow, claim, code, operator, "approved", RULES)
    assert uow.repo.waivers == set() and uow.repo.queue == [] and uow.repo.audit_rows == []


def test_an_override_waives_one_code_and_requeues_the_claim(uow):
    service.override(uow, "WX-3", "OVERLAP_SAME_PROVIDER", "bob", "approved", RULES)
    assert uow.repo.waivers == {(3, "OVERLAP_SAME_PROVIDER")} and uow.repo.queue == [(3, "override")]
    assert uow.repo.audit_rows == [("bob", "override", "claim=WX-3 waive=OVERLAP_SAME_PROVIDER", "approved")]
    # The same override again before the run: refused, nothing more queued or audited.
    with pytest.raises(service.UserError, match="claim WX-3: OVERLAP_SAME_PROVIDER is waived already"):
        service.override(uow, "WX-3", "OVERLAP_SAME_PROVIDER", "bob", "approved again", RULES)
    assert uow.repo.queue == [(3, "override")] and len(uow.repo.audit_rows) == 1


@pytest.mark.parametrize(("batch", "operator", "note", "message"), [
    ("B3", "eve", "wrong file", "operator eve is not registered"),
    ("B3", "ann", "", "--note must say why"),
    ("B0", "ann", "x", "no batch B0"),
    ("B1", "ann", "x", "batch B1 is adjudicated; only a queued batch can be withdrawn"),
])
def test_withdraw_refusals_store_nothing(uow, batch, operator, note, message):
    with pytest.raises(service.UserError, match=message):
        service.withdraw(uow, batch, operator, note)
    assert uow.repo.batches["B3"]["status"] == "queued" and uow.repo.audit_rows == []


def test_withdraw_takes_a_queued_batch_out(uow):
    assert service.withdraw(uow, "B3", "ann", "wrong month") == 4
    assert uow.repo.batches["B3"]["status"] == "withdrawn"
    assert uow.repo.audit_rows == [("ann", "batch.withdraw", "batch=B3 claims=4", "wrong month")]

