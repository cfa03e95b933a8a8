"""Bounded load test of the HTTP service: concurrent submitters posting claim files, one big file.

    uv run python ops/load_http.py --db sqlite:///load.db --submitters 20 --files 200 --big-mb 200
    uv run python ops/load_http.py --db postgresql://postgres@127.0.0.1:5432/load ...   (an empty database)

It sets the database up (schema, providers, one submitter per provider), starts `adjudicate serve`
on a free local port, and lets N submitters post M files each at the same time: mostly new files,
some the same content again (answered 200), some broken (422); meanwhile one more submitter posts
one big file, and the service's resident memory is sampled (/proc) while that file streams in.
It checks that nothing is lost or doubled (the batches and claims stored are exactly those
accepted), that every answer is the one documented for that kind of file, and prints one JSON
report (files/s, claims/s, peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADJUDICATE = Path(sys.executable).with_name("adjudicate")
HEADER = "claim_id,client_prime,provider_id,staff_id,procedure_code,modifier,service_date,start_time,end_time,units,billed_rate\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`adjudicate serve` in a subprocess on a free port; its stderr goes to a file (the logs)."""

    def __init__(self, db: str, log: Path, env: dict | None = None, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._err = open(log, "wb")
        self.process = subprocess.Popen(
            [str(ADJUDICATE), "--db", db, "serve", "--port", str(self.port), "--workers", str(workers)],
            stdout=self._err, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def rss_bytes(self) -> int:
        """Resident memory of the service's process (and its workers' processes, if any)."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except FileNotFoundError:
                pass
        return total

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._err.close()
        return self.log.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def claim_lines(prefix: str, provider: str, count: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        hour = rng.randrange(0, 20)
        rows.append(f"{prefix}-{i},x{rng.randrange(10**6):07d}a,{provider},,OR526,NA,2026-03-{rng.randrange(1, 29):02d},"
                    f"{hour:02d}:00,{hour + 2:02d}:00,2,\n")
    return "".join(rows)


def write_big_file(path: Path, provider: str, size: int) -> int:
    """A claim file of about `size` bytes, written in pieces; returns its claim count."""
    claims = 0
    block = 50_000
    with open(path, "w", encoding="utf-8") as out:
        out.write(HEADER)
        while out.tell() < size:
            out.write(claim_lines(f"BIG{claims}", provider, block, claims))
            claims += block
    return claims


def setup(db: str, submitters: int, work: Path) -> dict[str, str]:
    """Schema, providers L0..Ln (Ln for the big file), an operator, one submitter per provider; the
    tokens. Done in-process, through the use cases the commands call."""
    from worker import access, service
    from worker import submitters as registry
    from worker.store.database import make_engine

    engine = make_engine(db)
    service.upgrade_schema(engine)
    ref = work / "reference"
    ref.mkdir(exist_ok=True)
    (ref / "providers.csv").write_text("provider_id,name,kind\n" + "".join(
        f"L{i},Load provider {i},agency\n" for i in range(submitters + 1)))
    service.load_reference(engine, ref)
    access.bootstrap_admin(engine, "load-admin")
    tokens = {f"L{i}": registry.add(engine, f"load{i}", [f"L{i}"], "load-admin") for i in range(submitters + 1)}
    engine.dispose()
    return tokens


def plan(submitter: int, files: int, claims_per_file: int) -> list[tuple[str, str, str]]:
    """(kind, name, content) of each file a submitter posts: of every ten, the 10th again the content
    of the one before (same), the 5th broken (a row with a field too many), the others new."""
    provider = f"L{submitter}"
    posts = []
    for j in range(files):
        if j % 10 == 9:
            kind, name, content = "same", posts[-1][1], posts[-1][2]
        elif j % 10 == 4:
            kind, name = "broken", f"s{submitter}-f{j}.csv"
            content = HEADER + claim_lines(f"S{submitter}F{j}", provider, 3, j) + "a,b,c,d,e,f,g,h,i,j,k,l\n"
        else:
            kind, name = "new", f"s{submitter}-f{j}.csv"
            content = HEADER + claim_lines(f"S{submitter}F{j}", provider, claims_per_file, submitter * 100_000 + j)
        posts.append((kind, name, content))
    return posts


EXPECTED = {"new": {201}, "same": {200}, "broken": {422}, "big": {201}}


def run_load(db: str, submitters: int, files: int, claims_per_file: int, big_bytes: int, work: Path,
             workers: int = 1) -> dict:
    tokens = setup(db, submitters, work)
    big = work / "big.csv"
    big_claims = write_big_file(big, f"L{submitters}", big_bytes) if big_bytes else 0
    service = Service(db, work / "service.log", workers=workers)
    answers: list[tuple[str, int, str | None, int]] = []  # kind, status, batch id, claims
    lock = threading.Lock()
    streaming = threading.Event()
    samples: list[int] = []  # while the big file streams in
    overall: list[int] = []  # all along (reading a big file once it is in takes more: it is `submit`'s)
    try:
        def post_all(i: int) -> None:
            with httpx.Client(base_url=service.url, timeout=600,
                              headers={"Authorization": f"Bearer {tokens[f'L{i}']}"}) as client:
                for kind, name, content in plan(i, files, claims_per_file):
                    answer = client.post("/v1/claim-files", content=content.encode(),
                                         headers={"Claim-File-Name": name, "Content-Type": "text/csv"})
                    body = answer.json()
                    with lock:
                        answers.append((kind, answer.status_code, body.get("batch_id"),
                                        body.get("acknowledgement", {}).get("claims", 0)))

        def post_big() -> None:
            with httpx.Client(base_url=service.url, timeout=3600,
                              headers={"Authorization": f"Bearer {tokens[f'L{submitters}']}"}) as client:
                with open(big, "rb") as handle:
                    def body():
                        streaming.set()
                        while chunk := handle.read(1 << 16):
                            yield chunk
                        streaming.clear()
                    answer = client.post("/v1/claim-files", content=body(),
                                         headers={"Claim-File-Name": "big.csv", "Content-Type": "text/csv"})
                with lock:
                    answers.append(("big", answer.status_code, answer.json().get("batch_id"), big_claims))

        def sample() -> None:
            while not done.is_set():
                rss = service.rss_bytes()
                overall.append(rss)
                if streaming.is_set():
                    samples.append(rss)
                time.sleep(0.02)

        done = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=submitters + 1) as pool:
            jobs = [pool.submit(post_all, i) for i in range(submitters)]
            if big_bytes:
                jobs.append(pool.submit(post_big))
            for job in jobs:
                job.result()
        elapsed = time.monotonic() - started
        done.set()
        peak_after = service.rss_bytes()
    finally:
        log = service.stop()
    unexpected = [(kind, status) for kind, status, _, _ in answers if status not in EXPECTED[kind]]
    accepted = {batch: claims for kind, status, batch, claims in answers if status == 201}
    stored = stored_batches(db)
    new_files = sum(1 for kind, status, _, _ in answers if status == 201)
    report = {
        "db": db.split("://")[0], "submitters": submitters, "files_each": files, "posts": len(answers),
        "big_file_bytes": big.stat().st_size if big_bytes else 0, "big_file_claims": big_claims,
        "seconds": round(elapsed, 2), "files_per_s": round(len(answers) / elapsed, 1),
        "claims_per_s": round(sum(accepted.values()) / elapsed),
        "unexpected_answers": unexpected[:20],
        "answers_by_code": dict(sorted(Counter(status for _, status, _, _ in answers).items())),
        "lost_or_doubled": stored != accepted,
        "batches_accepted": new_files, "batches_stored": len(stored),
        "claims_accepted": sum(accepted.values()), "claims_stored": sum(stored.values()),
        "peak_rss_mb_while_big_file_streams": round(max(samples, default=0) / 2**20, 1),
        "rss_samples": len(samples),
        "peak_rss_mb_overall": round(max(overall, default=0) / 2**20, 1),
        "rss_mb_at_end": round(peak_after / 2**20, 1),
        "log_lines": len(log.splitlines()),
    }
    return report


def stored_batches(db: str) -> dict[str, int]:
    from sqlalchemy import select

    from worker.store import schema as t
    from worker.store.database import make_engine

    engine = make_engine(db)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(t.batches.c.batch_id, t.batches.c.claims)).all())
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="an empty database (SQLite file or PostgreSQL)")
    parser.add_argument("--submitters", type=int, default=20)
    parser.add_argument("--files", type=int, default=200, help="files per submitter")
    parser.add_argument("--claims-per-file", type=int, default=200)
    parser.add_argument("--big-mb", type=float, default=200, help="the big file's size in MB (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load-http-") as work:
        report = run_load(args.db, args.submitters, args.files, args.claims_per_file, int(args.big_mb * 2**20),
                          Path(work), args.workers)
    print(json.dumps(report, indent=1))
    ok = not report["unexpected_answers"] and not report["lost_or_doubled"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
