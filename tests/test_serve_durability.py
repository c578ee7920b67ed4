"""A real server process killed with SIGKILL while saving: every acknowledged save survives, the db is intact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from radscribe.serve import Storage  # noqa: E402

SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, port: int, model: str | None = "radscribe-tiny-test", token: str | None = None) -> subprocess.Popen:
    """A real server process; ``model=None`` serves the embedded default model; ``token`` for a folder with accounts."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    command = [sys.executable, "-m", "radscribe.cli.main", "serve", *(["--model", model] if model else []),
               "--data-dir", str(data_dir), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 600  # a busy shared machine (or a niced test run) imports torch slowly
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=1, headers=headers).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start within 600 s")


def test_sigkill_during_saves_loses_no_acknowledged_save(tmp_path):
    port = free_port()
    server = start_server(tmp_path / "data", port)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[tuple[str, int, str]] = []   # (study, version, impression)
    failures: list[str] = []
    try:
        studies = []
        for _ in range(3):
            response = httpx.post(f"{base}/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))], timeout=30)
            studies.append(response.json()["id"])

        def writer(study_id: str) -> None:
            etag = '"0"'
            with httpx.Client(timeout=10) as client:
                for number in range(10_000):
                    impression = f"save {number} of {study_id}"
                    try:
                        response = client.put(f"{base}/api/studies/{study_id}/report", headers={"If-Match": etag},
                                              json={"fields": {"technique.projection": "AP"}, "impression": impression})
                    except httpx.HTTPError:
                        return  # the server is gone: this save was never acknowledged
                    if response.status_code != 200:
                        failures.append(response.text)
                        return
                    etag = response.headers["etag"]
                    acknowledged.append((study_id, response.json()["version"], impression))

        threads = [threading.Thread(target=writer, args=(s,)) for s in studies]
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while len(acknowledged) < 60 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
    assert not failures, failures[:3]
    assert len(acknowledged) >= 60, "too few saves before the kill to mean anything"

    storage = Storage(tmp_path / "data")
    assert storage.integrity_check() == "ok"
    for study_id in {s for s, _, _ in acknowledged}:
        stored = storage.edits(study_id)
        kept = {entry["document"]["impression"] for entry in stored}
        mine = [a for a in acknowledged if a[0] == study_id]
        assert {impression for _, _, impression in mine} <= kept
        assert max(version for _, version, _ in mine) <= len(stored)
        assert all(entry["document"]["fields"] == {"technique.projection": "AP"} for entry in stored)  # no torn rows
    storage.close()


def test_edit_log_is_append_only_and_images_are_content_addressed(tmp_path):
    import hashlib
    import sqlite3

    storage = Storage(tmp_path / "data")
    data = SAMPLE.read_bytes()
    image = storage.add_image(data, "jpeg", 10, 20)
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.images.path(image.sha256).read_bytes() == data
    assert storage.add_image(data, "jpeg", 10, 20).sha256 == image.sha256  # stored once
    with pytest.raises(ValueError):
        storage.images.path("../../etc/passwd")
    study = storage.create_study("spine-ap-alignment", [image.sha256])
    first = storage.save_edit(study, "local", {"impression": "one"}, '"0"')
    storage.save_edit(study, "local", {"impression": "two"}, first["etag"])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        with storage.transaction() as db:
            db.execute("UPDATE edits SET document = '{}' WHERE id = ?", (first["edit_id"],))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        with storage.transaction() as db:
            db.execute("DELETE FROM edits")
    assert [e["document"]["impression"] for e in storage.edits(study)] == ["one", "two"]
    storage.close()
