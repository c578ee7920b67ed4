"""Load on the reporting workstation: drafts per second and latency under concurrency, overload, kill -9.

    python benchmarks/serve_load.py [--model PATH|NAME] [--queue-size 8] [--burst 100]   # default: the embedded model

Starts ``radscribe serve`` as a subprocess with the model, uploads a bundled CADMA image, then:

1. drafts at concurrency 1, 4 and 16 (2 x concurrency requests, at least 4; clients honour 503 +
   Retry-After by waiting and retrying, so every request completes): completed drafts per second,
   p50/p95 latency (including time spent retrying), 503 answers seen;
2. a burst of ``--burst`` simultaneous drafts with no retry: how many got 200, 503, anything else,
   and whether the server still answers afterwards;
3. kill -9 during saves: writers save reports as fast as they can, the server is SIGKILLed, the data
   folder is reopened: acknowledged saves found / lost, SQLite integrity_check.

The model runs one request at a time (one worker thread), so drafts/s is bounded by one draft's
time; concurrency only adds queueing. The machine is shared with other jobs (the JSON records the
load average). Each save sends If-Match (the server refuses blind overwrites). The previous run's
concurrency table is kept under ``previous`` for comparison. Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from provenance import write_result

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sorted((ROOT / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
RESULTS = ROOT / "benchmarks" / "results" / "serve_load.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(data_dir: Path, model: str, queue_size: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    command = [sys.executable, "-m", "radscribe.cli.main", "serve", *(["--model", model] if model else []), "--data-dir", str(data_dir),
               "--port", str(port), "--queue-size", str(queue_size)]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    while time.perf_counter() - began < 600:  # a busy shared machine imports torch slowly
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-2000:])
        try:
            if httpx.get(f"{base}/api/info", timeout=1).status_code == 200:
                return process, base, time.perf_counter() - began
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start in 600 s")


def upload(base: str) -> str:
    response = httpx.post(f"{base}/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))], timeout=60)
    response.raise_for_status()
    return response.json()["id"]


def draft_with_retry(base: str, study_id: str) -> tuple[float, int]:
    """(seconds until a 200, 503 answers on the way)."""
    began, refused = time.perf_counter(), 0
    with httpx.Client(timeout=600) as client:
        while True:
            response = client.post(f"{base}/api/studies/{study_id}/draft")
            if response.status_code == 200:
                return time.perf_counter() - began, refused
            if response.status_code != 503:
                raise RuntimeError(f"draft answered {response.status_code}: {response.text[:300]}")
            refused += 1
            time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def concurrency_level(base: str, study_id: str, concurrency: int) -> dict:
    requests = max(4, 2 * concurrency)
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda _: draft_with_retry(base, study_id), range(requests)))
    elapsed = time.perf_counter() - began
    latencies = [seconds for seconds, _ in outcomes]
    row = {
        "concurrency": concurrency, "requests": requests, "seconds": round(elapsed, 2),
        "drafts_per_s": round(requests / elapsed, 3),
        "latency_p50_s": round(statistics.median(latencies), 2), "latency_p95_s": round(percentile(latencies, 0.95), 2),
        "answers_503_retried": sum(refused for _, refused in outcomes),
    }
    print(json.dumps(row), flush=True)
    return row


def burst(base: str, study_id: str, size: int) -> dict:
    barrier = threading.Barrier(size)

    def one(_: int) -> int:
        with httpx.Client(timeout=900) as client:
            barrier.wait()
            try:
                return client.post(f"{base}/api/studies/{study_id}/draft").status_code
            except httpx.HTTPError:
                return -1

    began = time.perf_counter()
    with ThreadPoolExecutor(size) as pool:
        codes = list(pool.map(one, range(size)))
    alive = httpx.get(f"{base}/api/info", timeout=10).status_code == 200
    row = {
        "requests": size, "ok_200": codes.count(200), "busy_503": codes.count(503),
        "other": len(codes) - codes.count(200) - codes.count(503), "seconds": round(time.perf_counter() - began, 2),
        "server_alive_after": alive,
    }
    print(json.dumps(row), flush=True)
    return row


def kill_during_saves(model: str, writers: int = 4, seconds: float = 3.0) -> dict:
    from radscribe.serve import Storage

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        process, base, _ = start(data, model, 8)
        studies = [upload(base) for _ in range(writers)]
        acknowledged: list[tuple[str, str]] = []
        stop = threading.Event()

        def writer(study_id: str) -> None:
            etag = '"0"'
            with httpx.Client(timeout=10) as client:
                number = 0
                while not stop.is_set():
                    text = f"save {number}"
                    try:
                        response = client.put(f"{base}/api/studies/{study_id}/report", json={"fields": {}, "impression": text},
                                              headers={"If-Match": etag})
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        etag = response.headers["etag"]
                        acknowledged.append((study_id, text))
                    number += 1

        threads = [threading.Thread(target=writer, args=(s,)) for s in studies]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in threads:
            thread.join()
        storage = Storage(data)
        kept = {(s, e["document"]["impression"]) for s in studies for e in storage.edits(s)}
        row = {
            "writers": writers, "acknowledged_saves": len(acknowledged), "present_after_restart": len(kept),
            "acknowledged_lost": sum(item not in kept for item in acknowledged), "integrity_check": storage.integrity_check(),
            "saves_per_s_before_kill": round(len(acknowledged) / seconds, 1),
        }
        storage.close()
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded default model")
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, base, startup = start(Path(folder) / "data", args.model, args.queue_size)
        try:
            study_id = upload(base)
            draft_with_retry(base, study_id)  # warm-up: first-use costs (grammar, vocabulary) are not load
            levels = [concurrency_level(base, study_id, c) for c in args.levels]
            overload = burst(base, study_id, args.burst)
            crashed = process.poll() is not None
        finally:
            process.kill()
            process.wait()
    durability = kill_during_saves(args.model)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result = {
        "benchmark": "serve_load",
        "model": args.model or "embedded default model (radscribe-tiny-2026.11)",
        "queue_size": args.queue_size,
        "server_startup_s": round(startup, 2),
        "concurrency": levels,
        "burst": overload,
        "server_crashed": crashed,
        "kill9_during_saves": durability,
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "note": "shared CPU machine (other jobs running); one model worker thread"},
        "previous": {key: previous.get(key) for key in ("concurrency", "burst", "machine")} if previous else None,
    }
    write_result("serve_load", result)


if __name__ == "__main__":
    main()
