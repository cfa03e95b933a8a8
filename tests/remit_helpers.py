"""Reading 835s back in tests: pyx12's validator, and the balances an 835 must keep."""

from __future__ import annotations

import io
import logging
from decimal import Decimal


def validate_835(text: str) -> list[str]:
    """pyx12's errors for an X12 document (empty when it passes)."""
    import pyx12.params
    import pyx12.x12n_document

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("pyx12")
    logger.addHandler(handler)
    try:
        ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), None, None, None, None)
    finally:
        logger.removeHandler(handler)
    if not ok and not records:
        records.append("pyx12: not valid")
    return records


def segments(text: str) -> list[list[str]]:
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def balances(text: str) -> dict:
    """The 835's figures, after checking that it balances: BPR02 = sum(CLP04) - sum(PLB amounts),
    each claim's charge - payment = its CAS amounts, each service's likewise."""
    segs = segments(text)
    bpr = next(s for s in segs if s[0] == "BPR")
    claims, plb = [], Decimal(0)
    for s in segs:
        if s[0] == "CLP":
            claims.append({"id": s[1], "status": s[2], "charge": Decimal(s[3]), "paid": Decimal(s[4]), "cas": Decimal(0),
                           "svc_charge": Decimal(0), "svc_paid": Decimal(0)})
        elif s[0] == "SVC":
            claims[-1]["svc_charge"] += Decimal(s[2])
            claims[-1]["svc_paid"] += Decimal(s[3])
        elif s[0] == "CAS":
            claims[-1]["cas"] += sum(Decimal(s[i]) for i in range(3, len(s), 3) if s[i])
        elif s[0] == "PLB":
            plb += sum(Decimal(s[i]) for i in range(4, len(s), 2) if s[i])
    for claim in claims:
        assert claim["charge"] - claim["paid"] == claim["cas"], claim
        assert (claim["svc_charge"], claim["svc_paid"]) == (claim["charge"], claim["paid"]), claim
        if claim["status"] == "22":
            assert claim["paid"] <= 0 and claim["charge"] <= 0, claim
    net = sum((c["paid"] for c in claims), Decimal(0))
    bpr02 = Decimal(bpr[2])
    assert bpr02 >= 0
    assert bpr02 == net - plb, (bpr02, net, plb)
    assert (bpr02 == 0) == (bpr[1] == "H")
    return {"bpr02": bpr02, "plb": plb, "net": net, "claims": claims,
            "trace": next(s for s in segs if s[0] == "TRN")[2]}


def default_payer():
    """The payer as the default settings name it."""
    from worker.bootstrap import App
    from worker.settings import Settings

    return App(Settings()).payer


PAYER = default_payer()
