"""The workstation API end to end with the embedded default model on real CADMA images."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dicom_files import secondary_capture  # noqa: E402
from radscribe.serve import ServeSettings, create_app  # noqa: E402
from radscribe.templates import parse, validate  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "radscribe" / "samples" / "cadma" / "valid" / "images"
CADMA = sorted(SAMPLES.glob("*.jpg"))


@pytest.fixture(scope="module")
def reporter():
    from radscribe.infer import Reporter
    from radscribe.models import default_model

    return Reporter(default_model())


def client_for(tmp_path: Path, reporter, **settings) -> TestClient:
    """A client on the loopback address the server answers to (use it in ``with``: the decoder process is closed after)."""
    return TestClient(create_app(ServeSettings(data_dir=tmp_path / "data", **settings), reporter=reporter), base_url="http://127.0.0.1:8000")


def upload(client: TestClient, path: Path = CADMA[0], name: str | None = None, data: bytes | None = None, **kwargs):
    content = data if data is not None else path.read_bytes()
    return client.post("/api/studies", files=[("files", (name or path.name, content, "application/octet-stream"))], **kwargs)


def save(client: TestClient, study_id: str, document: dict, etag: str = '"0"', **kwargs):
    return client.put(f"/api/studies/{study_id}/report", json=document, headers={"If-Match": etag}, **kwargs)


def dicom_bytes(image: Path, **attributes) -> bytes:
    """A CADMA radiograph wrapped as a 12-bit DICOM secondary capture (what a PACS export looks like)."""
    pixels = np.asarray(Image.open(image).convert("L"), dtype=np.uint16) * 16
    return secondary_capture(pixels.tobytes(), *pixels.shape, bits_stored=12, **attributes)


def test_upload_draft_edit_save_sign_export(tmp_path, reporter):
    with client_for(tmp_path, reporter) as client:
        created = upload(client)
        assert created.status_code == 201, created.text
        study = created.json()
        width, height = Image.open(CADMA[0]).size
        assert study["status"] == "new" and study["images"][0]["width"] == width and study["images"][0]["height"] == height

        drafted = client.post(f"/api/studies/{study['id']}/draft")
        assert drafted.status_code == 200, drafted.text
        draft = drafted.json()
        assert draft["markdown"].startswith("# Spine AP alignment report")
        assert draft["fields"]["technique"]["projection"] in ("AP", "PA", "not assessed")  # the spine report is computed from boxes, which do not show the view
        assert draft["boxes"] and all(0 <= b["x_min"] <= b["x_max"] <= 1 for b in draft["boxes"])
        assert draft["document"]["boxes"][0]["field"] == "vertebrae.count"  # vertebra boxes illustrate the count

        document = draft["document"]
        document["fields"].update({"alignment.alignment": "scoliosis", "alignment.severity": "mild", "vertebrae.count": 17})
        document["findings"]["alignment.curves"] = [{
            "values": {"region": "thoracic", "convexity": "right", "apex": "T8", "upper": "T5", "lower": "T11", "angle": 18.5, "severity": "mild"},
            "boxes": [{"label": "curve", "x_min": 0.2, "y_min": 0.2, "x_max": 0.6, "y_max": 0.55, "source": "human", "decision": "accepted"}],
            "decision": "accepted",
        }]
        document["boxes"][0]["decision"] = "rejected"
        document["impression"] = "Mild right thoracic scoliosis."
        assert client.get(f"/api/studies/{study['id']}").headers["etag"] == '"0"'  # nothing saved yet
        saved = save(client, study["id"], document)
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 1 and saved.json()["incomplete"] == {}
        assert saved.headers["etag"] == saved.json()["etag"] == client.get(f"/api/studies/{study['id']}").headers["etag"]

        # The signer is whoever is authenticated (here the local user): a name in the body is ignored.
        signed = client.post(f"/api/studies/{study['id']}/sign", json={"signer": "Dr Test"}, headers={"If-Match": saved.headers["etag"]})
        assert signed.status_code == 200, signed.text
        assert signed.json()["signer"] == "local" and signed.json()["sha256"] == saved.json()["sha256"]

        markdown = client.get(f"/api/studies/{study['id']}/export", params={"format": "md"})
        assert markdown.status_code == 200
        filled = parse(markdown.text, "spine-ap-alignment")
        assert validate(filled) == []
        assert filled.get("alignment.curves")[0].values["angle"] == 18.5
        assert filled.get("impression.text") == "Mild right thoracic scoliosis."

        exported = client.get(f"/api/studies/{study['id']}/export", params={"format": "json"}).json()
        assert exported["status"] == "signed" and exported["signature"]["signer"] == "local"
        assert all(box["decision"] != "rejected" for box in exported["boxes"])
        assert len(exported["boxes"]) == len(document["boxes"]) - 1

        fhir = client.get(f"/api/studies/{study['id']}/export", params={"format": "fhir"}).json()
        from fhir.resources.R4B.diagnosticreport import DiagnosticReport

        DiagnosticReport.model_validate(fhir)  # the FHIR R4 schema accepts it
        assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
        assert fhir["resultsInterpreter"] == [{"display": "local"}]
        assert fhir["conclusion"] == "Mild right thoracic scoliosis."
        codes = {o["code"]["coding"][0]["code"]: o for o in fhir["contained"]}
        assert codes["vertebrae.count"]["valueQuantity"]["value"] == 17
        assert {c["code"]["text"] for c in codes["alignment.curves[0]"]["component"]} >= {"Region", "Centre-line Cobb proxy angle"}

        after = save(client, study["id"], document, saved.headers["etag"])
        assert after.status_code == 409 and "signed" in after.json()["detail"]
        log = client.get(f"/api/studies/{study['id']}/edits").json()
        assert [entry["document"]["impression"] for entry in log["items"]] == ["Mild right thoracic scoliosis."] and log["total"] == 1

        png = client.get(f"/api/studies/{study['id']}/images/0.png", params={"center": 0.4, "width": 0.5})
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (width, height)


def test_save_reports_errors_per_field_and_sign_waits_for_blanks(tmp_path, reporter):
    with client_for(tmp_path, reporter) as client:
        study = upload(client).json()
        bad = {"fields": {"technique.projection": "lateral", "vertebrae.count": 99, "vertebrae.nonsense": 1}, "impression": "x"}
        response = save(client, study["id"], bad)
        assert response.status_code == 422
        assert set(response.json()["detail"]["errors"]) == {"vertebrae.nonsense"}  # unknown fields are refused first

        bad["fields"].pop("vertebrae.nonsense")
        errors = save(client, study["id"], bad).json()["detail"]["errors"]
        assert set(errors) == {"technique.projection", "vertebrae.count"}
        assert "AP, PA" in errors["technique.projection"][0] and "[0, 30]" in errors["vertebrae.count"][0]

        partial = save(client, study["id"], {"fields": {"technique.projection": "AP"}})
        assert partial.status_code == 200 and "alignment.alignment" in partial.json()["incomplete"]
        refused = client.post(f"/api/studies/{study['id']}/sign", headers={"If-Match": partial.json()["etag"]})
        assert refused.status_code == 422 and "vertebrae.count" in refused.json()["detail"]["incomplete"]

        box = {"fields": {}, "boxes": [{"label": "x", "x_min": 0.5, "y_min": 0.1, "x_max": 0.2, "y_max": 0.3}]}
        assert "boxes[0].x_min" in save(client, study["id"], box, partial.json()["etag"]).json()["detail"]["errors"]


def test_bad_uploads_get_clear_4xx(tmp_path, reporter):
    with client_for(tmp_path, reporter, max_upload_bytes=200_000) as client:
        corrupt = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50
        response = upload(client, name="broken.png", data=corrupt)
        assert response.status_code == 422 and "broken.png" in response.json()["detail"]

        response = upload(client, name="notes.png", data=b"this is plain text, not an image" * 4)
        assert response.status_code == 415 and "PNG, JPEG or DICOM" in response.json()["detail"]

        dicom = b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00" + b"\xff" * 64
        response = upload(client, name="scan.dcm", data=dicom)
        assert response.status_code == 422 and "DICOM" in response.json()["detail"]

        big = upload(client, name="big.png", data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000)
        assert big.status_code == 413 and "limit" in big.json()["detail"]

        photo = io.BytesIO()
        Image.new("RGB", (64, 64), (220, 30, 30)).save(photo, format="PNG")
        response = upload(client, name="photo.png", data=photo.getvalue())
        assert response.status_code == 422 and "colour photograph" in response.json()["detail"]

        assert client.get("/api/studies").json()["items"] == []  # nothing refused was stored
        assert client.get("/api/studies/../../etc/passwd").status_code == 404
        assert client.get("/api/studies/nope/export").status_code == 404
        bad_template = client.post("/api/studies", files=[("files", ("a.jpg", CADMA[0].read_bytes()))], data={"template": "../../secret"})
        assert bad_template.status_code == 422 and "unknown template" in bad_template.json()["detail"]


def test_dicom_upload_is_rendered_and_exported_as_structured_report(tmp_path, reporter):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    study_uid = generate_uid()
    data = dicom_bytes(CADMA[1], StudyInstanceUID=study_uid, SeriesInstanceUID=generate_uid(), PatientID="CADMA-1")
    width, height = Image.open(CADMA[1]).size
    with client_for(tmp_path, reporter) as client:
        created = upload(client, name="cadma.dcm", data=data)
        assert created.status_code == 201, created.text
        study = created.json()
        assert study["images"][0]["format"] == "dicom"
        png = client.get(f"/api/studies/{study['id']}/images/0.png")
        assert Image.open(io.BytesIO(png.content)).size == (width, height)

        document = {"fields": {"technique.projection": "AP", "vertebrae.count": 12, "vertebrae.levels": "T6-L5",
                               "alignment.alignment": "normal", "alignment.severity": "none"},
                    "boxes": [{"label": "vertebra", "x_min": 0.4, "y_min": 0.2, "x_max": 0.6, "y_max": 0.3, "decision": "accepted"}],
                    "impression": "No scoliosis."}
        saved = save(client, study["id"], document)
        assert saved.status_code == 200, saved.text
        signed = client.post(f"/api/studies/{study['id']}/sign", headers={"If-Match": saved.headers["etag"]})
        assert signed.status_code == 200, signed.text
        exported = client.get(f"/api/studies/{study['id']}/export", params={"format": "sr"})
        assert exported.status_code == 200 and exported.headers["content-type"] == "application/dicom"
        sr = pydicom.dcmread(io.BytesIO(exported.content))
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert sr.StudyInstanceUID == study_uid and sr.PatientID == "CADMA-1"
        assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
        assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "local"
        regions = [item for group in sr.ContentSequence if "ContentSequence" in group for item in _walk(group)
                   if getattr(item, "ValueType", "") == "SCOORD"]
        assert regions and regions[0].GraphicType == "POLYLINE"
        x_values = regions[0].GraphicData[0::2]
        assert min(x_values) == pytest.approx(0.4 * width) and max(x_values) == pytest.approx(0.6 * width)


def _walk(item):
    yield item
    for child in getattr(item, "ContentSequence", []):
        yield from _walk(child)


def test_full_queue_answers_503_with_retry_after(tmp_path, reporter):
    with client_for(tmp_path, reporter, queue_size=1) as client:
        study = upload(client).json()
        release = threading.Event()
        queue = client.app.state.queue
        running = queue.submit(release.wait)       # occupies the worker
        while not running.running():
            time.sleep(0.01)
        waiting = queue.submit(lambda: None)       # fills the one waiting slot
        try:
            response = client.post(f"/api/studies/{study['id']}/draft")
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) >= 1 and "queue is full" in response.json()["detail"]
            ask = client.post("/api/ask", json={"study_id": study["id"], "question": "Is there scoliosis?"})
            assert ask.status_code == 503
        finally:
            release.set()
        running.result(timeout=10), waiting.result(timeout=10)
        answer = client.post("/api/ask", json={"study_id": study["id"], "question": "Is there scoliosis?"})
        assert answer.status_code == 200 and isinstance(answer.json()["answer"], str)


def test_binding_beyond_loopback_needs_accounts_and_tls():
    from radscribe.serve import check_bind

    check_bind(ServeSettings(host="127.0.0.1"), has_accounts=False)
    check_bind(ServeSettings(host="0.0.0.0", tls=True), has_accounts=True)
    check_bind(ServeSettings(host="0.0.0.0", insecure_http=True), has_accounts=True)
    with pytest.raises(ValueError, match="user accounts"):
        check_bind(ServeSettings(host="0.0.0.0", tls=True), has_accounts=False)
    with pytest.raises(ValueError, match="plain HTTP"):
        check_bind(ServeSettings(host="0.0.0.0"), has_accounts=True)


def test_page_and_openapi_are_served(tmp_path, reporter):
    with client_for(tmp_path, reporter) as client:
        page = client.get("/")
        assert page.status_code == 200 and "Keyboard shortcuts" in page.text and "/static/app.js" in page.text
        paths = client.get("/openapi.json").json()["paths"]
        for path in ("/api/studies", "/api/studies/{study_id}/draft", "/api/ask", "/api/studies/{study_id}/report",
                     "/api/studies/{study_id}/sign", "/api/studies/{study_id}/export"):
            assert path in paths
        schema = client.get("/openapi.json").json()
        assert set(schema["components"]["securitySchemes"]) == {"session", "token"}
        assert schema["paths"]["/api/studies/{study_id}/report"]["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ReportDocument")
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # no CDN scripts on this origin
        assert "http" not in page.text.split("<body>")[1]  # the page loads nothing from elsewhere
        spec = client.get("/api/templates/spine-ap-alignment").json()
        count = next(f for s in spec["sections"] for f in s["fields"] if f["id"] == "vertebrae.count")
        assert count["kind"] == "number" and count["max"] == 30
