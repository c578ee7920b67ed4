"""Hostile uploads against a running workstation: server memory and /api/info latency while they are decoded.

    python benchmarks/serve_attack.py [--model NAME|PATH] [--info-interval 0.02]

Starts ``radscribe serve`` (the embedded model unless --model) on a fresh data folder, waits until it
is idle, then for each attack uploads the file once while (a) a sampler reads the resident memory
of the server process and of its whole process tree (the image decoder is a child process) every
10 ms and (b) a client calls ``GET /api/info`` every ``--info-interval`` seconds. Attacks:

- ``dicom_bomb``: a deflated multi-frame DICOM, 24 frames x 4000 x 4000 x 16 bit (768 MB of pixels)
  in a file of about 1 MB;
- ``png_8000``: an 8000 x 8000 grayscale PNG (64 M pixels, the largest size the reader accepts).

Reports per attack: the answer (status, reason), upload seconds, peak resident memory above idle of
the server process and of the process tree, and /api/info p50/p99/max latency during the upload.
The machine is shared with other jobs: latencies include their load. Writes
benchmarks/results/serve_attack.json.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from provenance import write_result  # noqa: E402
from serve_load import percentile, start  # noqa: E402
from test_serve_security import deflated_multiframe_dicom  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        return 0


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def attack(base: str, pid: int, name: str, data: bytes, interval: float) -> dict:
    idle_server, idle_tree = rss(pid), sum(rss(p) for p in tree(pid))
    done = threading.Event()
    peaks = {"server": idle_server, "tree": idle_tree}
    latencies: list[float] = []

    def sample() -> None:
        while not done.is_set():
            peaks["server"] = max(peaks["server"], rss(pid))
            peaks["tree"] = max(peaks["tree"], sum(rss(p) for p in tree(pid)))
            time.sleep(0.01)

    def ping() -> None:
        with httpx.Client(timeout=60) as client:
            while not done.is_set():
                began = time.perf_counter()
                client.get(f"{base}/api/info").raise_for_status()
                latencies.append(time.perf_counter() - began)
                time.sleep(interval)

    threads = [threading.Thread(target=sample), threading.Thread(target=ping)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    began = time.perf_counter()
    response = httpx.post(f"{base}/api/studies", files=[("files", (name, data))], timeout=600)
    seconds = time.perf_counter() - began
    time.sleep(0.3)
    done.set()
    for thread in threads:
        thread.join()
    row = {
        "attack": name, "file_bytes": len(data), "status": response.status_code,
        "answer": response.json().get("detail", "stored") if response.status_code != 201 else "stored",
        "upload_s": round(seconds, 2),
        "server_peak_above_idle_mb": round((peaks["server"] - idle_server) / 2**20, 1),
        "process_tree_peak_above_idle_mb": round((peaks["tree"] - idle_tree) / 2**20, 1),
        "server_idle_mb": round(idle_server / 2**20, 1),
        "info_requests": len(latencies),
        "info_p50_ms": round(1000 * statistics.median(latencies), 1),
        "info_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "info_max_ms": round(1000 * max(latencies), 1),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded default model")
    parser.add_argument("--info-interval", type=float, default=0.02)
    args = parser.parse_args()
    png = io.BytesIO()
    Image.new("L", (8000, 8000), 90).save(png, format="PNG")
    attacks = [("dicom_bomb.dcm", deflated_multiframe_dicom(24, 4000)), ("png_8000.png", png.getvalue())]
    with tempfile.TemporaryDirectory() as folder:
        process, base, _ = start(Path(folder) / "data", args.model, 8)
        try:
            httpx.post(f"{base}/api/studies", files=[("files", ("warm.png", _small_png()))], timeout=120)  # decoder started
            time.sleep(2.0)
            rows = [attack(base, process.pid, name, data, args.info_interval) for name, data in attacks]
            alive = httpx.get(f"{base}/api/info", timeout=10).status_code == 200
        finally:
            process.kill()
            process.wait()
    write_result("serve_attack", {
        "benchmark": "serve_attack", "model": args.model or "embedded default model", "attacks": rows, "server_alive_after": alive,
        "goal": "server peak under 300 MB above idle; /api/info p99 under 100 ms",
        "machine_note": f"shared 2-core machine (load average {os.getloadavg()[0]:.1f} at the end); latencies include other jobs' load",
    })


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 100).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    main()
