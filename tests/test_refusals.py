"""Clear refusals, not internal errors: a broken or inconsistent rules file (exit 1, naming the file
and the problem) and a full disk (exit 3, service unavailable), each on one line."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, Cli

CLAIMS = FIXTURES / "worked_example" / "claims.csv"
DEFAULT_RULES = (Path(__file__).resolve().parent.parent / "adjudication" / "default_rules.toml").read_text()


def one_line(result, code: int = 1) -> str:
    lines = result.err.strip().splitlines()
    assert result.code == code and len(lines) == 1 and lines[0].startswith("error: "), result
    assert "internal" not in lines[0] and "Traceback" not in result.err
    return lines[0]


@pytest.mark.parametrize("content, problem", [
    ("waivable = [", "not valid TOML (Invalid value (at end of document))"),
    ("speed = 3\n" + DEFAULT_RULES, "speed: Extra inputs are not permitted"),
    (DEFAULT_RULES.replace('waivable = ["OVERLAP_DUPLICATE"', 'waivable = ["NO_ACTIVE_PLAN", "OVERLAP_DUPLICATE"'),
     "waivable lists NO_ACTIVE_PLAN, which cannot be waived (only TIMELY_FILING, MONTHLY_HOURS_EXCEEDED, DUPLICATE_SERVICE, "
     "OVERLAP_DUPLICATE, OVERLAP_SAME_PROVIDER)"),
    (DEFAULT_RULES.replace('"TIMELY_FILING"]', '"TIMELY_FILING", "NO_CM_ENROLLMENT", '
                           '"NO_ACTIVE_SPA"]'), "waivable lists NO_CM_ENROLLMENT, NO_ACTIVE_SPA, which cannot be waived"),
    (DEFAULT_RULES.replace('"TIMELY_FILING"]', '"TIMELY_FILING", "NO_SUCH_EDIT"]'),
     "waivable lists NO_SUCH_EDIT, which cannot be waived"),
    (DEFAULT_RULES.replace("timely_filing_days = 365", "timely_filing_days = 99999999999999999999"),
     "timely_filing_days: Input should be less than or equal to 36525"),
    (DEFAULT_RULES.replace('INVALID_RECORD = "16"\n', 'NO_SUCH_CODE = "16"\n'), "carc names unknown reason codes NO_SUCH_CODE"),
    (DEFAULT_RULES.replace('first = "OR526/NA"', 'first = "OR526"'), "allowed_overlaps.0.first: 'OR526' is not "
                                                                       "PROCEDURE/MODIFIER"),
    ("a = " + "[" * 5000 + "]" * 5000, "rules file"),
    (None, "cannot be read (No such file or directory)"),
])
def test_a_broken_or_inconsistent_rules_file_is_named_with_its_problem(ready, tmp_path, content, problem):
    rules = tmp_path / "rules.toml"
    if content is not None:
        rules.write_text(content)
    line = one_line(ready("--rules", rules, "submit", CLAIMS, ok=False))
    assert line.startswith(f"error: rules file {rules}: ") and problem in line, line


@pytest.fixture
def tiny_disk(tmp_path):
    """A 6 MiB file system (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_service_unavailable_with_exit_code_3(tiny_disk, tmp_path):
    cli = Cli(f"sqlite:///{tiny_disk / 'full.db'}", tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    big = tmp_path / "big.csv"
    lines = ["claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,"
             "units,billed_rate"]
    lines += [f"{secrets.token_hex(30)},xyz0000a,P1,{secrets.token_hex(20)},OR526,NA,2026-03-02,09:00,13:00,4,"
              for _ in range(120_000)]  # random ids: about 15 MB that no compression shrinks below 6 MiB
    big.write_text("\n".join(lines) + "\n")
    full = cli("submit", big, ok=False)
    assert one_line(full, 3) == "error: unavailable: the disk is full (no space left on device)"
    # An export written to the full disk (the database elsewhere): the same.
    elsewhere = Cli(f"sqlite:///{tmp_path / 'ok.db'}", tmp_path)
    elsewhere("db", "upgrade")
    elsewhere("reference", "load", FIXTURES / "worked_example")
    elsewhere("submit", CLAIMS)
    elsewhere("run")
    filler = tiny_disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(os.urandom(65536))
        except OSError:
            pass
    written = elsewhere("outcomes", "--output", tiny_disk / "out.csv", ok=False)
    assert one_line(written, 3) == "error: unavailable: the disk is full (no space left on device)"


def test_a_refusal_echoing_a_typed_id_stays_one_short_line(ready):
    """An id typed with a line break (or a Unicode line separator) never starts a line of its own in
    the refusal, and a huge one is cut short."""
    assert one_line(ready("ack", "B1\nerror: forged", ok=False)) == "error: no batch B1\\nerror: forged"
    assert one_line(ready("withdraw", "B1\u2028x\r", "--note", "n", ok=False)) == "error: no batch B1\\u2028x\\r"
    huge = one_line(ready("outcomes", "--batch", "B" * 100_000, ok=False))
    assert huge == f"error: no batch {'B' * 1991}... (100009 characters)"


def test_a_full_disk_under_the_drop_folder_is_unavailable_and_loses_no_file(tiny_disk, tmp_path):
    """The acknowledgement cannot be written: exit 3 in one line, the file back in the folder, no
    empty acknowledgement left behind; once there is room, the next sweep finishes it (the batch
    stored once)."""
    cli = Cli(f"sqlite:///{tmp_path / 'ok.db'}", tmp_path)
    cli("db", "upgrade")
    cli("reference", "load", FIXTURES / "worked_example")
    drop = tiny_disk / "drop"
    for sub in ("", "accepted", "rejected", ".processing"):
        (drop / sub).mkdir()
    (drop / "claims.csv").write_bytes(CLAIMS.read_bytes())
    filler = tiny_disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(os.urandom(4096))
        except OSError:
            pass
    full = cli("watch", drop, "--once", "--settle", "0", ok=False)
    assert one_line(full, 3) == "error: unavailable: the disk is full (no space left on device)" and full.out == ""
    assert sorted(p.name for p in drop.rglob("*")) == [".processing", "accepted", "claims.csv", "rejected"]
    filler.unlink()
    batch = cli("watch", drop, "--once", "--settle", "0").out
    assert batch.startswith("accepted claims.csv: ") and batch.rstrip().endswith("-> accepted/claims.csv")
    assert sorted(p.name for p in (drop / "accepted").iterdir()) == ["claims.csv", "claims.csv.ack.json"]
    with sqlite3.connect(tmp_path / "ok.db") as conn:
        assert conn.execute("SELECT file_name, status FROM batches").fetchall() == [("claims.csv", "queued")]
