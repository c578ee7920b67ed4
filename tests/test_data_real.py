"""Importers on the real shared datasets: counts, coordinates and schema validity of every line written."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import shared_path

from radscribe.data import import_dataset, manifest_stats, read_image_size, read_manifest, resolve_image_path
from radscribe.data.manifest import SCHEMA_PATH

jsonschema = pytest.importorskip("jsonschema")


def _import(tmp_path_factory, kind: str, *parts: str) -> Path:
    source = shared_path(*parts)
    out = tmp_path_factory.mktemp(kind) / f"{kind}.jsonl"
    summary = import_dataset(kind, source, out)
    assert summary.skipped == []
    return out


@pytest.fixture(scope="session")
def cadma_manifest(tmp_path_factory) -> Path:
    return _import(tmp_path_factory, "cadma", "spine-cadma")


@pytest.fixture(scope="session")
def vqa_rad_manifest(tmp_path_factory) -> Path:
    return _import(tmp_path_factory, "vqa-rad", "vqa-rad")


@pytest.fixture(scope="session")
def nih_manifest(tmp_path_factory) -> Path:
    return _import(tmp_path_factory, "nih-cxr14", "nih-cxr14-621")


@pytest.fixture(scope="session")
def iu_manifest(tmp_path_factory) -> Path:
    return _import(tmp_path_factory, "iu-xray", "iu-xray-reports")


@pytest.fixture(scope="session")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_cadma_counts_splits_and_boxes(cadma_manifest):
    studies = read_manifest(cadma_manifest)
    by_split = Counter(study.split for study in studies)
    boxes = Counter()
    for study in studies:
        boxes[study.split] += len(study.boxes)
    assert by_split == {"train": 926, "valid": 262}
    # Totals counted independently from the label files' non-empty lines.
    expected = {
        split: sum(
            1 for label in shared_path("spine-cadma", split, "labels").glob("*.txt")
            for line in label.read_text().splitlines() if line.strip()
        )
        for split in ("train", "valid")
    }
    assert dict(boxes) == expected == {"train": 14773, "valid": 4165}
    assert all(11 <= len(study.boxes) <= 20 for study in studies)
    assert {box.label for study in studies for box in study.boxes} == {"vertebra"}


def test_cadma_boxes_top_to_bottom_and_sizes_from_file(cadma_manifest):
    studies = read_manifest(cadma_manifest)
    for study in studies[:50]:
        centres = [box.center[1] for box in study.boxes]
        assert centres == sorted(centres)
        image = study.images[0]
        assert (image.width, image.height) == read_image_size(resolve_image_path(cadma_manifest, image.path))
    first = next(study for study in studies if study.id.startswith("25_jpg"))
    # First label line of this file: "0 0.6311... 0.7163... 0.3114... 0.0432..." (cx cy w h)
    box = min(first.boxes, key=lambda b: abs(b.center[1] - 0.7163461538461539))
    assert box.center == pytest.approx((0.6311475409836066, 0.7163461538461539))
    assert box.width == pytest.approx(0.3114754098360656)


def test_vqa_rad_one_study_per_image_with_all_questions(vqa_rad_manifest):
    studies = read_manifest(vqa_rad_manifest)
    questions = [qa for study in studies for qa in study.qa]
    # trainset.json names 314 distinct images; the folder has 315 (one is only used by the held-back test set).
    assert len(studies) == 314
    assert len(questions) == 3064
    assert Counter(qa.answer_type for qa in questions) == {"closed": 1823, "open": 1241}
    assert {study.metadata["organ"] for study in studies} == {"CHEST", "HEAD", "ABD"}
    first = next(study for study in studies if study.id == "synpic54610")
    assert first.qa[0].question == "Are regions of the brain infarcted?" and first.qa[0].answer == "Yes"
    assert first.qa[0].question_type == "PRES" and first.qa[0].id == "1"
    assert all(study.split == "train" for study in studies)


def test_nih_findings_boxes_and_metadata(nih_manifest):
    studies = read_manifest(nih_manifest)
    assert len(studies) == 500
    boxed = [study for study in studies if study.boxes]
    assert len(boxed) == 10
    study = next(s for s in studies if s.id == "00001369_000")
    (box,) = study.boxes
    # boxes.csv: x=336.99 y=276.32 w=553.72 h=386.84 in the original 1024x1024 image.
    assert box.xyxy == pytest.approx((336.998941798942 / 1024, 276.31746031746 / 1024, 890.717460317461 / 1024, 663.161904761904 / 1024))
    assert box.label == "Cardiomegaly" and box.source == "nih-expert"
    infiltrate = next(s for s in studies if s.id == "00026911_000").boxes[0]
    assert infiltrate.label == "Infiltration"  # the box list's "Infiltrate", renamed to match the labels
    first = next(s for s in studies if s.id == "00000100_000")
    assert [f.label for f in first.findings] == ["Atelectasis", "Effusion", "Infiltration"]
    assert first.metadata["age"] == 60 and first.metadata["sex"] == "M" and first.patient_id == "00000100"
    assert first.images[0].view == "PA" and first.images[0].width == 512
    no_finding = next(s for s in studies if s.id == "00000129_000")
    assert [(f.label, f.status) for f in no_finding.findings] == [("No Finding", "positive")]


def test_iu_xray_reports_and_r2gen_split(iu_manifest):
    studies = read_manifest(iu_manifest)
    assert len(studies) == 3955
    assert Counter(study.split for study in studies) == {"train": 2069, "valid": 296, "test": 590, None: 1000}
    first = studies[0]
    assert first.id == "CXR1" and first.report["impression"] == "Normal chest x-XXXX."
    assert first.metadata["mesh_major"] == ["normal"] and first.metadata["r2gen_id"] == "CXR1_1_IM-0001"
    assert all(study.images == [] for study in studies)  # no IU images are shared
    assert sum(len(study.metadata["image_ids"]) for study in studies) == 7470


def test_every_written_line_validates_against_the_schema(validator, cadma_manifest, vqa_rad_manifest, nih_manifest, iu_manifest):
    for manifest in (cadma_manifest, vqa_rad_manifest, nih_manifest, iu_manifest):
        for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
            errors = list(validator.iter_errors(json.loads(line)))
            assert not errors, f"{manifest.name}:{number}: {errors[0].message}"


def test_stats_on_real_manifests(cadma_manifest, vqa_rad_manifest):
    cadma = manifest_stats(read_manifest(cadma_manifest))
    assert cadma["splits"] == {"train": 926, "valid": 262}
    assert cadma["boxes"]["total"] == 18938 and cadma["boxes"]["labels"] == {"vertebra": 18938}
    assert cadma["image_size"]["height"]["max"] == 416
    vqa = manifest_stats(read_manifest(vqa_rad_manifest))
    assert vqa["qa"]["total"] == 3064 and vqa["qa"]["answer_types"] == {"closed": 1823, "open": 1241}
    assert vqa["qa"]["question_types"]["PRES"] == 1214
