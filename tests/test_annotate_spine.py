"""Spine geometry from vertebra boxes: synthetic columns with known curves, and the real CADMA labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from radscribe.annotate import (
    DERIVED_SOURCE,
    SpineGeometryError,
    analyze_spine,
    annotate_spine_manifest,
    estimate_levels,
    filled_of,
    region_of,
    severity_of,
    spine_template,
)
from radscribe.data import read_manifest, write_manifest
from radscribe.data.importers.cadma import read_yolo_labels
from radscribe.templates import parse, render, validate
from radscribe.types import Box, ImageRef, Study

WIDTH, HEIGHT = 300, 800


def column(tilts_deg, spacing=30.0, x0=150.0, y0=100.0, jitter=0.0, seed=0):
    """Vertebra boxes whose centre line has the given tangent tilt (degrees) at each vertebra."""
    tilts = np.radians(np.asarray(tilts_deg, dtype=float))
    steps = np.tan((tilts[1:] + tilts[:-1]) / 2) * spacing
    xs = x0 + np.concatenate([[0.0], np.cumsum(steps)])
    xs = xs + np.random.default_rng(seed).normal(0, jitter, len(xs))
    ys = y0 + spacing * np.arange(len(xs))
    return [Box.from_pixels("vertebra", (x - 15, y - 11, x + 15, y + 11), WIDTH, HEIGHT) for x, y in zip(xs, ys)]


def c_curve(angle, n=17, bulge_image_right=True):
    """A C curve: the tilt turns smoothly through ``angle`` degrees from the top to the bottom vertebra."""
    sign = 1 if bulge_image_right else -1
    return column(sign * angle / 2 * np.cos(np.linspace(0, np.pi, n)))


def test_straight_column_has_no_curve():
    geometry = analyze_spine(column([0.0] * 17), (WIDTH, HEIGHT))
    assert geometry.curves == ()
    assert geometry.alignment == "normal" and geometry.severity == "none"
    assert geometry.levels == estimate_levels(17) == tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6))


def test_tilted_straight_column_has_no_curve():
    assert analyze_spine(column([8.0] * 15), (WIDTH, HEIGHT)).curves == ()


@pytest.mark.parametrize("angle", [15.0, 30.0, 55.0])
def test_c_curve_angle_is_recovered(angle):
    geometry = analyze_spine(c_curve(angle), (WIDTH, HEIGHT))
    (curve,) = geometry.curves
    # The local quadratic fits overshoot a little at the column's ends, where the tilt is flat.
    assert curve.angle == pytest.approx(angle, rel=0.12)
    assert curve.apex == 8  # the middle vertebra bulges most
    assert (curve.upper, curve.lower) == (0, 16)
    assert curve.severity == severity_of(curve.angle)


def test_c_curve_with_box_jitter_stays_close():
    boxes = column(40 / 2 * np.cos(np.linspace(0, np.pi, 17)), jitter=1.5, seed=3)
    (curve,) = analyze_spine(boxes, (WIDTH, HEIGHT)).curves
    assert curve.angle == pytest.approx(40.0, abs=8.0)


def test_convexity_is_in_patient_terms():
    # Radiographs show the patient's right on the viewer's left: bulging to image right is patient left.
    (right_bulge,) = analyze_spine(c_curve(30, bulge_image_right=True), (WIDTH, HEIGHT)).curves
    (left_bulge,) = analyze_spine(c_curve(30, bulge_image_right=False), (WIDTH, HEIGHT)).curves
    assert right_bulge.convexity == "left" and right_bulge.apex_deviation > 0
    assert left_bulge.convexity == "right" and left_bulge.apex_deviation < 0


def test_s_curve_gives_two_opposite_curves():
    tilts = 35 / 2 * np.cos(np.linspace(0, 2 * np.pi, 17))
    geometry = analyze_spine(column(tilts), (WIDTH, HEIGHT))
    upper, lower = geometry.curves
    assert upper.lower == lower.upper == 8  # they share the end vertebra at the inflection point
    assert {upper.convexity, lower.convexity} == {"left", "right"}
    assert upper.angle == pytest.approx(35, rel=0.12) and lower.angle == pytest.approx(35, rel=0.12)
    assert upper.region == "thoracic" and lower.region == "thoracolumbar"  # apices T5 and L1 of T1-L5
    assert geometry.alignment == "scoliosis" and geometry.severity == "moderate"


def test_order_of_boxes_does_not_matter():
    boxes = c_curve(30)
    assert analyze_spine(boxes[::-1], (WIDTH, HEIGHT)) == analyze_spine(boxes, (WIDTH, HEIGHT))


def test_cut_offs_regions_and_levels():
    assert [severity_of(a) for a in (0, 9.99, 10, 24.9, 25, 39.9, 40)] == ["none", "none", "mild", "mild", "moderate", "moderate", "severe"]
    assert [region_of(level) for level in ("C7", "T11", "T12", "L1", "L2", "L5")] == [
        "thoracic", "thoracic", "thoracolumbar", "thoracolumbar", "lumbar", "lumbar",
    ]
    assert estimate_levels(3, "top-T1") == ("T1", "T2", "T3")
    assert estimate_levels(20)[0] == "C5"
    with pytest.raises(SpineGeometryError):
        estimate_levels(40)
    with pytest.raises(SpineGeometryError, match="at least 3"):
        analyze_spine(column([0.0, 0.0]), (WIDTH, HEIGHT))


def test_template_and_boxes_from_geometry():
    geometry = analyze_spine(c_curve(30), (WIDTH, HEIGHT))
    filled = spine_template(geometry)
    assert validate(filled) == []
    (curve,) = filled.get("alignment.curves")
    assert curve.values["angle"] == pytest.approx(30.0, rel=0.12)
    assert [box.label for box in curve.boxes] == ["thoracic curve 1", "apex of curve 1 (T9)"]
    assert "centre-line Cobb proxy" in filled.get("impression.text")


# ------------------------------------------------------------------------------------------- pipeline


def _cadma_studies(cadma_dir, count):
    studies = []
    for label_file in sorted((cadma_dir / "valid" / "labels").glob("*.txt"))[:count]:
        image = cadma_dir / "valid" / "images" / f"{label_file.stem}.jpg"
        width, height = Image.open(image).size
        boxes = read_yolo_labels(label_file, ("vertebra",), "cadma")
        studies.append(Study(label_file.stem, [ImageRef(str(image), width, height, view="AP")], split="valid", boxes=boxes))
    return studies


def test_pipeline_on_real_cadma_labels_is_reproducible(cadma_dir, tmp_path):
    source = tmp_path / "in" / "cadma.jsonl"
    write_manifest(_cadma_studies(cadma_dir, 12), source)
    out = tmp_path / "out" / "spine.jsonl"
    summary = annotate_spine_manifest(source, out, overlays_dir=tmp_path / "overlays")
    assert summary.annotated == summary.valid == 12 and not summary.skipped
    assert sum(summary.severity.values()) == 12
    for study in read_manifest(out):
        record = study.metadata["spine_annotation"]
        assert record["status"] == "annotated" and record["valid"] and record["angle_method"] == "centre-line Cobb proxy"
        # Every derived value comes back from the original boxes alone.
        originals = [box for box in study.boxes if box.source != DERIVED_SOURCE]
        image = study.images[0]
        recomputed = spine_template(analyze_spine(originals, (image.width, image.height)))
        assert filled_of(study) == parse(render(recomputed), "spine-ap-alignment")
        assert render(filled_of(study)) == study.structured  # round trip of a real derived template
        labels = [box.label for box in study.boxes if box.source == DERIVED_SOURCE]
        assert labels[0] == "spine column" and labels[-1] == "L5"
        assert (tmp_path / "overlays" / f"{study.id}.png").stat().st_size > 0
    # Running again on the output replaces derived boxes instead of adding more.
    again = tmp_path / "out" / "again.jsonl"
    annotate_spine_manifest(out, again)
    assert [s.to_dict() for s in read_manifest(again)] == [s.to_dict() for s in read_manifest(out)]


def test_pipeline_gives_explicit_status_for_unusable_studies(tmp_path):
    studies = [
        Study("two-boxes", [ImageRef("missing.jpg", WIDTH, HEIGHT)], boxes=column([0.0, 0.0])),
        Study("no-image"),
        Study("fine", [ImageRef("missing.jpg", WIDTH, HEIGHT)], boxes=c_curve(20)),
    ]
    source = tmp_path / "in.jsonl"
    write_manifest(studies, source)
    summary = annotate_spine_manifest(source, tmp_path / "out.jsonl")
    assert summary.annotated == 1 and [study_id for study_id, _ in summary.skipped] == ["two-boxes", "no-image"]
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["metadata"]["spine_annotation"]["status"] for line in lines] == ["skipped", "skipped", "annotated"]
    assert "at least 3" in lines[0]["metadata"]["spine_annotation"]["reason"]


def test_every_real_cadma_label_file_gives_a_valid_round_tripping_template(cadma_dir):
    count = 0
    for label_file in sorted(cadma_dir.glob("*/labels/*.txt")):
        boxes = read_yolo_labels(label_file, ("vertebra",), "cadma")
        geometry = analyze_spine(boxes, (229, 416))  # size only scales angles; every file must still validate
        markdown = render(spine_template(geometry))
        parsed = parse(markdown, "spine-ap-alignment")
        assert render(parsed) == markdown, label_file.name
        assert validate(parsed) == [], label_file.name
        assert all(math.isfinite(curve.angle) for curve in geometry.curves)
        count += 1
    assert count == 1188
