"""Detector proposals into the workstation and back out: import as drafts, correct and sign through the API, export to train on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from radscribe.annotate import DERIVED_SOURCE, SPINE_TEMPLATE  # noqa: E402
from radscribe.cli.main import app as cli  # noqa: E402
from radscribe.data import ManifestError, read_manifest  # noqa: E402
from radscribe.infer.proposals import PROPOSAL_STATUS, propose_spine_manifest  # noqa: E402
from radscribe.serve import ServeSettings, Storage, create_app  # noqa: E402
from radscribe.serve.bulk import export_signed  # noqa: E402
from radscribe.serve.manifests import REVIEWED_STATUS, import_manifest  # noqa: E402
from radscribe.templates import load_template, parse  # noqa: E402
from radscribe.types import Box  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "radscribe" / "samples" / "cadma" / "valid"
FILMS = sorted((SAMPLES / "images").glob("*.jpg"))
DETECTOR = "label-detector-v1"


class LabelDetector:
    """A detector that 'finds' the CADMA label boxes of each film (none for an unlabelled film): the manifest it
    makes through :func:`propose_spine_manifest` is exactly what a perfect detector would write."""

    config = SimpleNamespace(name=DETECTOR)

    def detect(self, images):
        found = []
        for image in images:
            labels = SAMPLES / "labels" / f"{Path(image.path).stem}.txt"
            rows = [line.split() for line in labels.read_text().splitlines()] if labels.exists() else []
            boxes = []
            for _, cx, cy, w, h in rows:
                cx, cy, w, h = map(float, (cx, cy, w, h))
                boxes.append(Box.from_xyxy("vertebra", (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), source=DETECTOR, score=0.9))
            found.append(boxes)
        return found


@pytest.fixture
def proposals(tmp_path) -> Path:
    """A proposals manifest: the three CADMA sample films (spines found) and a blank film (no spine)."""
    films = tmp_path / "films"
    films.mkdir()
    for film in FILMS:
        shutil.copy(film, films / film.name)
    Image.fromarray(np.full((300, 200), 90, dtype=np.uint8)).save(films / "blank.png")
    out = tmp_path / "proposals" / "M.jsonl"
    summary = propose_spine_manifest(sorted(films.iterdir()), out, LabelDetector())
    assert summary.proposed == 3 and summary.without_spine == 1
    return out


def stand_in_reporter():
    # Reviewing an imported draft never calls the model; the app only asks which template it writes.
    return SimpleNamespace(template=load_template(SPINE_TEMPLATE))


def test_import_makes_one_drafted_study_per_proposal(proposals, tmp_path):
    summary = import_manifest(proposals, tmp_path / "data")
    assert (summary.studies, summary.imported, summary.already_imported, summary.without_template) == (4, 4, 0, 1)
    manifest = {study.id: study for study in read_manifest(proposals)}
    storage = Storage(tmp_path / "data")
    try:
        assert storage.count_studies() == 4
        for study_id in summary.study_ids:
            study = storage.study(study_id)
            origin = storage.import_origin(study_id)
            source = manifest[origin["source_id"]]
            assert study["status"] == "drafted" and study["template"] == SPINE_TEMPLATE
            assert origin["line"] >= 1 and origin["metadata"]["proposal"]["status"] == PROPOSAL_STATUS
            width, height = Image.open(proposals.parent / source.images[0].path).size
            assert (study["images"][0]["width"], study["images"][0]["height"]) == (width, height)
            draft = storage.latest_draft(study_id)
            assert draft["model"] == DETECTOR
            proposed = [box for box in source.boxes if box.source == DETECTOR]
            document = draft["document"]
            # the detector's boxes as free boxes to review, each illustrating the vertebra count; derived ones are not repeated
            assert [(b["label"], b["x_min"], b["y_max"], b["score"]) for b in document["boxes"]] == [
                (b.label, b.x_min, b.y_max, b.score) for b in proposed]
            assert all(b["decision"] == "pending" and b["field"] == "vertebrae.count" for b in document["boxes"])
            assert not any(b["source"] == DERIVED_SOURCE for b in document["boxes"])
            if source.structured:
                filled = parse(source.structured, SPINE_TEMPLATE)
                assert draft["markdown"] == source.structured.strip()
                assert document["fields"]["vertebrae.count"] == filled.get("vertebrae.count") == len(proposed)
                assert document["fields"]["alignment.severity"] == filled.get("alignment.severity")
                curves = document["findings"]["alignment.curves"]
                assert [c["values"] for c in curves] == [dict(item.values) for item in filled.get("alignment.curves")]
                # each curve grounded by its span and its apex, recomputed from the proposed vertebrae
                assert all(len(c["boxes"]) == 2 and c["boxes"][1]["label"].startswith("apex of curve") for c in curves)
            else:
                assert draft["markdown"] == "" and document["fields"]["vertebrae.count"] is None
        actions = [entry["action"] for entry in storage.audit_log()]
        assert actions.count("import") == 4 and actions[-1] == "import-manifest"
    finally:
        storage.close()


def test_import_again_is_a_no_op_and_a_stopped_import_resumes(proposals, tmp_path):
    lines = proposals.read_text().splitlines(keepends=True)
    first_two = tmp_path / "proposals" / "first-two.jsonl"
    first_two.write_text("".join(lines[:2]))
    assert import_manifest(first_two, tmp_path / "data").imported == 2  # as if stopped after two studies
    resumed = import_manifest(proposals, tmp_path / "data")
    assert (resumed.imported, resumed.already_imported) == (2, 2)
    again = import_manifest(proposals, tmp_path / "data")
    assert (again.imported, again.already_imported) == (0, 4) and again.study_ids == resumed.study_ids
    storage = Storage(tmp_path / "data")
    try:
        assert storage.count_studies() == 4
        assert int(storage.query("SELECT COUNT(*) FROM drafts")[0][0]) == 4
    finally:
        storage.close()


def test_the_same_study_id_with_another_image_is_a_new_study(proposals, tmp_path):
    import_manifest(proposals, tmp_path / "data")
    record = json.loads(proposals.read_text().splitlines()[0])
    other = tmp_path / "films" / "other.png"
    Image.fromarray(np.full((300, 200), 120, dtype=np.uint8)).save(other)
    record["images"][0]["path"] = "../films/other.png"
    changed = tmp_path / "proposals" / "changed.jsonl"
    changed.write_text(json.dumps(record) + "\n")
    assert import_manifest(changed, tmp_path / "data").imported == 1


@pytest.mark.parametrize("edit, field, message", [
    (lambda r: "{not json", "", "one JSON object per line"),
    (lambda r: {**r, "boxes": [{**r["boxes"][0], "x_max": 1.5}]}, "boxes[0].x_max", "in [0, 1]"),
    (lambda r: {**r, "images": [{"path": "../films/missing.jpg"}]}, "images[0].path", "an image file"),
    (lambda r: {**r, "template": "no-such-template"}, "template", "a shipped template"),
    (lambda r: {**r, "structured": "# Spine AP alignment report\nnot a field line"}, "structured", "markdown of template"),
    (lambda r: {**r, "id": "dup"}, "id", "a unique id"),
])
def test_a_bad_line_is_named_by_file_line_and_field_and_nothing_is_imported(proposals, tmp_path, edit, field, message):
    lines = proposals.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    bad = tmp_path / "proposals" / "bad.jsonl"
    changed = edit(records[2])
    if field == "id":
        records[0]["id"] = "dup"
    body = [json.dumps(r) for r in records[:2]] + [changed if isinstance(changed, str) else json.dumps(changed)] + lines[3:]
    bad.write_text("\n".join(body) + "\n")
    with pytest.raises(ManifestError) as raised:
        import_manifest(bad, tmp_path / "data")
    assert raised.value.line == 3 and raised.value.field == field and message in str(raised.value)
    assert str(bad) in str(raised.value)
    storage = Storage(tmp_path / "data")
    try:
        assert storage.count_studies() == 0
    finally:
        storage.close()


def review_first_study(proposals: Path, tmp_path: Path) -> tuple[str, int]:
    """Import, then correct and sign the first study through the API as a radiologist would:
    reject one proposed box, move one, draw a missed one. Returns the study id and the vertebra count."""
    summary = import_manifest(proposals, tmp_path / "data")
    settings = ServeSettings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, reporter=stand_in_reporter()), base_url="http://127.0.0.1:8000") as client:
        listed = client.get("/api/studies").json()
        assert listed["total"] == 4 and all(item["status"] == "drafted" for item in listed["items"])
        study_id = summary.study_ids[0]
        opened = client.get(f"/api/studies/{study_id}").json()
        document = opened["document"]
        assert opened["errors"] == {} and opened["incomplete"] == {}  # the proposal is a complete, valid report
        proposed = len(document["boxes"])
        document["boxes"][0]["decision"] = "rejected"        # a false positive
        moved = document["boxes"][1]
        moved.update(y_min=moved["y_min"] + 0.001, y_max=moved["y_max"] + 0.001, source="human", decision="accepted")
        document["boxes"].append({"label": "vertebra", "x_min": 0.4, "y_min": 0.9, "x_max": 0.5, "y_max": 0.93,
                                  "source": "human", "decision": "accepted", "field": "vertebrae.count"})
        document["fields"]["vertebrae.count"] = proposed
        document["impression"] = "Corrected by the radiologist."
        saved = client.put(f"/api/studies/{study_id}/report", json=document, headers={"If-Match": '"0"'})
        assert saved.status_code == 200, saved.text
        signed = client.post(f"/api/studies/{study_id}/sign", headers={"If-Match": saved.headers["etag"]})
        assert signed.status_code == 200, signed.text
        again = client.get(f"/api/studies/{study_id}").json()
        assert again["status"] == "signed" and again["document"]["boxes"][0]["decision"] == "rejected"
    return study_id, proposed


def test_correct_sign_through_the_api_then_export_a_training_manifest(proposals, tmp_path):
    study_id, proposed = review_first_study(proposals, tmp_path)
    out = tmp_path / "export"
    result = export_signed(tmp_path / "data", out, "manifest", "train")
    assert result["exported"] == 1 and result["tampered"] == {}
    (study,) = read_manifest(out / "manifest.jsonl")
    origin_id = read_manifest(proposals)[0].id
    assert study.id == origin_id and study.split == "train" and study.template == SPINE_TEMPLATE
    vertebrae = [box for box in study.boxes if box.label == "vertebra"]
    assert len(vertebrae) == proposed  # one rejected, one added
    assert {box.source for box in vertebrae} == {DETECTOR, "human"}
    assert sum(box.source == "human" for box in vertebrae) == 2
    assert "Corrected by the radiologist." in study.structured
    assert parse(study.structured, SPINE_TEMPLATE).get("vertebrae.count") == proposed
    assert study.metadata["proposal"]["status"] == REVIEWED_STATUS and study.metadata["review"]["workstation_study"] == study_id
    assert "spine_annotation" not in study.metadata  # the proposal's geometry summary no longer describes the signed report
    image = out / study.images[0].path
    assert image.is_file() and Image.open(image).size == (study.images[0].width, study.images[0].height)
    # exporting again gives the same manifest (images are named by hash and written once)
    first = (out / "manifest.jsonl").read_text()
    export_signed(tmp_path / "data", out, "manifest", "train")
    assert (out / "manifest.jsonl").read_text() == first


@pytest.mark.slow  # imports the trainers (torch, albumentations): tens of seconds on a loaded CPU
def test_radscribe_train_reads_the_exported_manifest(proposals, tmp_path):
    from radscribe.tasks import build_examples
    from radscribe.train.detector import load_samples

    _, proposed = review_first_study(proposals, tmp_path)
    out = tmp_path / "export"
    export_signed(tmp_path / "data", out, "manifest", "train")
    (study,) = read_manifest(out / "manifest.jsonl")
    (sample,) = load_samples([str(out / "manifest.jsonl")], "train", ["vertebra"], None)
    assert len(sample.boxes) == proposed and sample.pixels.shape == (study.images[0].height, study.images[0].width)
    examples = build_examples([study], out, ["structured_report", "phrase_grounding"], "radscribe")
    assert examples.counts["structured_report"] == 1 and examples.counts["phrase_grounding"] >= 1
    assert [e for e in examples if e.task == "structured_report"][0].target == study.structured.strip()


def test_cli_import_and_manifest_export(proposals, tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    first = runner.invoke(cli, ["serve", "import", str(proposals), "--data-dir", str(data)])
    assert first.exit_code == 0, first.output
    said = " ".join(first.output.split())
    assert "4 of 4 studies imported" in said and "1 without a template" in said
    second = runner.invoke(cli, ["serve", "import", str(proposals), "--data-dir", str(data)])
    said = " ".join(second.output.split())
    assert "0 of 4 studies imported" in said and "4 imported before" in said
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"version": 1, "id": "x", "images": [{"path": 3}]}\n')
    failed = runner.invoke(cli, ["serve", "import", str(bad), "--data-dir", str(data)])
    assert failed.exit_code != 0 and "bad.jsonl:1" in failed.output and "images[0].path" in failed.output
    exported = runner.invoke(cli, ["serve", "export", "--format", "manifest", "--out", str(tmp_path / "out"), "--data-dir", str(data)])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == ""  # nothing signed yet
    wrong = runner.invoke(cli, ["serve", "export", "--format", "csv", "--out", str(tmp_path / "out"), "--data-dir", str(data)])
    assert wrong.exit_code != 0 and "manifest" in wrong.output
