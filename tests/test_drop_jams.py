"""The drop folder never jams: a file that cannot be processed goes to rejected/ (or, when it was
stored, accepted/) with an acknowledgement under a safe name, and the sweep goes on."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ADJUDICATE, STAFF_ENV
from test_intake_watch import batches, claims_file, names
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


def test_what_cannot_be_read_even_by_root_goes_to_rejected_and_the_sweep_goes_on(tmp_path):
    """A file without read permission, a dangling link, a link to itself and a named pipe: each goes to
    rejected/ with its acknowledgement, unread (a link is never followed, a pipe never opened), and the
    file after them is accepted. Run as root (as CI does), the sweep runs without the capabilities that
    let root read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as a service confined by systemd's
    CapabilityBoundingSet would: the file is then as unreadable to it as to any other user."""
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    claims_file(drop / "locked.csv", "LOCK").chmod(0)
    (drop / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    (drop / "loop.csv").symlink_to("loop.csv")
    (drop / "secret.csv").symlink_to(claims_file(tmp_path / "elsewhere.csv", "ELSE"))  # readable, not followed
    os.mkfifo(drop / "pipe.csv")
    claims_file(drop / "open.csv", "OPEN")
    for age, name in enumerate(["locked.csv", "dangling.csv", "loop.csv", "secret.csv", "pipe.csv", "open.csv"]):
        os.utime(drop / name, (time.time() - 100 + age,) * 2, follow_symlinks=False)  # oldest first
    without_override = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] \
        if os.geteuid() == 0 else []
    done = subprocess.run([*without_override, str(ADJUDICATE), "--db", cli.db, "watch", drop, "--once",
                           "--settle", "0"], capture_output=True, text=True, env={**os.environ, **STAFF_ENV},
                          timeout=300)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "refused locked.csv: cannot be read (Permission denied) -> rejected/locked.csv",
        "refused dangling.csv: is a symbolic link, not a file: not read -> rejected/dangling.csv",
        "refused loop.csv: is a symbolic link, not a file: not read -> rejected/loop.csv",
        "refused secret.csv: is a symbolic link, not a file: not read -> rejected/secret.csv",
        "refused pipe.csv: is a named pipe, not a file: not read -> rejected/pipe.csv",
        f"accepted open.csv: batch {batches(db)[0][0]} (2 claims, 0 rejected) -> accepted/open.csv"]
    refused = ["locked.csv", "dangling.csv", "loop.csv", "secret.csv", "pipe.csv"]
    assert names(drop / "rejected") == {*refused, *(f"{n}.ack.json" for n in refused)}
    assert (drop / "rejected" / "secret.csv").is_symlink() and (drop / "rejected" / "pipe.csv").is_fifo()
    document = json.loads((drop / "rejected" / "pipe.csv.ack.json").read_text())
    assert document["result"] == "refused" and document["error"] == "pipe.csv: is a named pipe, not a file: not read"
    assert [file_name for _, file_name, _ in batches(db)] == ["open.csv"]
    assert names(drop) == {".processing", "accepted", "rejected"} and names(drop / ".processing") == set()


def test_a_file_gone_between_listing_and_reading_is_named_and_the_sweep_goes_on(tmp_path):
    """The sweep lists first.csv and second.csv, then takes first.csv; while it does, second.csv is
    removed. The sweep is held at that point without a test hook: its log (stderr, at --verbose) is
    a pipe the test has filled, so its first log line, written once first.csv is stored, blocks until
    the test has removed second.csv and reads the pipe."""
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    for age, name in enumerate(["first.csv", "second.csv", "third.csv"]):
        claims_file(drop / name, name[:3].upper())
        os.utime(drop / name, (time.time() - 100 + age,) * 2)
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    try:
        while True:
            os.write(writer, b"." * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(writer, True)
    sweep = subprocess.Popen([str(ADJUDICATE), "--db", cli.db, "--verbose", "watch", str(drop), "--once",
                              "--settle", "0"], stdout=subprocess.PIPE, stderr=writer, text=True,
                             env={**os.environ, **STAFF_ENV})
    os.close(writer)
    try:
        deadline = time.monotonic() + 120
        while "pipe_write" not in Path(f"/proc/{sweep.pid}/wchan").read_text():
            assert sweep.poll() is None and time.monotonic() < deadline, "the sweep never wrote its log"
            time.sleep(0.05)
        assert "first.csv" not in names(drop) and "second.csv" in names(drop)  # listed, first taken
        (drop / "second.csv").unlink()
        with os.fdopen(reader, "rb") as log:
            err = log.read().lstrip(b".").decode()
        out = sweep.communicate(timeout=120)[0]
    finally:
        sweep.kill()
    assert sweep.returncode == 0, err
    stored = batches(db)
    assert [file_name for _, file_name, _ in stored] in (["first.csv", "third.csv"], ["third.csv", "first.csv"])
    first, third = (next(b for b, f, _ in stored if f == name) for name in ("first.csv", "third.csv"))
    assert out.splitlines() == [
        f"accepted first.csv: batch {first} (2 claims, 0 rejected) -> accepted/first.csv",
        "refused second.csv: vanished before it could be read (removed or moved away after the sweep listed it); "
        "nothing stored",
        f"accepted third.csv: batch {third} (2 claims, 0 rejected) -> accepted/third.csv"]
    assert "second.csv vanished before it could be read" in err
    assert names(drop / "rejected") == {"second.csv.ack.json"}
    assert json.loads((drop / "rejected" / "second.csv.ack.json").read_text())["error"] == (
        "second.csv: vanished before it could be read (removed or moved away after the sweep listed it); "
        "nothing stored")
    assert names(drop) == {".processing", "accepted", "rejected"} and names(drop / ".processing") == set()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file immutable (chattr +i) needs root")
def test_a_file_that_cannot_be_moved_is_named_left_in_place_and_the_sweep_goes_on(tmp_path):
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    stuck = claims_file(drop / "stuck.csv", "STUCK")
    os.utime(stuck, (time.time() - 100,) * 2)
    claims_file(drop / "later.csv", "LATER")
    subprocess.run(["chattr", "+i", str(stuck)], check=True)  # not even root may rename it
    try:
        result = cli("watch", drop, "--once", "--settle", "0")
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert result.out.splitlines()[0] == (
        "refused stuck.csv: cannot be moved out of the folder (Operation not permitted): left where it is, not read")
    assert result.out.splitlines()[1].startswith("accepted later.csv: batch ")
    assert [file_name for _, file_name, _ in batches(db)] == ["later.csv"]
    assert names(drop) == {".processing", "accepted", "rejected", "stuck.csv"}
    assert names(drop / ".processing") == set() and names(drop / "rejected") == set()
