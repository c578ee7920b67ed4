"""radscribe.volumes on synthetic volumes and label maps whose geometry is known exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel", reason="radscribe[volumes] (nibabel) is not installed")

from radscribe.data import read_manifest
from radscribe.grounding import create_codec
from radscribe.tasks import build_examples
from radscribe.volumes import (
    GroundingOptions,
    LexiconMapper,
    ProducerError,
    Rendering,
    SchemaFileError,
    check_totalsegmentator,
    ground_dataset,
    ground_slice,
    label_boxes,
    load_schema,
    mask_from_boxes,
    parse_schema,
    read_reports,
    read_volume,
    render_slice,
    select_slices,
    to_display,
)
from radscribe.volumes.llm import LLMMapper

from dicom_files import secondary_capture

SHAPE = (64, 48, 20)          # display axes: i -> patient left, j -> posterior, k -> superior
SPACING = (0.8, 1.25, 3.0)    # anisotropic, mm
TS = load_schema("totalsegmentator")
IDS = TS.ids
# class -> (i0, i1, j0, j1, k0, k1), half-open voxel ranges in display orientation
OBJECTS = {
    "liver": (6, 22, 10, 30, 2, 12),        # on the patient's right = image left
    "kidney_left": (40, 52, 24, 36, 8, 16),  # patient left = image right
    "heart": (26, 38, 4, 16, 12, 19),
}
REPORT = (
    "The liver is enlarged. A cyst in the left kidney. The right kidney is unremarkable. "
    "Status post cholecystectomy. Heart size is normal. No rib fractures."
)


def design() -> tuple[np.ndarray, np.ndarray]:
    """(CT in HU, label map) in display orientation."""
    ct = np.full(SHAPE, -1000, dtype=np.int16)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for name, (i0, i1, j0, j1, k0, k1) in OBJECTS.items():
        ct[i0:i1, j0:j1, k0:k1] = 50
        labels[i0:i1, j0:j1, k0:k1] = IDS[name]
    labels[60:62, 2:4, 5] = IDS["spleen"]  # a 4-pixel speck: below the minimum area
    return ct, labels


def stored(array: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """The display-orientation ``array`` as a file in ``orientation`` would hold it, with its RAS affine."""
    sx, sy, sz = SPACING
    if orientation == "LPS":    # axes already toward left/posterior: negative RAS diagonal
        return array, np.diag([-sx, -sy, sz, 1.0])
    if orientation == "RAS":    # axes toward right/anterior: flip i and j
        return array[::-1, ::-1, :].copy(), np.diag([sx, sy, sz, 1.0])
    if orientation == "PLS":    # axes swapped: file axis 0 runs posterior, axis 1 toward the left
        affine = np.zeros((4, 4))
        affine[1, 0], affine[0, 1], affine[2, 2], affine[3, 3] = -sy, -sx, sz, 1.0
        return array.transpose(1, 0, 2).copy(), affine
    raise ValueError(orientation)


def expected_box(name: str) -> tuple[float, float, float, float]:
    i0, i1, j0, j1, _, _ = OBJECTS[name]
    return (i0 / SHAPE[0], j0 / SHAPE[1], i1 / SHAPE[0], j1 / SHAPE[1])


def write_case(folder: Path, orientation: str, study: str = "case") -> tuple[Path, Path]:
    ct, labels = design()
    volumes, masks = folder / "volumes", folder / "masks"
    volumes.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    data, affine = stored(ct, orientation)
    nibabel.save(nibabel.Nifti1Image(data, affine), volumes / f"{study}.nii.gz")
    data, affine = stored(labels, orientation)
    nibabel.save(nibabel.Nifti1Image(data, affine), masks / f"{study}.nii.gz")
    return volumes / f"{study}.nii.gz", masks


# ----- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", ["LPS", "RAS", "PLS"])
def test_display_orientation_recovers_the_design_and_its_spacing(tmp_path, orientation):
    path, _ = write_case(tmp_path, orientation)
    volume = to_display(read_volume(path))
    assert np.array_equal(volume.data, design()[0])
    assert volume.spacing == pytest.approx(SPACING)


def test_dicom_series_sorted_by_position_with_spacing_and_hu(tmp_path):
    ct, _ = design()
    folder = tmp_path / "series"
    folder.mkdir()
    order = list(range(SHAPE[2]))
    random.Random(0).shuffle(order)  # files written in scrambled order
    for number, k in enumerate(order):
        pixels = (ct[:, :, k].T.astype(np.int32) + 1024).astype("<u2").tobytes()  # rows = j, columns = i
        (folder / f"f{number:03d}.dcm").write_bytes(secondary_capture(
            pixels, SHAPE[1], SHAPE[0], Modality="CT", ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            ImagePositionPatient=[-20.0, 15.0, 100.0 + SPACING[2] * k], PixelSpacing=[SPACING[1], SPACING[0]],
            RescaleSlope=1, RescaleIntercept=-1024, SeriesInstanceUID="1.2.3",
        ))
    (folder / "README.txt").write_text("not DICOM")
    volume = read_volume(folder)
    assert volume.modality == "CT"
    shown = to_display(volume)
    assert np.array_equal(shown.data, ct)
    assert shown.spacing == pytest.approx(SPACING)


# ----- masks -> boxes -----------------------------------------------------------------------------
def test_label_boxes_exact_per_component_and_per_class_with_sides():
    schema = parse_schema({"name": "lungs", "classes": {1: "lung", 2: "kidney_left"}})
    labels = np.zeros((40, 100), dtype=np.uint8)
    labels[5:30, 10:40] = 1      # image left = patient right
    labels[8:33, 60:90] = 1      # image right = patient left
    labels[35:37, 45:47] = 1     # 4 pixels: noise
    labels[20:25, 70:80] = 2
    per_component = label_boxes(labels, schema, min_area=10, per="component")
    lungs = sorted((b for b in per_component if b.class_name == "lung"), key=lambda b: b.box.x_min)
    assert [b.box.xyxy for b in lungs] == [(10 / 100, 5 / 40, 40 / 100, 30 / 40), (60 / 100, 8 / 40, 90 / 100, 33 / 40)]
    assert [b.side for b in lungs] == ["right", "left"]
    assert [b.area for b in lungs] == [25 * 30, 25 * 30 - 50]  # the kidney covers 50 lung pixels
    kidney = [b for b in per_component if b.class_name == "kidney_left"]
    assert kidney[0].side == "left" and kidney[0].box.xyxy == (0.7, 0.5, 0.8, 25 / 40)
    # per class: one box per class and side; the noise stays out, even at min_area 5 (it has 4 pixels)
    per_class = label_boxes(labels, schema, min_area=5, per="class")
    assert sorted(b.box.xyxy for b in per_class if b.class_name == "lung") == [b.box.xyxy for b in lungs]
    # flipped display convention: the same components change side
    flipped = label_boxes(labels, schema, per="component", patient_left_on_image_right=False)
    assert sorted(b.side for b in flipped if b.class_name == "lung") == ["left", "right"]
    assert next(b for b in flipped if b.class_name == "kidney_left").side == "left"  # the name decides


def test_boxes_to_masks_to_boxes_round_trip_exactly():
    rng = np.random.default_rng(1)
    width, height = 229, 416
    schema = parse_schema({"classes": {i + 1: f"v{i}" for i in range(12)}})
    from radscribe.types import Box

    for _ in range(20):
        boxes = []
        for i in range(12):
            c0, r0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
            c1, r1 = c0 + rng.integers(3, 20), r0 + rng.integers(3, 20)
            boxes.append(Box(f"v{i}", c0 / width, r0 / height, c1 / width, r1 / height))
        for box in boxes:  # one class per mask: overlaps cannot hide pixels
            found = label_boxes(mask_from_boxes([box], width, height, schema.ids), schema, min_area=1)
            assert len(found) == 1 and found[0].box.xyxy == pytest.approx(box.xyxy, abs=1e-12)


# ----- slices ---------------------------------------------------------------------------------------
def test_ct_windows_and_mr_percentiles():
    hu = np.array([[-1000.0, -600.0, 40.0, 400.0, 3000.0]])
    stacked = render_slice(hu, Rendering("CT", ("lung", "soft_tissue", "bone")))
    assert stacked.shape == (1, 5, 3)
    assert stacked[0, :, 0].tolist() == [60, 128, 236, 255, 255]     # lung: level -600, width 1500
    assert stacked[0, :, 1].tolist() == [0, 0, 128, 255, 255]        # soft tissue: 40 / 400
    assert render_slice(hu, Rendering("CT", ("soft_tissue",))).shape == (1, 5)
    mr = np.array([[0.0, 50.0, 100.0, 500.0]])
    assert render_slice(mr, Rendering("MR", ()), (0.0, 100.0)).tolist() == [[0, 128, 255, 255]]
    with pytest.raises(ValueError, match="unknown CT window"):
        Rendering("CT", ("lungs",))


def test_select_slices_every_present_and_limit():
    assert select_slices(10, every=3) == [0, 3, 6, 9]
    assert select_slices(10, every=2, present=[1, 2, 3, 4, 8]) == [2, 4, 8]
    assert select_slices(100, present=list(range(20, 60)), limit=5) == [20, 30, 40, 49, 59]


# ----- mentions -------------------------------------------------------------------------------------
def test_lexicon_mentions_plurals_sides_and_absence():
    mapper = LexiconMapper(TS)
    found = {m.text: m for m in mapper.map_report(
        "Right upper lobe nodule. The lungs are clear. Left kidney has been removed. No rib fractures. "
        "Status post cholecystectomy. Degenerative change of the thoracic vertebrae. The right lung and heart are normal."
    )}
    assert found["Right upper lobe"].classes == ("lung_upper_lobe_right",) and found["Right upper lobe"].side == "right"
    assert len(found["lungs"].classes) == 5
    assert found["Left kidney"].classes == ("kidney_left",) and found["Left kidney"].status == "absent"
    assert found["rib"].status == "present" and len(found["rib"].classes) == 24   # a finding negated, not the ribs
    assert found["cholecystectomy"].status == "absent"
    assert found["thoracic vertebrae"].classes == tuple(f"vertebrae_T{n}" for n in range(12, 0, -1))
    assert found["right lung"].classes == ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
    assert found["heart"].side is None  # "right" belongs to the lung before it


def test_user_schema_lexicon_from_class_names_and_errors(tmp_path):
    schema = parse_schema({"classes": {1: "lung", 2: "spinal_canal"}})
    mentions = LexiconMapper(schema).map_report("Left lung opacity. Narrow spinal canal.")
    assert [(m.text, m.classes, m.side) for m in mentions] == [("Left lung", ("lung",), "left"), ("spinal canal", ("spinal_canal",), None)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: {1: liver}\nlexicon: {hepatic: [livr]}\n")
    with pytest.raises(SchemaFileError, match=r"bad.yaml: field 'lexicon.hepatic'"):
        load_schema(bad)
    with pytest.raises(SchemaFileError, match="classes"):
        parse_schema({"classes": {0: "background"}})


# ----- the intersection rule and the whole run ----------------------------------------------------
def test_ground_slice_grounds_only_present_classes_on_the_stated_side():
    schema = parse_schema({"classes": {1: "lung", 2: "heart"}})
    labels = np.zeros((50, 100), dtype=np.uint8)
    labels[10:40, 60:90] = 1  # the patient's left lung only
    report = "Left lung opacity. Right lung is clear. The heart is normal."
    mentions = LexiconMapper(schema).map_report(report)
    result = ground_slice(report, mentions, label_boxes(labels, schema), (100, 50), schema)
    assert [g.phrase for g in result.grounded] == ["left lung"]
    assert result.text == "Left lung opacity."
    assert result.grounded_text == "<p bbox=<loc0307><loc0102><loc0460><loc0409> id=<seg001>>Left lung</p> opacity."
    assert sorted(why for _, why in result.skipped) == ["its class is not on this slice", "its class is on this slice, but not on the stated side"]
    decoded = create_codec("radgrounder").decode(result.grounded_text, (100, 50))
    assert decoded.boxes[0].xyxy == pytest.approx((0.6, 0.2, 0.9, 0.8), abs=1 / 512)


@pytest.mark.parametrize("orientation", ["LPS", "RAS"])
def test_ground_dataset_writes_a_manifest_that_the_grounding_tasks_read(tmp_path, orientation):
    volume, masks = write_case(tmp_path, orientation)
    reports = tmp_path / "reports.jsonl"
    reports.write_text(json.dumps({"id": "case", "text": REPORT}) + "\n")
    out = tmp_path / "out" / "grounded.jsonl"
    summary = ground_dataset([volume], masks, read_reports(reports), TS, LexiconMapper(TS), out,
                             GroundingOptions(max_slices=None, per="class"))
    studies = read_manifest(out)
    liver_slices = set(range(*OBJECTS["liver"][4:]))
    kidney_slices = set(range(*OBJECTS["kidney_left"][4:]))
    heart_slices = set(range(*OBJECTS["heart"][4:]))
    assert {s.metadata["slice"]["index"] for s in studies} == liver_slices | kidney_slices | heart_slices
    assert summary.slices == len(studies) and summary.grounded_phrases == 3
    assert summary.mention_skips == {"absent": 1, "class on no selected slice": 2}  # gallbladder; right kidney, ribs
    for study in studies:
        k = study.metadata["slice"]["index"]
        expected = {"liver": "liver", "left kidney": "kidney_left", "heart": "heart"}
        present = {p for p, name in expected.items() if k in set(range(*OBJECTS[name][4:]))}
        assert {box.label for box in study.boxes} == present
        for box in study.boxes:
            assert box.xyxy == pytest.approx(expected_box(expected[box.label]), abs=1e-12)
        assert study.images[0].width == SHAPE[0] and study.images[0].height == SHAPE[1]
        assert study.metadata["slice"]["spacing_mm"] == pytest.approx(SPACING)
        assert "<p bbox=" in study.metadata["grounding"]["grounded_report"]
        assert "right kidney" not in study.report["findings"]
    # the slice PNG is the CT in three windows, liver (50 HU) where the liver box is
    from PIL import Image

    sample = next(s for s in studies if s.metadata["slice"]["index"] == 8)
    image = np.asarray(Image.open(out.parent / sample.images[0].path))
    assert image.shape == (SHAPE[1], SHAPE[0], 3)
    i0, i1, j0, j1, _, _ = OBJECTS["liver"]
    assert (image[j0:j1, i0:i1, 1] == 134).all() and (image[:, :3, 1] == 0).all()
    # radscribe train's tasks read the output as it is
    built = build_examples(studies, out.parent, ["phrase_grounding", "grounded_report"], "radgrounder")
    assert built.counts["phrase_grounding"] == sum(len({b.label for b in s.boxes}) for s in studies)
    assert built.counts["grounded_report"] == len(studies)
    codec = create_codec("radgrounder")
    for example in built.by_task()["phrase_grounding"]:
        decoded = codec.decode(example.target, tuple(example.metadata["image_size"]))
        truth = expected_box({"liver": "liver", "left kidney": "kidney_left", "heart": "heart"}[example.metadata["phrase"]])
        assert decoded.boxes[0].xyxy == pytest.approx(truth, abs=1 / 512)


@pytest.mark.slow  # imports torch (20 s on the shared 2-core machine)
def test_train_loader_builds_phrase_grounding_from_the_output(tmp_path):
    pytest.importorskip("torch")
    from radscribe.train.data import load_split

    volume, masks = write_case(tmp_path, "RAS")
    out = tmp_path / "grounded.jsonl"
    ground_dataset([volume], masks, {"case": REPORT}, TS, LexiconMapper(TS), out, GroundingOptions(max_slices=4))
    split = load_split(out, ["phrase_grounding"], create_codec("radgrounder"))
    assert len(split.studies) == 4 and split.examples
    assert all(Path(example.images[0]).is_file() for example in split.examples)


def test_ground_dataset_resumes_and_explains_skips(tmp_path):
    volume_a, masks = write_case(tmp_path, "LPS", "a")
    volume_b, _ = write_case(tmp_path, "RAS", "b")
    reports = {"a": REPORT, "b": "The liver is enlarged.", "c": "Heart normal."}
    nibabel.save(nibabel.Nifti1Image(design()[0], np.diag([1.0, 1, 1, 1])), tmp_path / "volumes" / "c.nii.gz")  # no mask
    out = tmp_path / "grounded.jsonl"
    options = GroundingOptions(max_slices=3)
    first = ground_dataset([volume_a], masks, reports, TS, LexiconMapper(TS), out, options)
    assert first.slices == 3
    # pretend the run stopped after study a: restore its partial files
    lines = out.read_text()
    out.unlink()
    out.with_name(out.name + ".partial").write_text(lines + '{"version": 1, "id": "b_z0001", "patient_id": "b"')  # torn
    out.with_name(out.name + ".partial.done").write_text(json.dumps({"id": "a"}) + "\n")
    sources = [volume_a, volume_b, tmp_path / "volumes" / "c.nii.gz"]
    summary = ground_dataset(sources, masks, reports, TS, LexiconMapper(TS), out, options)
    assert summary.resumed == 1 and summary.grounded_studies == 1
    assert [reason for _, reason in summary.skipped] == [f"no label map in {masks} (expected c.nii.gz, c.png or a c/ folder)"]
    studies = read_manifest(out)
    assert sorted({s.patient_id for s in studies}) == ["a", "b"] and len(studies) == 6
    assert not out.with_name(out.name + ".partial").exists()


def test_two_d_png_masks_on_a_radiograph(tmp_path):
    from PIL import Image

    schema = parse_schema({"classes": {1: "lung", 2: "heart"}})
    image = np.zeros((60, 80), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "film.png")
    labels = np.zeros((60, 80), dtype=np.uint8)
    labels[10:50, 5:35], labels[10:50, 45:75], labels[30:50, 35:60] = 1, 1, 2
    (tmp_path / "masks").mkdir()
    Image.fromarray(labels).save(tmp_path / "masks" / "film.png")
    out = tmp_path / "grounded.jsonl"
    summary = ground_dataset([tmp_path / "film.png"], tmp_path / "masks", {"film": "Right lung clear. Heart enlarged."},
                             schema, LexiconMapper(schema), out)
    (study,) = read_manifest(out)
    assert summary.grounded_phrases == 2
    assert {b.label: b.xyxy for b in study.boxes} == {"right lung": (5 / 80, 10 / 60, 35 / 80, 50 / 60), "heart": (35 / 80, 0.5, 0.75, 50 / 60)}
    assert study.images[0].path == "film.png"


def test_per_class_mask_folder_as_totalsegmentator_writes_it(tmp_path):
    ct, labels = design()
    (tmp_path / "volumes").mkdir()
    nibabel.save(nibabel.Nifti1Image(ct, np.diag([-0.8, -1.25, 3.0, 1])), tmp_path / "volumes" / "s.nii.gz")
    folder = tmp_path / "masks" / "s"
    folder.mkdir(parents=True)
    for name in ("liver", "heart"):
        nibabel.save(nibabel.Nifti1Image((labels == IDS[name]).astype(np.uint8), np.diag([-0.8, -1.25, 3.0, 1])), folder / f"{name}.nii.gz")
    nibabel.save(nibabel.Nifti1Image(np.zeros(SHAPE, np.uint8), np.diag([-0.8, -1.25, 3.0, 1])), folder / "unknown_thing.nii.gz")
    out = tmp_path / "g.jsonl"
    summary = ground_dataset([tmp_path / "volumes" / "s.nii.gz"], tmp_path / "masks", {"s": "Liver and heart."}, TS,
                             LexiconMapper(TS), out, GroundingOptions(max_slices=None))
    assert summary.grounded_phrases == 2 and any("unknown_thing" in w for w in summary.warnings)
    assert {s.metadata["slice"]["index"] for s in read_manifest(out)} == set(range(2, 19))


def test_mismatched_grid_is_a_clear_skip(tmp_path):
    volume, masks = write_case(tmp_path, "LPS")
    ct, labels = design()
    nibabel.save(nibabel.Nifti1Image(labels[:, :, :10], np.diag([-0.8, -1.25, 3.0, 1])), masks / "case.nii.gz")
    summary = ground_dataset([volume], masks, {"case": REPORT}, TS, LexiconMapper(TS), tmp_path / "g.jsonl")
    ((_, reason),) = summary.skipped
    assert "label map shape (64, 48, 10) differs from the volume's (64, 48, 20)" in reason


# ----- optional producers and mappers ----------------------------------------------------------------
def test_totalsegmentator_missing_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ProducerError, match="not installed"):
        check_totalsegmentator()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path))
    with pytest.raises(ProducerError, match="never downloads"):
        check_totalsegmentator()


def test_llm_mapper_on_a_local_stub_server_is_cached_and_validated(tmp_path):
    import http.server
    import threading

    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body["messages"][1]["content"])
            answer = [{"phrase": "left kidney", "classes": ["kidney_left", "not_a_class"], "side": "left"},
                      {"phrase": "moon", "classes": ["liver"]}]
            reply = {"choices": [{"message": {"content": "```json\n" + json.dumps(answer) + "\n```"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1"
        mapper = LLMMapper(TS, endpoint, "stub", tmp_path / "cache.jsonl")
        (mention,) = mapper.map_report("Cyst in the left kidney.")
        assert (mention.text, mention.classes, mention.side, mention.source) == ("left kidney", ("kidney_left",), "left", "llm:stub")
        again = LLMMapper(TS, endpoint, "stub", tmp_path / "cache.jsonl").map_report("Cyst in the left kidney.")
        assert again == [mention] and len(calls) == 1
    finally:
        server.shutdown()


# ----- the command ------------------------------------------------------------------------------------
def test_annotate_ground_command(tmp_path):
    from typer.testing import CliRunner

    from radscribe.cli.main import app

    volume, masks = write_case(tmp_path, "RAS")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "case.txt").write_text(REPORT)
    out = tmp_path / "grounded.jsonl"
    args = ["annotate", "ground", str(tmp_path / "volumes"), "--masks", str(masks), "--reports", str(tmp_path / "reports"),
            "--schema", "totalsegmentator", "--out", str(out), "--max-slices", "5", "--per", "component"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1/1 studies grounded" in result.output and "5 slices" in result.output
    assert "3 of 6 mentions grounded (3.00 per grounded report)" in " ".join(result.output.split())
    assert "absent 1" in result.output and "class on no selected slice 2" in result.output
    assert len(read_manifest(out)) == 5 and len(list((tmp_path / "grounded_slices" / "case").glob("*.png"))) == 5
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and len(read_manifest(out)) == 5
    bad = CliRunner().invoke(app, [*args[:-2], "--per", "organ"])
    assert bad.exit_code != 0 and "--per: expected one of component, class" in bad.output
    (tmp_path / "empty").mkdir()
    segment = CliRunner().invoke(app, [*args[:4], str(tmp_path / "empty"), *args[5:], "--segment"])
    assert segment.exit_code != 0 and "TotalSegmentator" in segment.output


# ----- real boxes ---------------------------------------------------------------------------------------
def test_cadma_vertebra_boxes_survive_masks_exactly(cadma_dir, tmp_path):
    from radscribe.data import import_dataset
    from radscribe.types import Box

    manifest = tmp_path / "cadma.jsonl"
    import_dataset("cadma", cadma_dir / "valid", manifest)
    checked = 0
    for study in read_manifest(manifest)[:30]:
        width, height = study.images[0].width, study.images[0].height
        schema = parse_schema({"classes": {n + 1: f"v{n}" for n in range(len(study.boxes))}})
        for n, box in enumerate(study.boxes):
            box = Box(f"v{n}", *box.xyxy)
            (found,) = label_boxes(mask_from_boxes([box], width, height, schema.ids), schema, min_area=1)
            pixel = (round(box.x_min * width), round(box.y_min * height), round(box.x_max * width), round(box.y_max * height))
            assert found.box.xyxy == (pixel[0] / width, pixel[1] / height, pixel[2] / width, pixel[3] / height)
            assert max(abs(a - b) for a, b in zip(found.box.to_pixels(width, height), box.to_pixels(width, height))) <= 0.5 + 1e-9
            checked += 1
    assert checked > 300
