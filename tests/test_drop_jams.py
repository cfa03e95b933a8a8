"""The drop folder never jams: a file that cannot be processed goes to rejected/ (or, when it was
stored, accepted/) with an acknowledgement under a safe name, and the sweep goes on."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from test_intake_watch import claims_file
from test_intake_cli import prepared


def test_a_name_too_long_for_its_acknowledgement_or_not_utf8_does_not_stop_the_sweep(tmp_path):
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    long_name = "a" * 246 + ".csv"  # 250 characters: NAME.ack.json would be 259
    odd_name = os.fsdecode(b"claims-\xff.csv")  # not UTF-8
    for age, (name, tag) in enumerate([(long_name, "LONG"), (odd_name, "ODD"), ("later.csv", "LATER")]):
        path = claims_file(drop / name, tag)
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))  # oldest first

    result = cli("watch", drop, "--once", "--settle", "0")

    lines = result.out.splitlines()
    assert len(lines) == 3 and all(line.startswith("accepted ") for line in lines), result.out
    assert {p.name for p in drop.iterdir()} == {".processing", "accepted", "rejected"}
    accepted = {p.name for p in (drop / "accepted").iterdir()}
    safe = next(n for n in accepted if n.startswith("a" * 64 + "~") and n.endswith(".csv"))
    document = json.loads((drop / "accepted" / (safe + ".ack.json")).read_text())
    assert document["file"] == long_name and document["claims"] == 2
    assert os.fsencode(odd_name).decode("utf-8", "surrogateescape") in {os.fsdecode(n) for n in accepted}
    assert "later.csv" in accepted and "later.csv.ack.json" in accepted
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM batches").fetchone() == (3,)
    assert cli("watch", drop, "--once", "--settle", "0").out == ""  # nothing left behind to fail on


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_an_unreadable_file_goes_to_rejected_and_the_sweep_goes_on(tmp_path):
    cli, _ = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    locked = claims_file(drop / "locked.csv", "LOCK")
    locked.chmod(0)
    claims_file(drop / "open.csv", "OPEN")
    result = cli("watch", drop, "--once", "--settle", "0")
    assert "refused locked.csv: cannot be read (Permission denied)" in result.out
    assert "accepted open.csv" in result.out
    assert (drop / "rejected" / "locked.csv.ack.json").exists()
