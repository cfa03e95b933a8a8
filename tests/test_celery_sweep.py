"""The drop-folder sweep as a Celery beat task, on a real worker and the real Redis broker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from conftest import ADJUDICATE, FIXTURES, require_server


def test_a_worker_sweeps_the_drop_folder_on_its_schedule(ready, tmp_path):
    require_server("Redis", "127.0.0.1", 6379)
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(FIXTURES / "worked_example" / "claims.csv", drop / "claims.csv")
    old = time.time() - 60
    os.utime(drop / "claims.csv", (old, old))
    env = {**os.environ, "ADJUDICATION_DROP_FOLDER": str(drop), "ADJUDICATION_DROP_INTERVAL_SECONDS": "1",
           "ADJUDICATION_DROP_SETTLE_SECONDS": "0"}
    broker = "redis://127.0.0.1:6379/11"
    worker = subprocess.Popen([str(ADJUDICATE), "--db", ready.db, "--broker", broker, "worker", "--concurrency", "1"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (drop / "accepted" / "claims.csv").exists():
            time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        log = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert (drop / "accepted" / "claims.csv").exists(), log[-3000:]
    assert (drop / "accepted" / "claims.csv.ack.json").exists()
    assert "6 claims" in ready("run").out
