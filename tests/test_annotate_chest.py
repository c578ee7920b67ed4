"""NIH ChestX-ray14 labels -> chest-pa template through the label mapping (weak labels, said so)."""

from __future__ import annotations

from radscribe.annotate import WEAK_LABEL_SOURCE, annotate_chest_manifest, chest_template_from_labels, filled_of
from radscribe.data import read_manifest, write_manifest
from radscribe.templates import render, parse, validate
from radscribe.types import Box, Finding, ImageRef, Study


def test_labels_fill_their_mapped_fields():
    findings = [Finding("Effusion", source="nih-nlp"), Finding("Nodule", source="nih-nlp"), Finding("Infiltration", "uncertain")]
    box = Box("Nodule", 0.6, 0.3, 0.7, 0.4, source="nih-expert")
    fill = chest_template_from_labels(findings, [box], projection="pa")
    filled = fill.filled
    assert validate(filled) == [] and fill.unmapped == []
    assert filled.get("technique.projection") == "PA"
    assert filled.get("pleura.pleural_effusion") == "present"
    assert filled.get("lungs.lung_lesion") == "present"
    assert filled.get("lungs.lung_opacity") == "uncertain"
    assert filled.get("lungs.edema") == "absent"
    assert filled.get("bones.fracture") == "not assessed"  # no NIH label covers it
    assert filled.get("impression.no_finding") == "no"
    (region,) = filled.get("localized.regions")
    assert region.values == {"finding": "Lung lesion (Nodule)"} and region.boxes == [box]
    assert f"**Label source:** {WEAK_LABEL_SOURCE}" in render(filled)
    assert filled.get("impression.text").startswith("Weak labels from NIH ChestX-ray14 image labels: effusion, nodule")


def test_no_finding_and_unknown_labels():
    fill = chest_template_from_labels([Finding("No Finding"), Finding("Tuberculosis")])
    assert fill.filled.get("impression.no_finding") == "yes"
    assert fill.unmapped == ["Tuberculosis"]
    assert fill.filled.get("technique.projection") is None  # unknown view stays blank, and validation says so
    assert [issue.code for issue in validate(fill.filled)] == ["blank-required"]


def test_manifest_with_unlabeled_study(tmp_path):
    studies = [
        Study("a", [ImageRef("a.png", 512, 512, view="PA")], findings=[Finding("Cardiomegaly", source="nih-nlp")]),
        Study("b", [ImageRef("b.png", 512, 512, view="AP")]),
    ]
    write_manifest(studies, tmp_path / "in.jsonl")
    summary = annotate_chest_manifest(tmp_path / "in.jsonl", tmp_path / "sub" / "out.jsonl")
    assert (summary.annotated, summary.valid, summary.skipped) == (1, 1, [("b", "the study has no image labels")])
    first, second = read_manifest(tmp_path / "sub" / "out.jsonl")
    assert first.images[0].path == "../a.png"  # relative to the new manifest
    assert first.metadata["chest_annotation"]["label_source"] == WEAK_LABEL_SOURCE
    assert filled_of(first).get("heart_mediastinum.cardiomegaly") == "present"
    assert second.template is None and second.metadata["chest_annotation"]["status"] == "skipped"


def test_real_nih_labels(nih_dir, tmp_path):
    from radscribe.data.importers import import_dataset

    import_dataset("nih-cxr14", nih_dir, tmp_path / "nih.jsonl")
    summary = annotate_chest_manifest(tmp_path / "nih.jsonl", tmp_path / "chest.jsonl")
    assert summary.total == summary.annotated == summary.valid == 500
    grounded = 0
    for study in read_manifest(tmp_path / "chest.jsonl"):
        assert render(parse(study.structured, "chest-pa")) == study.structured
        regions = filled_of(study).get("localized.regions")
        grounded += len(regions)
        positives = set(study.positive_labels()) - {"No Finding"}
        assert (filled_of(study).get("impression.no_finding") == "no") == bool(positives)
    assert grounded == 10  # the 10 expert boxes that fall on these images
