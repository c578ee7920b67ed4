"""The workstation attacked: each finding of the trust review (issue 15) as a test that fails on the old server.

DNS rebinding, cross-site requests, missing security headers, client-chosen signers, lost updates,
signatures not bound to the reviewed version, a tampered database exported as final, memory bombs,
the event loop blocked by decoding, unbounded report content and lists, a world-readable database.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from dicom_files import secondary_capture  # noqa: E402
from radscribe.serve import Accounts, ServeSettings, Storage, create_app  # noqa: E402
from radscribe.serve.uploads import RadiographCache  # noqa: E402

SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
BASE = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery"
DOCUMENT = {"fields": {"technique.projection": "AP", "vertebrae.count": 12, "vertebrae.levels": "T6-L5", "alignment.alignment": "normal",
                       "alignment.severity": "none"}, "impression": "Normal."}


@pytest.fixture(scope="module")
def reporter():
    from radscribe.infer import Reporter
    from radscribe.models import create_model

    return Reporter(create_model("radscribe-tiny-test"), grounding_boxes=4)


def workstation(tmp_path: Path, reporter, users: dict[str, str] = (), **settings) -> TestClient:
    """A client of a workstation whose data folder holds ``users`` (name -> role) with the same password."""
    storage = Storage(tmp_path / "data")
    accounts = Accounts(storage)
    for name, role in dict(users).items():
        accounts.add(name, role, PASSWORD)
    storage.close()
    return TestClient(create_app(ServeSettings(data_dir=tmp_path / "data", **settings), reporter=reporter), base_url=BASE)


def log_in(client: TestClient, name: str) -> None:
    response = client.post("/api/session", json={"name": name, "password": PASSWORD}, headers={"Origin": BASE})
    assert response.status_code == 200, response.text


def upload(client: TestClient, **kwargs) -> str:
    response = client.post("/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))], **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_dns_rebinding_host_is_refused_in_local_mode(tmp_path, reporter):
    with workstation(tmp_path, reporter) as client:
        assert client.get("/api/studies").status_code == 200  # local mode, loopback Host: fine
        for host in ("attacker.example:8000", "attacker.example", "127.0.0.1.attacker.example"):
            assert client.get("/api/studies", headers={"Host": host}).status_code == 400
            assert client.post(f"{BASE}/api/studies/x/sign", headers={"Host": host, "If-Match": '"0"'}).status_code == 400
        assert client.get("/api/studies", headers={"Host": "localhost:8000"}).status_code == 200


def test_cross_site_requests_are_refused_in_every_mode(tmp_path, reporter):
    with workstation(tmp_path / "local", reporter) as client:
        study = upload(client)
        evil = {"Origin": "http://attacker.example"}
        assert client.post("/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))], headers=evil).status_code == 403
        assert client.post(f"/api/studies/{study}/sign", headers={**evil, "If-Match": '"0"'}).status_code == 403
        assert client.post(f"/api/studies/{study}/draft", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.put(f"/api/studies/{study}/report", json=DOCUMENT, headers={"Origin": "null", "If-Match": '"0"'}).status_code == 403
        assert client.put(f"/api/studies/{study}/report", json=DOCUMENT, headers={"Origin": BASE, "If-Match": '"0"'}).status_code == 200

    with workstation(tmp_path / "accounts", reporter, {"rad": "radiologist"}) as client:
        log_in(client, "rad")
        # The session cookie rides along, as a browser would send it; without the page's Origin it is refused.
        assert client.post("/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))]).status_code == 403
        assert client.post("/api/studies", files=[("files", (SAMPLE.name, SAMPLE.read_bytes()))],
                           headers={"Origin": "http://attacker.example"}).status_code == 403
        assert upload(client, headers={"Origin": BASE})


def test_security_headers_and_no_cdn_docs(tmp_path, reporter):
    with workstation(tmp_path, reporter) as client:
        for path in ("/", "/api/info", "/static/app.js"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
        assert client.get("/api/info").headers["cache-control"] == "no-store"
        assert client.get("/docs").status_code == 404


def test_accounts_roles_and_the_signer_is_the_authenticated_user(tmp_path, reporter):
    users = {"rad": "radiologist", "org": "organiser", "off": "radiologist"}
    with workstation(tmp_path, reporter, users) as client:
        assert client.get("/api/studies").status_code == 401  # accounts exist: nobody is local any more
        assert client.post("/api/session", json={"name": "rad", "password": "wrong password!"}, headers={"Origin": BASE}).status_code == 401
        storage = client.app.state.storage
        accounts = Accounts(storage)
        accounts.disable("off")
        assert client.post("/api/session", json={"name": "off", "password": PASSWORD}, headers={"Origin": BASE}).status_code == 401
        log_in(client, "rad")
        cookie = client.cookies.get("radscribe_session")
        assert cookie and "radscribe_session" in str(client.cookies)
        study = upload(client, headers={"Origin": BASE})
        saved = client.put(f"/api/studies/{study}/report", json=DOCUMENT, headers={"Origin": BASE, "If-Match": '"0"'})
        signed = client.post(f"/api/studies/{study}/sign", json={"signer": "Dr Somebody Else"},
                             headers={"Origin": BASE, "If-Match": saved.headers["etag"]})
        assert signed.status_code == 200 and signed.json()["signer"] == "rad"

        token = accounts.issue("org", "api", 3600)
        organiser = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/me", headers=organiser).json()["role"] == "organiser"
        other = upload(client, headers={"Origin": BASE})
        assert client.put(f"/api/studies/{other}/report", json=DOCUMENT, headers={**organiser, "If-Match": '"0"'}).status_code == 403
        audit = client.get("/api/audit", headers=organiser).json()["items"]
        assert {"log-in", "log-in-failed", "upload", "save", "sign"} <= {entry["action"] for entry in audit}

        client.delete("/api/session", headers={"Origin": BASE})
        assert accounts.principal_for_token(cookie, "session") is None  # the old cookie no longer works
    database = tmp_path / "data" / "radscribe.db"
    assert stat.S_IMODE(os.stat(database).st_mode) == 0o600 and stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
    assert "argon2" in sqlite3.connect(database).execute("SELECT password_hash FROM users WHERE name = 'rad'").fetchone()[0]


def test_two_editors_at_one_version_cannot_lose_an_update(tmp_path, reporter):
    with workstation(tmp_path, reporter) as client:
        study = upload(client)
        tag = client.get(f"/api/studies/{study}").headers["etag"]
        first = client.put(f"/api/studies/{study}/report", json={**DOCUMENT, "impression": "A's text"}, headers={"If-Match": tag})
        second = client.put(f"/api/studies/{study}/report", json={**DOCUMENT, "impression": "B's text"}, headers={"If-Match": tag})
        assert first.status_code == 200 and second.status_code == 412
        assert second.json()["current"]["document"]["impression"] == "A's text"  # B is shown A's version to merge
        assert client.put(f"/api/studies/{study}/report", json=DOCUMENT).status_code == 428  # no If-Match: no blind overwrite
        assert [e["document"]["impression"] for e in client.get(f"/api/studies/{study}/edits").json()["items"]] == ["A's text"]


def test_a_signature_covers_exactly_the_version_the_signer_reviewed(tmp_path, reporter):
    with workstation(tmp_path, reporter) as client:
        study = upload(client)
        reviewed = client.put(f"/api/studies/{study}/report", json={**DOCUMENT, "impression": "A reviewed this"}, headers={"If-Match": '"0"'})
        later = client.put(f"/api/studies/{study}/report", json={**DOCUMENT, "impression": "B changed it"},
                           headers={"If-Match": reviewed.headers["etag"]})
        stale = client.post(f"/api/studies/{study}/sign", headers={"If-Match": reviewed.headers["etag"]})
        assert stale.status_code == 412 and stale.json()["current"]["document"]["impression"] == "B changed it"
        assert client.get(f"/api/studies/{study}").json()["signature"] is None
        signed = client.post(f"/api/studies/{study}/sign", headers={"If-Match": later.headers["etag"]})
        assert signed.json()["sha256"] == later.json()["sha256"]


def test_signed_reports_are_read_only_in_the_database_and_tampering_is_reported(tmp_path, reporter):
    from radscribe.serve.bulk import export_signed

    with workstation(tmp_path, reporter) as client:
        studies = [upload(client) for _ in range(2)]
        for study in studies:
            saved = client.put(f"/api/studies/{study}/report", json=DOCUMENT, headers={"If-Match": '"0"'})
            assert client.post(f"/api/studies/{study}/sign", headers={"If-Match": saved.headers["etag"]}).status_code == 200
        storage = client.app.state.storage
        with storage.transaction() as db:  # the status column is not what protects a signed report
            db.execute("UPDATE studies SET status = 'saved'")
        again = client.put(f"/api/studies/{studies[0]}/report", json=DOCUMENT, headers={"If-Match": saved.headers["etag"]})
        assert again.status_code in (409, 412)
        with pytest.raises(sqlite3.IntegrityError, match="signed"):
            with storage.transaction() as db:
                db.execute("INSERT INTO edits (study_id, created_at, author, document, sha256) VALUES (?, 0, 'x', '{}', 'x')", (studies[0],))
        assert client.get(f"/api/studies/{studies[0]}/export", params={"format": "fhir"}).json()["status"] == "final"

        # Someone with the database file rewrites the signed text (dropping the trigger first).
        with storage.transaction() as db:
            db.execute("DROP TRIGGER edits_append_only_update")
            db.execute("UPDATE edits SET document = ? WHERE study_id = ?", (json.dumps({**DOCUMENT, "impression": "forged"}), studies[0]))
        refused = client.get(f"/api/studies/{studies[0]}/export", params={"format": "fhir"})
        assert refused.status_code == 409 and "changed after signing" in refused.json()["detail"]
        assert client.get(f"/api/studies/{studies[1]}/export", params={"format": "json"}).status_code == 200
    summary = export_signed(tmp_path / "data", tmp_path / "export")
    assert summary["exported"] == 1 and list(summary["tampered"]) == [studies[0]]
    assert not (tmp_path / "export" / f"{studies[0]}.json").exists()


def deflated_multiframe_dicom(frames: int, side: int) -> bytes:
    """A small file that declares ``frames`` x ``side`` x ``side`` 16-bit pixels: zeros, deflated (a decompression bomb)."""
    return secondary_capture(bytes(frames * side * side * 2), side, side, frames=frames, deflated=True)


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_dicom_bomb_is_refused_without_the_server_paying_for_it(tmp_path, reporter):
    pytest.importorskip("pydicom")
    bomb = deflated_multiframe_dicom(24, 4000)  # 768 MB of pixels in a file of about a megabyte
    assert len(bomb) < 2_000_000
    with workstation(tmp_path, reporter, decoder_memory_bytes=512 * 1024 * 1024) as client:
        client.app.state.workstation.decoder.warm_up()
        baseline, peak, done = resident_bytes(), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], resident_bytes())
                time.sleep(0.01)

        watcher = threading.Thread(target=sample)
        watcher.start()
        try:
            response = client.post("/api/studies", files=[("files", ("bomb.dcm", bomb))])
        finally:
            done.set()
            watcher.join()
        assert response.status_code in (413, 422) and "bomb.dcm" in response.json()["detail"]
        assert peak[0] - baseline < 300 * 1024 * 1024  # the decoding happened, and failed, in the capped worker
        assert client.get("/api/studies").json()["total"] == 0
        assert upload(client)  # the decoder was replaced: the next upload works


def test_a_huge_png_is_decoded_off_the_event_loop(tmp_path, reporter):
    picture = io.BytesIO()
    Image.new("L", (8000, 8000), 90).save(picture, format="PNG")
    with workstation(tmp_path, reporter) as client:
        client.app.state.workstation.decoder.warm_up()
        finished: list[str] = []

        def big_upload() -> None:
            response = client.post("/api/studies", files=[("files", ("huge.png", picture.getvalue()))])
            finished.append(f"upload {response.status_code}")

        uploader = threading.Thread(target=big_upload)
        uploader.start()
        time.sleep(0.5)  # the upload is being decoded now
        for _ in range(3):
            assert client.get("/api/info").status_code == 200
            finished.append("info")
        uploader.join()
        assert finished[:3] == ["info"] * 3 and finished[3] in ("upload 201", "upload 413")  # info never waited for the decode


def test_request_size_limits_hold_while_streaming(tmp_path, reporter):
    with workstation(tmp_path, reporter, max_upload_bytes=300_000) as client:
        boundary = "radscribe-boundary"
        part = SAMPLE.read_bytes()
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + part + b"\r\n" for i in range(20)) + f"--{boundary}--\r\n".encode()
        assert len(part) < 300_000 < len(body)  # every file is under the limit; the request is not

        def chunks():
            for start in range(0, len(body), 65_536):
                yield body[start:start + 65_536]

        response = client.post("/api/studies", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 413 and "300,000" in response.json()["detail"]

        study = upload(client)
        huge = {**DOCUMENT, "impression": "x" * 20_001}
        assert client.put(f"/api/studies/{study}/report", json=huge, headers={"If-Match": '"0"'}).status_code == 422
        boxes = {**DOCUMENT, "boxes": [{"label": "b", "x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1}] * 501}
        assert client.put(f"/api/studies/{study}/report", json=boxes, headers={"If-Match": '"0"'}).status_code == 422
        long_value = {**DOCUMENT, "fields": {"technique.projection": "A" * 2_001}}
        assert client.put(f"/api/studies/{study}/report", json=long_value, headers={"If-Match": '"0"'}).status_code == 422
        megabyte = client.put(f"/api/studies/{study}/report", content=b'{"impression": "' + b"x" * 1_100_000 + b'"}',
                              headers={"If-Match": '"0"', "Content-Type": "application/json"})
        assert megabyte.status_code == 413
        assert client.get(f"/api/studies/{study}/edits", params={"limit": 10_000}).status_code == 422


def test_lists_are_paged_and_carry_their_images(tmp_path, reporter):
    with workstation(tmp_path, reporter) as client:
        made = [upload(client) for _ in range(3)]
        first = client.get("/api/studies", params={"limit": 2}).json()
        second = client.get("/api/studies", params={"limit": 2, "offset": 2}).json()
        assert first["total"] == 3 and [s["id"] for s in first["items"] + second["items"]] == made
        assert all(s["images"] and s["images"][0]["width"] > 0 for s in first["items"])
        assert client.get("/api/studies", params={"limit": 201}).status_code == 422


def test_decoded_image_cache_is_bounded_in_bytes():
    import numpy as np

    from radscribe.data.images import Radiograph

    cache = RadiographCache(max_bytes=10 * 4 * 100 * 100)
    for key in range(25):
        cache.get(str(key), lambda: Radiograph(np.zeros((100, 100), np.float32), Path("x")))
        assert cache.bytes <= cache.max_bytes
    big = cache.get("big", lambda: Radiograph(np.zeros((1000, 1000), np.float32), Path("x")))
    assert big.width == 1000 and cache.bytes <= cache.max_bytes  # larger than the cache: used, never kept


def test_fhir_export_of_an_unsigned_report_without_impression_validates(tmp_path, reporter):
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    with workstation(tmp_path, reporter) as client:
        study = upload(client)
        client.put(f"/api/studies/{study}/report", json={"fields": {"technique.projection": "AP"}}, headers={"If-Match": '"0"'})
        fhir = client.get(f"/api/studies/{study}/export", params={"format": "fhir"}).json()
        assert "conclusion" not in fhir and fhir["status"] == "preliminary"
        DiagnosticReport.model_validate(fhir)
