"""The drop folder: `adjudicate watch DIR` and the sweep behind it (worker.intake.sweep)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from conftest import ADJUDICATE
from hostile.make_corpus import ACCEPTED_LINES, REFUSALS
from test_intake_cli import HEADER, LIMITS_ENV, prepared
from worker import intake
from worker.bootstrap import build

HOSTILE = Path(__file__).parent / "hostile"
IGNORED = (".hidden.csv", "upload.csv.part", "export.tmp", "~$claims.csv", "claims.csv.crdownload")


def claims_file(path: Path, tag: str, rows: int = 2) -> Path:
    lines = [f"{tag}-{i},xyz0000a,P1,,OR526,NA,2026-05-{i + 1:02d},09:00,13:00,4," for i in range(rows)]
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def batches(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT batch_id, file_name, claims FROM batches"))


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_watch_once_sorts_hostile_and_good_files_with_an_acknowledgement_beside_each(tmp_path):
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    for folder in ("refused", "accepted"):
        for source in (HOSTILE / folder).iterdir():
            shutil.copy(source, drop / source.name)
    for name in IGNORED:
        claims_file(drop / name, "IGN")
    (drop / "archive").mkdir()
    claims_file(drop / "archive" / "old.csv", "OLD")

    result = cli("watch", drop, "--once", "--settle", "0", env=LIMITS_ENV)

    lines = result.out.splitlines()
    assert len(lines) == len(REFUSALS) + len(ACCEPTED_LINES)
    for name, reason in REFUSALS.items():
        assert (drop / "rejected" / name).read_bytes() == (HOSTILE / "refused" / name).read_bytes()
        ack = json.loads((drop / "rejected" / f"{name}.ack.json").read_text())
        assert ack["result"] == "refused" and ack["batch_id"] is None and reason in ack["error"], name
        assert any(line.startswith(f"refused {name}: ") and reason in line for line in lines), name
    stored = {file_name: batch_id for batch_id, file_name, _ in batches(db)}
    for name, claim_lines in ACCEPTED_LINES.items():
        assert (drop / "accepted" / name).read_bytes() == (HOSTILE / "accepted" / name).read_bytes()
        ack = json.loads((drop / "accepted" / f"{name}.ack.json").read_text())
        assert (ack["result"], ack["file"], ack["status"], ack["claims"], ack["accepted"], ack["rejected"]) == \
            ("accepted", name, "queued", 3, 3, 0), name
        assert ack["batch_id"] == stored[name]
        assert any(line.startswith(f"accepted {name}: batch {ack['batch_id']}") for line in lines)
    # Unfinished or hidden names, and sub-folders, are left alone; nothing is left half-taken.
    assert names(drop) == {*IGNORED, "archive", "accepted", "rejected", ".processing"}
    assert names(drop / ".processing") == set()
    assert len(stored) == len(ACCEPTED_LINES)


def test_two_watchers_at_the_same_moment_submit_each_file_once(tmp_path):
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    good = [claims_file(drop / f"agency{i}.csv", f"A{i}").name for i in range(8)]
    bad = ["empty.csv", "nul_byte.csv"]
    for name in bad:
        shutil.copy(HOSTILE / "refused" / name, drop / name)
    command = [str(ADJUDICATE), "--db", cli.db, "watch", str(drop), "--once", "--settle", "0"]
    watchers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in watchers]
    assert [w.returncode for w in watchers] == [0, 0], outputs
    lines = [line for out, _ in outputs for line in out.splitlines()]
    for name in good + bad:
        assert len([line for line in lines if line.split(" ", 2)[1] == f"{name}:"]) == 1, (name, lines)
    assert names(drop / "accepted") == {*good, *(f"{n}.ack.json" for n in good)}
    assert names(drop / "rejected") == {*bad, *(f"{n}.ack.json" for n in bad)}
    assert sorted(file_name for _, file_name, _ in batches(db)) == sorted(good)


def test_sweeps_racing_in_threads_take_each_file_once(tmp_path):
    _, db = prepared(tmp_path)
    url = f"sqlite:///{db}"
    drop = tmp_path / "drop"
    drop.mkdir()
    apps = [build(database_url=url), build(database_url=url)]  # two engines, as two workers would have
    expected: list[str] = []
    for round_number in range(3):
        files = [claims_file(drop / f"r{round_number}-{i}.csv", f"R{round_number}x{i}").name for i in range(5)]
        files.append(shutil.copy(HOSTILE / "refused" / "ragged_row.csv", drop / f"r{round_number}-bad.csv").name)
        expected += files[:-1]
        start = threading.Barrier(2)
        results: list[list[intake.SweepResult]] = [[], []]
        errors: list[BaseException] = []

        def sweeper(index: int) -> None:
            try:
                start.wait()
                results[index] = intake.sweep(apps[index], drop, settle_seconds=0)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=sweeper, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        taken = sorted(r.file for rs in results for r in rs)
        assert taken == sorted(files)  # every file exactly once, by one sweep or the other
        assert {r.result for rs in results for r in rs if r.file.endswith("bad.csv")} == {"refused"}
    assert sorted(file_name for _, file_name, _ in batches(db)) == sorted(expected)
    assert names(drop / ".processing") == set()
    assert not any(".2." in name for name in names(drop / "accepted") | names(drop / "rejected"))


def test_a_file_still_being_written_is_not_taken(tmp_path):
    _, db = prepared(tmp_path)
    app = build(database_url=f"sqlite:///{db}")
    drop = tmp_path / "drop"
    drop.mkdir()
    growing = drop / "growing.csv"
    growing.write_text(HEADER + "\n")
    stop = threading.Event()

    def writer() -> None:
        with open(growing, "a") as out:
            for i in range(40):
                out.write(f"G-{i},xyz0000a,P1,,OR526,NA,2026-06-01,09:00,10:00,1,\n")
                out.flush()
                if stop.wait(0.04):
                    return

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        assert intake.sweep(app, drop, settle_seconds=0.8) == []
        time.sleep(0.1)
    thread.join()
    assert intake.sweep(app, drop, settle_seconds=0.8) == []  # written just now: still settling
    time.sleep(1.0)
    [result] = intake.sweep(app, drop, settle_seconds=0.8)
    assert result.result == "accepted" and result.acknowledgement["claims"] == 40  # the whole file, once

    # The usual upload convention: written as NAME.part, then renamed when complete.
    part = claims_file(drop / "upload.csv.part", "U")
    assert intake.sweep(app, drop, settle_seconds=0) == []
    part.rename(drop / "upload.csv")
    assert [r.file for r in intake.sweep(app, drop, settle_seconds=0)] == ["upload.csv"]


def test_same_name_again_is_kept_beside_the_first_and_same_content_is_one_batch(tmp_path):
    _, db = prepared(tmp_path)
    app = build(database_url=f"sqlite:///{db}")
    drop = tmp_path / "drop"
    drop.mkdir()
    claims_file(drop / "claims.csv", "N1")
    [first] = intake.sweep(app, drop, settle_seconds=0)
    claims_file(drop / "claims.csv", "N2")  # tomorrow's file, same name
    [second] = intake.sweep(app, drop, settle_seconds=0)
    claims_file(drop / "claims.csv", "N2")  # sent again by mistake: same content
    [third] = intake.sweep(app, drop, settle_seconds=0)
    assert first.batch_id != second.batch_id == third.batch_id
    assert names(drop / "accepted") == {"claims.csv", "claims.csv.ack.json", "claims.2.csv", "claims.2.csv.ack.json",
                                        "claims.3.csv", "claims.3.csv.ack.json"}
    again = json.loads((drop / "accepted" / "claims.3.csv.ack.json").read_text())
    assert again["new"] is False and "already submitted" in again["note"]
    assert len(batches(db)) == 2


def test_a_file_left_by_a_crashed_sweep_is_recovered_and_a_database_error_loses_nothing(tmp_path):
    _, db = prepared(tmp_path)
    app = build(database_url=f"sqlite:///{db}")
    drop = tmp_path / "drop"
    drop.mkdir()
    # A sweep that died after claiming its file: its process is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = drop / ".processing" / f"{socket.gethostname()}~{dead.pid}~deadbeef0000"
    left.mkdir(parents=True)
    claims_file(left / "orphan.csv", "O")
    [result] = intake.sweep(app, drop, settle_seconds=0)
    assert (result.file, result.result) == ("orphan.csv", "accepted")
    assert names(drop / ".processing") == set()

    # No schema: the database refuses, the file is not to blame: it stays in the folder for later.
    broken = build(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    claims_file(drop / "later.csv", "L")
    with pytest.raises(OperationalError):
        intake.sweep(broken, drop, settle_seconds=0)
    assert (drop / "later.csv").exists() and names(drop / ".processing") == set()
    assert not (drop / "rejected" / "later.csv").exists()


def test_watch_loops_until_stopped(tmp_path):
    cli, db = prepared(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    watcher = subprocess.Popen([str(ADJUDICATE), "--db", cli.db, "watch", str(drop), "--interval", "0.2",
                                "--settle", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **LIMITS_ENV})
    try:
        claims_file(drop / "first.csv", "F")
        deadline = time.monotonic() + 60
        while not (drop / "accepted" / "first.csv.ack.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        claims_file(drop / "second.csv", "S")
        while not (drop / "accepted" / "second.csv.ack.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.poll() is None  # still watching
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == ["accepted first.csv", "accepted second.csv"]
    assert len(batches(db)) == 2
