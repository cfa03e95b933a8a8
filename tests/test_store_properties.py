"""The whole stored path (submit, run, re-queue, override) equals the sequential reference,
on SQLite and on PostgreSQL: state carried between runs comes from the database."""

from __future__ import annotations

import datetime as dt

import csv
import io
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update

from adjudication.claims import CLAIM_COLUMNS, FIELDS_SCHEMA
from adjudication.rules import default_rules
from conftest import OPERATOR, examples, reset_store
from scenarios import batches, reference_sets
from sequential import adjudicate_sequentially
from adjudication.claim_file import Limits
from worker import service
from worker.store import repository as repo
from worker.store import schema as t
from worker.store.database import make_engine, upgrade

RULES = default_rules()


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CLAIM_COLUMNS)
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in CLAIM_COLUMNS} for r in rows)
    return path


def _received(group: list[dict]):
    """A batch's received date (scenarios.batches gives every row of a group the same one)."""
    return group[0].get("received_date")


def _submit(store, path: Path, group: list[dict], order: list[dict]) -> service.Submitted | None:
    """Submit `group` as a claim file; its rows join `order` (queue entries for the reference) when
    the batch is new (claim_pks are given in queue order, one attempt each)."""
    submitted = service.submit(store, _write_csv(path, group), RULES, Limits(), received=_received(group))
    if not submitted.new:
        return None
    for line, row in enumerate(group, start=2):
        order.append({**row, "claim_pk": len(order) + 1, "key": (submitted.batch_id, line, 1)})
    return submitted


def _stored(engine) -> dict[tuple, dict]:
    frame = service.outcomes(engine, history=True)
    return {(r["batch_id"], r["line"], r["attempt"]): r for r in frame.iter_rows(named=True)}


def _fresh(store, reference) -> None:
    """An empty store holding `reference`."""
    reset_store(store)
    with store.begin() as conn:
        repo.save_reference(conn, {name: reference.of(name)
                                   for name in ("providers.csv", "plans.csv", "enrollments.csv", "spas.csv")})


def _assert_as_sequential(store, order: list[dict], reference) -> None:
    """Every stored attempt is what the sequential reference decides for the queue `order`."""
    expected = adjudicate_sequentially(order, reference, RULES)
    stored = _stored(store)
    assert len(stored) == len(order)
    # The claim id of the replacement or void that reversed each reversed claim (by claim_pk).
    reversed_by = {o["reverses"]: e["claim_id"].strip() for e, o in zip(order, expected) if o["reverses"]}
    for entry, outcome in zip(order, expected):
        got = stored[entry["key"]]
        assert got["adjusts"] == (outcome["adjusts"] or ""), entry
        paying = outcome["status"] == "paid" and entry["claim_pk"] in reversed_by
        assert got["reversed_by"] == (reversed_by[entry["claim_pk"]] if paying else ""), entry
        assert got["status"] == outcome["status"], entry
        assert got["reasons"] == ";".join(outcome["reasons"]), entry
        assert got["carc"] == ";".join(outcome["carc"]), entry
        assert got["spa_id"] == (outcome["spa_id"] or ""), entry
        assert sorted(filter(None, got["conflicts_with"].split(";"))) == sorted(outcome["conflicts_with"])
        assert Decimal(got["paid_units"]) == (outcome["paid_units"] or 0), entry
        assert got["paid_amount"] == f"{outcome['paid_amount'] or 0:.2f}", entry


def test_store_equals_the_sequential_reference(store, tmp_path):
    @settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck))
    @given(reference=reference_sets(), groups=batches(), data=st.data())
    def check(reference, groups, data):
        check_stored_runs(store, tmp_path, reference, groups, data, lambda: service.run(store, RULES))

    check()


def check_stored_runs(store, folder: Path, reference, groups: list[list[dict]], data, run) -> None:
    """Submit `groups` one batch at a time into an empty `store` holding `reference`, `run()` after
    each, re-queue or override (waiving one of its codes) a suspended claim now and then and `run()`
    again; then every stored attempt must be the sequential reference's."""
    _fresh(store, reference)
    order: list[dict] = []  # queue entries for the reference, keyed like the store's attempts
    attempts: dict[tuple, int] = {}
    pk_of: dict[tuple, int] = {}
    for index, group in enumerate(groups):
        submitted = service.submit(store, _write_csv(folder / f"b{index}.csv", group), RULES,
                                   Limits(), received=_received(group))
        if not submitted.new:
            continue  # the same content again is a no-op
        for line, row in enumerate(group, start=2):
            key = (submitted.batch_id, line)
            pk_of[key] = len(pk_of) + 1
            attempts[key] = 1
            order.append({**row, "claim_pk": pk_of[key], "key": (*key, 1)})
        run()
        suspended = [r for r in service.outcomes(store, status="suspended").iter_rows(named=True)]
        if suspended and data.draw(st.booleans()):
            chosen = data.draw(st.sampled_from(suspended))
            key = (chosen["batch_id"], chosen["line"])
            row = [o for o in order if o["claim_pk"] == pk_of[key]][-1]  # waivers so far stay
            waivable = sorted(set(chosen["reasons"].split(";")) & RULES.waivable)
            waived = set(row.get("waived", ()))
            if waivable and data.draw(st.booleans()):
                code = data.draw(st.sampled_from(waivable))
                service.override(store, chosen["claim_id"], code, OPERATOR, "test", RULES)
                waived.add(code)
            else:
                service.requeue(store, service.Selection(claim_ids=(chosen["claim_id"],)), OPERATOR, "test")
            attempts[key] += 1
            order.append({**row, "waived": waived, "key": (*key, attempts[key])})
            run()
    _assert_as_sequential(store, order, reference)


def test_batches_stored_without_parsed_fields_are_parsed_by_the_run(store, tmp_path):
    """A payload written before submit kept the parsed fields (posted texts only), or by another
    parse version, still runs, and the outcome is the sequential reference's, whichever of the
    batches are of the old kind."""
    @settings(max_examples=examples(10), deadline=None, suppress_health_check=list(HealthCheck))
    @given(reference=reference_sets(), groups=batches(), data=st.data())
    def check(reference, groups, data):
        _fresh(store, reference)
        order: list[dict] = []
        for index, group in enumerate(groups):
            submitted = _submit(store, tmp_path / f"b{index}.csv", group, order)
            if submitted is None:
                continue  # the same content again is a no-op
            if data.draw(st.booleans()):
                with store.begin() as conn:
                    posted = repo.payloads(conn, [submitted.batch_id]).select(repo.PAYLOAD_SCHEMA.keys())
                    if data.draw(st.booleans()):  # fields of another parse version: wrong here, ignored
                        posted = posted.with_columns(
                            [pl.lit(None, dtype).alias(f"parsed0.{name}") for name, dtype in FIELDS_SCHEMA.items()])
                    buffer = io.BytesIO()
                    posted.write_parquet(buffer)
                    conn.execute(update(t.batch_payloads).where(t.batch_payloads.c.batch_id == submitted.batch_id)
                                 .values(payload=buffer.getvalue()))
                    assert not any(c.startswith(repo.PARSED) for c in pl.read_parquet_schema(io.BytesIO(buffer.getvalue())))
        service.run(store, RULES)
        _assert_as_sequential(store, order, reference)

    check()


def test_a_payload_keeps_the_typed_fields_and_only_the_texts_that_were_padded():
    from adjudication.claims import TYPED_FIELDS, fields_to_keep, parse_fields

    raw = pl.DataFrame({c: ["x", "", "y"] for c in CLAIM_COLUMNS}).with_columns(
        provider_id=pl.Series([" P1", "P2", "P3"]), modifier=pl.Series(["NA", None, "ZE\t"]))
    kept, invalid = fields_to_keep(raw, RULES)
    assert kept.columns == [*TYPED_FIELDS, "provider_id", "modifier"]
    assert kept.get_column("provider_id").to_list() == ["P1", "P2", "P3"]
    assert invalid == 3  # 'x' is no date
    engine = make_engine("sqlite://")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(t.batches).values(batch_id="B1", content_hash="h", file_name="f", file_format="csv",
                                              submitted_at=repo.now(), seq=1, status="queued", claims=3,
                                              intake_rejected=3, first_pk=1, received_date=dt.date(2026, 3, 1)))
        claims = raw.with_columns(claim_pk=pl.int_range(1, 4, dtype=pl.Int64), line=pl.int_range(2, 5, dtype=pl.Int64))
        repo.store_payload(conn, "B1", claims, kept)
        read = repo.payloads(conn, ["B1"], parsed=True).select(*FIELDS_SCHEMA)
    assert read.equals(parse_fields(raw.lazy()).select(*FIELDS_SCHEMA).collect())


def test_withdrawn_batches_are_as_if_never_posted(store, tmp_path):
    """Claims of withdrawn batches are not adjudicated and hold no claim id: the run's outcome is
    the sequential reference's on the other batches alone."""
    @settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
    @given(reference=reference_sets(), groups=batches(), data=st.data())
    def check(reference, groups, data):
        _fresh(store, reference)
        order: list[dict] = []
        for index, group in enumerate(groups):
            submitted = service.submit(store, _write_csv(tmp_path / f"b{index}.csv", group), RULES, Limits(),
                                       received=_received(group))
            if not submitted.new:
                continue
            if data.draw(st.booleans()):
                assert service.withdraw(store, submitted.batch_id, OPERATOR, "test") == len(group)
                continue
            for line, row in enumerate(group, start=2):
                order.append({**row, "claim_pk": len(order) + 1, "key": (submitted.batch_id, line, 1)})
        service.run(store, RULES)
        _assert_as_sequential(store, order, reference)

    check()
