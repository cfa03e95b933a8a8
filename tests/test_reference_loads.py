"""Reference loads on a store that already holds reference data: a load reads only the stored rows
it could conflict with, and updates the runs' snapshot in place; both must equal doing it whole."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication.engine import ReferenceFrames
from adjudication.reference import ReferenceLoadError, ReferenceSet, merge
from conftest import reset_store
from scenarios import reference_sets
from worker.store import repository as repo

CLIENTS = ["c01", "c02", "c03"]
FILES = ("providers.csv", "plans.csv", "enrollments.csv", "spas.csv")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
KEYS = {"plans": ["plan_id"], "enrollments": ["client_prime", "start_date", "end_date"], "spas": ["spa_id"]}


@st.composite
def loads(draw) -> dict[str, pl.DataFrame]:
    """Some rows of a random reference set, as a load brings them: ids shared with what is stored
    (upserts, overlapping plans and SPAs), SPAs whose plan or provider is elsewhere or nowhere."""
    drawn = draw(reference_sets(clients=draw(st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=3,
                                                      unique=True))))
    loaded = {}
    for name in draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=4, unique=True)):
        frame = drawn.of(name)
        rows = frame.filter(pl.Series([bool(draw(st.integers(0, 3))) for _ in range(frame.height)], dtype=pl.Boolean))
        if name == "plans.csv" and draw(st.integers(0, 3)) == 0:  # plans moved to another client
            rows = rows.with_columns(client_prime=pl.lit(draw(st.sampled_from(CLIENTS))))
        loaded[name] = rows.with_columns(line=pl.int_range(2, rows.height + 2, dtype=pl.Int64))
    return loaded


def _outcome(current: ReferenceSet, loaded: dict[str, pl.DataFrame]) -> str | None:
    try:
        merge(current, loaded)
    except ReferenceLoadError as error:
        return str(error)
    return None


def _sorted(frames: ReferenceFrames) -> dict[str, pl.DataFrame]:
    return {name: getattr(frames, name).sort(KEYS[name]) for name in KEYS}


def test_a_load_is_checked_against_only_the_rows_it_can_conflict_with(store):
    @SETTINGS
    @given(stored=reference_sets(clients=CLIENTS), loaded=loads())
    def check(stored, loaded):
        reset_store(store)
        with store.begin() as conn:
            repo.save_reference(conn, {name: stored.of(name) for name in FILES})
            partial = repo.reference_set(conn, loaded)
            assert _outcome(partial, loaded) == _outcome(repo.reference_set(conn), loaded)
            assert partial.plans.height + partial.spas.height <= stored.plans.height + stored.spas.height

    check()


def test_the_snapshot_runs_read_equals_the_tables_after_every_load(store):
    @SETTINGS
    @given(first=reference_sets(clients=CLIENTS), later=st.lists(loads(), min_size=1, max_size=3))
    def check(first, later):
        reset_store(store)
        for loaded in [{name: first.of(name).with_columns(line=pl.lit(2, pl.Int64)) for name in FILES}, *later]:
            with store.begin() as conn:
                if _outcome(repo.reference_set(conn, loaded), loaded) is not None:
                    continue  # refused: nothing stored
                repo.save_reference(conn, loaded)
                snapshot = _sorted(repo.reference_frames(conn))
                tables = _sorted(repo._reference_from_tables(conn))
                for name in KEYS:
                    assert snapshot[name].equals(tables[name]), name

    check()
