"""Importers on small fixtures built here: credentialed layouts (MIMIC-CXR, VinDr), SLAKE, Open-i XML,
users' own tables, YOLO edge cases, the error policy and atomic output."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radscribe.data import RecordError, import_dataset, read_manifest, resolve_image_path
from radscribe.data.importers.common import report_sections

jsonschema = pytest.importorskip("jsonschema")


def _png(path: Path, width: int = 40, height: int = 30, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), value, np.uint8)).save(path)
    return path


def _jpg(path: Path, width: int = 24, height: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), 90, np.uint8)).save(path, format="JPEG")
    return path


def _csv(path: Path, rows: list[list[object]], compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = gzip.open(path, "wt", newline="") if compress else path.open("w", newline="")
    with handle:
        csv.writer(handle).writerows(rows)
    return path


def _validate(manifest: Path) -> None:
    from radscribe.data.manifest import SCHEMA_PATH

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        errors = list(validator.iter_errors(json.loads(line)))
        assert not errors, f"{manifest}:{number}: {errors[0].message}"


# --- YOLO / CADMA --------------------------------------------------------------------------------


def _yolo(root: Path, labels: dict[str, str], size=(50, 100)) -> Path:
    for stem, text in labels.items():
        _png(root / "images" / f"{stem}.png", *size)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_yolo_single_folder_sorts_top_to_bottom_and_reads_data_yaml(tmp_path):
    source = _yolo(tmp_path / "valid", {"a": "1 0.5 0.8 0.2 0.1\n0 0.5 0.2 0.2 0.1 0.9\n"})
    (tmp_path / "data.yaml").write_text("names: ['disc', 'vertebra']\n")
    out = tmp_path / "out" / "m.jsonl"
    import_dataset("yolo", source, out)
    (study,) = read_manifest(out)
    assert study.split == "valid"
    assert [box.label for box in study.boxes] == ["disc", "vertebra"]
    assert study.boxes[0].xyxy == pytest.approx((0.4, 0.15, 0.6, 0.25)) and study.boxes[0].score == 0.9
    assert (study.images[0].width, study.images[0].height) == (50, 100)
    assert resolve_image_path(out, study.images[0].path).resolve() == (source / "images" / "a.png").resolve()
    _validate(out)


def test_cadma_split_folders_polygons_and_background_images(tmp_path):
    _yolo(tmp_path / "train", {"a": "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n"})
    _png(tmp_path / "train" / "images" / "background.png")
    _yolo(tmp_path / "valid", {"b": "0 0.5 0.5 0.2 0.2\n"})
    out = tmp_path / "m.jsonl"
    import_dataset("cadma", tmp_path, out)
    studies = {study.id: study for study in read_manifest(out)}
    assert {key: study.split for key, study in studies.items()} == {"a": "train", "background": "train", "b": "valid"}
    assert studies["a"].boxes[0].xyxy == pytest.approx((0.1, 0.1, 0.3, 0.4)) and studies["a"].boxes[0].label == "vertebra"
    assert studies["background"].boxes == []


def test_yolo_line_with_four_numbers_names_file_and_line(tmp_path):
    source = _yolo(tmp_path / "train", {"a": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n"})
    with pytest.raises(RecordError) as raised:
        import_dataset("cadma", source, tmp_path / "m.jsonl")
    assert raised.value.where.endswith("a.txt:2")
    assert "expected 5 numbers 'class cx cy w h' (normalised), got 4" in str(raised.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 120 200 40 30", r"normalised to \[0, 1\], got 120 200 40 30"),
        ("0 0.5 zero 0.2 0.2", "expected numbers"),
        ("1 0.5 0.5 0.2 0.2", "class index below 1"),
        ("0.5 0.5 0.5 0.2 0.2", "expected a class index"),
    ],
)
def test_yolo_bad_lines(tmp_path, line, expected):
    source = _yolo(tmp_path / "train", {"a": line + "\n"})
    with pytest.raises(RecordError, match=expected):
        import_dataset("cadma", source, tmp_path / "m.jsonl")


def test_skip_policy_reports_reasons_and_keeps_good_records(tmp_path):
    source = _yolo(tmp_path / "train", {"good": "0 0.5 0.5 0.2 0.2\n", "bad": "0 0.5 0.5\n"})
    (source / "images" / "empty.png").write_bytes(b"")
    summary = import_dataset("cadma", source, tmp_path / "m.jsonl", on_error="skip")
    assert summary.imported == 1
    assert [study.id for study in read_manifest(tmp_path / "m.jsonl")] == ["good"]
    reasons = summary.reasons()
    assert reasons["expected 5 numbers 'class cx cy w h' (normalised), got 3"] == 1
    assert reasons["unreadable image empty.png: file is empty (0 bytes)"] == 1


def test_failed_import_writes_nothing_and_keeps_an_existing_manifest(tmp_path):
    good = _yolo(tmp_path / "good" / "train", {"a": "0 0.5 0.5 0.2 0.2\n"})
    bad = _yolo(tmp_path / "bad" / "train", {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.5\n"})
    fresh = tmp_path / "fresh.jsonl"
    with pytest.raises(RecordError):
        import_dataset("cadma", bad, fresh)
    assert not fresh.exists()
    existing = tmp_path / "existing.jsonl"
    import_dataset("cadma", good, existing)
    before = existing.read_bytes()
    with pytest.raises(RecordError):
        import_dataset("cadma", bad, existing)
    assert existing.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad", "existing.jsonl", "good"]  # no temp files left


def test_unknown_importer_and_unknown_option(tmp_path):
    with pytest.raises(KeyError, match="unknown importer 'dicomdir'; known: cadma, csv, iu-xray"):
        import_dataset("dicomdir", tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="importer 'cadma' has no option 'nmes'; its options: names"):
        import_dataset("cadma", tmp_path, tmp_path / "m.jsonl", options={"nmes": "x"})


# --- VQA-RAD error handling ---------------------------------------------------------------------


def test_vqa_rad_missing_field_and_missing_image(tmp_path):
    _jpg(tmp_path / "images" / "synpic1.jpg")
    records = [
        {"qid": 1, "image_name": "synpic1.jpg", "question": "Is it normal?", "answer": "yes", "answer_type": "CLOSED ", "question_type": "ABN", "image_organ": "CHEST"},
        {"qid": 2, "image_name": "synpic2.jpg", "question": "Where?", "answer": "left", "answer_type": "OPEN"},
        {"qid": 3, "image_name": "synpic1.jpg", "question": "How many?", "answer": 3, "answer_type": "OPEN"},
        {"qid": 4, "image_name": "synpic3.jpg", "question": "What?", "answer_type": "OPEN"},
    ]
    (tmp_path / "trainset.json").write_text(json.dumps(records))
    summary = import_dataset("vqa-rad", tmp_path, tmp_path / "m.jsonl", on_error="skip")
    (study,) = read_manifest(tmp_path / "m.jsonl")
    assert [(qa.answer, qa.answer_type) for qa in study.qa] == [("yes", "closed"), ("3", "open")]
    wheres = sorted(error.where for error in summary.skipped)
    assert wheres == [f"{tmp_path / 'trainset.json'}: record 1", f"{tmp_path / 'trainset.json'}: record 3 (qid 4)"]
    assert "expected the field(s) answer" in str(summary.skipped[-1]) or "expected the field(s) answer" in str(summary.skipped[0])


# --- NIH ChestX-ray14, original release tables --------------------------------------------------


def test_nih_original_release_tables(tmp_path):
    _png(tmp_path / "images" / "00000013_005.png", 64, 64)
    _png(tmp_path / "images" / "00000013_026.png", 64, 64)
    _csv(tmp_path / "Data_Entry_2017.csv", [
        ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
         "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", ""],
        ["00000013_005.png", "Emphysema|Infiltration|Pleural_Thickening|Pneumothorax", "5", "13", "60", "M", "AP", "3056", "2544", "0.139", "0.139", ""],
        ["00000013_026.png", "No Finding", "26", "13", "057Y", "M", "AP", "2500", "2048", "0.168", "0.168", ""],
    ])
    _csv(tmp_path / "BBox_List_2017.csv", [
        ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""],
        ["00000013_005.png", "Infiltrate", "512", "256", "256", "128", "", "", ""],
    ])
    out = tmp_path / "m.jsonl"
    import_dataset("nih-cxr14", tmp_path, out)
    first, second = read_manifest(out)
    assert first.patient_id == second.patient_id == "00000013"
    assert first.boxes[0].label == "Infiltration" and first.boxes[0].xyxy == pytest.approx((0.5, 0.25, 0.75, 0.375))
    assert first.metadata["original_width"] == 3056 and second.metadata["age"] == 57
    assert [f.label for f in first.findings] == ["Emphysema", "Infiltration", "Pleural_Thickening", "Pneumothorax"]
    _validate(out)


def test_nih_box_on_unknown_image_and_bad_coordinates(tmp_path):
    _png(tmp_path / "images" / "a.png")
    _csv(tmp_path / "labels.csv", [["image", "finding_labels"], ["a.png", "Mass"]])
    _csv(tmp_path / "boxes.csv", [
        ["image", "finding", "x", "y", "w", "h", "coordinate_space"],
        ["a.png", "Mass", "10", "10", "2000", "10", "original 1024x1024 pixels"],
        ["b.png", "Mass", "10", "10", "20", "10", "original 1024x1024 pixels"],
    ])
    summary = import_dataset("nih-cxr14", tmp_path, tmp_path / "m.jsonl", on_error="skip")
    assert summary.imported == 1
    assert [error.where.rsplit(":", 1)[1] for error in summary.skipped] == ["2", "3"]
    assert "expected a box inside the 1024x1024 image" in summary.skipped[0].reason
    assert "not in labels.csv" in summary.skipped[1].reason


# --- MIMIC-CXR-JPG ------------------------------------------------------------------------------


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def _mimic(root: Path) -> Path:
    chexpert_header = ["subject_id", "study_id", "Atelectasis", "Cardiomegaly", "Edema", "No Finding", "Pleural Effusion"]
    studies = [("10000032", "50414267", ["d1", "d2"], "train"), ("10000032", "53189527", ["d3"], "train"), ("10000764", "57375967", ["d4"], "validate")]
    split_rows = [["dicom_id", "study_id", "subject_id", "split"]]
    metadata_rows = [["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns"]]
    for subject, study, dicoms, split in studies:
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        for index, dicom in enumerate(dicoms):
            _jpg(folder / f"{dicom}.jpg", 30, 20)
            split_rows.append([dicom, study, subject, split])
            metadata_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", "PA" if index == 0 else "LATERAL", 2544, 3056])
        (folder.parent / f"s{study}.txt").write_text(MIMIC_REPORT)
    _csv(root / "mimic-cxr-2.0.0-split.csv.gz", split_rows, compress=True)
    _csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", metadata_rows, compress=True)
    _csv(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz",
        [chexpert_header, ["10000032", "50414267", "", "", "", "1.0", ""], ["10000032", "53189527", "-1.0", "0.0", "1.0", "", "1.0"]],
        compress=True,
    )
    return root


def test_mimic_cxr_layout(tmp_path):
    source = _mimic(tmp_path / "mimic-cxr-jpg")
    out = tmp_path / "m.jsonl"
    import_dataset("mimic-cxr", source, out)
    studies = {study.id: study for study in read_manifest(out)}
    assert set(studies) == {"s50414267", "s53189527", "s57375967"}
    first = studies["s50414267"]
    assert first.patient_id == "p10000032" and first.split == "train" and len(first.images) == 2
    assert (first.images[0].width, first.images[0].height, first.images[0].view) == (3056, 2544, "PA")
    assert first.images[1].view == "LATERAL"
    assert first.report["findings"].startswith("There is no focal consolidation")
    assert first.report["impression"] == "No acute cardiopulmonary process."
    assert first.report["indication"] == "___F with new onset ascites // eval for infection"
    assert [(f.label, f.status) for f in first.findings] == [("No Finding", "positive")]
    second = studies["s53189527"]
    assert {(f.label, f.status) for f in second.findings} == {
        ("Atelectasis", "uncertain"), ("Cardiomegaly", "negative"), ("Edema", "positive"), ("Pleural Effusion", "positive"),
    }
    assert studies["s57375967"].split == "valid" and studies["s57375967"].findings == []
    _validate(out)


def test_mimic_missing_image_is_an_error_naming_the_row(tmp_path):
    source = _mimic(tmp_path / "mimic")
    (source / "files" / "p10" / "p10000764" / "s57375967" / "d4.jpg").unlink()
    with pytest.raises(RecordError, match=r"mimic-cxr-2.0.0-split.csv.gz:5: expected the image .*d4.jpg"):
        import_dataset("mimic-cxr", source, tmp_path / "m.jsonl")
    summary = import_dataset("mimic-cxr", source, tmp_path / "m.jsonl", on_error="skip")
    assert summary.imported == 2 and len(summary.skipped) == 1


def test_report_sections_without_headings_are_findings():
    assert report_sections("Heart size normal.\n Lungs clear.") == {"findings": "Heart size normal. Lungs clear."}
    assert report_sections("Findings: a.\nImpression: b.") == {"findings": "a.", "impression": "b."}
    assert report_sections("FINDINGS: a. IMPRESSION: b.") == {"findings": "a.", "impression": "b."}
    # Lower-case words with a colon inside a sentence are not headings.
    assert report_sections("Heart: normal. No change in comparison: stable.") == {"findings": "Heart: normal. No change in comparison: stable."}


# --- VinDr-SpineXR ------------------------------------------------------------------------------


def _dicom(path: Path, pixels: np.ndarray, **attributes) -> Path:
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "DX"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = attributes.pop("PhotometricInterpretation", "MONOCHROME2")
    dataset.BitsAllocated = dataset.BitsStored = pixels.dtype.itemsize * 8
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 0
    for key, value in attributes.items():
        setattr(dataset, key, value)
    if pixels.size:
        dataset.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_vindr_spinexr_dicom_layout(tmp_path):
    root = tmp_path / "vindr"
    _dicom(root / "train_images" / "img1.dicom", np.zeros((200, 100), np.uint16))
    _dicom(root / "train_images" / "img2.dicom", np.zeros((50, 50), np.uint16))
    _png(root / "test_images" / "img3.png", 80, 40)
    header = ["image_id", "study_id", "series_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax"]
    _csv(root / "annotations" / "train.csv", [
        header,
        ["img1", "st1", "se1", "R5", "Osteophytes", "10", "150", "30", "170"],
        ["img1", "st1", "se1", "R5", "Disc space narrowing", "20", "40", "60", "60"],
        ["img2", "st2", "se2", "R3", "No finding", "", "", "", ""],
    ])
    _csv(root / "annotations" / "test.csv", [header, ["img3", "st3", "se3", "R1", "Surgical implant", "8", "4", "40", "20"]])
    out = tmp_path / "m.jsonl"
    import_dataset("vindr-spinexr", root, out)
    studies = {study.id: study for study in read_manifest(out)}
    first = studies["img1"]
    assert (first.images[0].width, first.images[0].height) == (100, 200)
    assert [box.label for box in first.boxes] == ["Disc space narrowing", "Osteophytes"]  # top to bottom
    assert first.boxes[1].xyxy == pytest.approx((0.1, 0.75, 0.3, 0.85))
    assert first.boxes[1].source == "vindr-spinexr:R5"
    assert {f.label for f in first.findings} == {"Osteophytes", "Disc space narrowing"}
    assert studies["img2"].boxes == [] and [f.label for f in studies["img2"].findings] == ["No finding"]
    assert studies["img3"].split == "test" and studies["img3"].boxes[0].xyxy == pytest.approx((0.1, 0.1, 0.5, 0.5))
    assert first.split == "train"
    _validate(out)


def test_vindr_box_outside_image_is_rejected(tmp_path):
    root = tmp_path / "vindr"
    _png(root / "train_images" / "img1.png", 100, 100)
    _csv(root / "annotations" / "train.csv", [
        ["image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax"],
        ["img1", "R1", "Osteophytes", "10", "10", "400", "50"],
    ])
    with pytest.raises(RecordError, match=r"train.csv:2: expected a box inside the 100x100 image"):
        import_dataset("vindr-spinexr", root, tmp_path / "m.jsonl")


# --- SLAKE --------------------------------------------------------------------------------------


def test_slake_english_by_default_images_optional(tmp_path):
    root = tmp_path / "Slake1.0"
    base = {"answer_type": "CLOSED", "content_type": "Organ", "modality": "CT", "location": "Abdomen"}
    (root).mkdir()
    (root / "train.json").write_text(json.dumps([
        {**base, "qid": 1, "img_name": "xmlab1/source.jpg", "question": "Is this CT?", "answer": "Yes", "q_lang": "en"},
        {**base, "qid": 2, "img_name": "xmlab1/source.jpg", "question": "这是CT吗?", "answer": "是", "q_lang": "zh"},
    ], ensure_ascii=False))
    (root / "validate.json").write_text(json.dumps([
        {**base, "qid": 3, "img_name": "xmlab2/source.jpg", "question": "Where?", "answer": "Liver", "q_lang": "en", "answer_type": "OPEN"},
    ]))
    out = tmp_path / "m.jsonl"
    import_dataset("slake", root, out)
    studies = {study.id: study for study in read_manifest(out)}
    assert studies["xmlab1"].split == "train" and [qa.question for qa in studies["xmlab1"].qa] == ["Is this CT?"]
    assert studies["xmlab2"].split == "valid" and studies["xmlab2"].qa[0].answer_type == "open"
    assert studies["xmlab1"].images == [] and studies["xmlab1"].qa[0].question_type == "Organ"
    _jpg(root / "imgs" / "xmlab1" / "source.jpg")
    _jpg(root / "imgs" / "xmlab2" / "source.jpg")
    import_dataset("slake", root, out, options={"lang": "all"})
    studies = {study.id: study for study in read_manifest(out)}
    assert len(studies["xmlab1"].qa) == 2 and studies["xmlab1"].images[0].modality == "CT"
    _validate(out)


# --- IU X-ray: Open-i XML ------------------------------------------------------------------------


OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uri>/hadoop/storage/radiology/extract/ecgen-radiology/{n}.xml</uri>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">Positive TB test</AbstractText>
        <AbstractText Label="FINDINGS">The cardiac silhouette is normal.
          There is no pneumothorax.</AbstractText>
        <AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>
    <major>Cardiomegaly/borderline</major>
    <major>Pulmonary Artery/enlarged</major>
    <automatic>sternotomy</automatic>
  </MeSH>
  <uId id="CXR{n}"/>
  <pmcId id="{n}"/>
  <parentImage id="CXR{n}_1_IM-0001-3001">
    <figureId>F1</figureId>
    <caption>Xray Chest PA and Lateral</caption>
  </parentImage>
  <parentImage id="CXR{n}_1_IM-0001-4001">
    <figureId>F2</figureId>
  </parentImage>
</eCitation>
"""


def test_iu_xray_openi_xml_with_r2gen_quirky_split_and_images(tmp_path):
    reports = tmp_path / "ecgen-radiology"
    reports.mkdir()
    for n in (1, 2, 3):
        (reports / f"{n}.xml").write_text(OPENI_XML.format(n=n))
    annotation = {
        "train": [{"id": "CXR1_1_IM-0001", "split": "train"}],
        "val": [{"id": "CXR2_1_IM-0001"}],
        "    ": [{"id": "CXR3_1_IM-0001"}],  # the shared R2Gen file really names its test list with 4 spaces
    }
    split_file = tmp_path / "annotation.json"
    split_file.write_text(json.dumps(annotation))
    images = tmp_path / "png"
    _png(images / "CXR1_1_IM-0001-3001.png")  # Open-i naming
    _png(images / "CXR2_1_IM-0001" / "0.png")  # R2Gen folder naming
    _png(images / "CXR2_1_IM-0001" / "1.png")
    out = tmp_path / "m.jsonl"
    import_dataset("iu-xray", reports, out, options={"split": str(split_file), "images": str(images)})
    studies = {study.id: study for study in read_manifest(out)}
    assert {key: study.split for key, study in studies.items()} == {"CXR1": "train", "CXR2": "valid", "CXR3": "test"}
    first = studies["CXR1"]
    assert first.report == {
        "findings": "The cardiac silhouette is normal. There is no pneumothorax.",
        "impression": "Normal chest x-XXXX.",
        "indication": "Positive TB test",
        "comparison": "None.",
    }
    assert first.metadata["mesh_major"] == ["Cardiomegaly/borderline", "Pulmonary Artery/enlarged"]
    assert first.metadata["mesh_automatic"] == ["sternotomy"]
    assert first.metadata["image_ids"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    assert len(first.images) == 1 and len(studies["CXR2"].images) == 2 and studies["CXR3"].images == []
    _validate(out)


def test_iu_xray_broken_xml_names_the_file(tmp_path):
    (tmp_path / "1.xml").write_text(OPENI_XML.format(n=1))
    (tmp_path / "2.xml").write_text("<eCitation><uId id='CXR2'/>")
    summary = import_dataset("iu-xray", tmp_path, tmp_path / "m.jsonl", on_error="skip")
    assert summary.imported == 1
    assert summary.skipped[0].where == str(tmp_path / "2.xml") and "expected Open-i XML" in summary.skipped[0].reason


# --- users' own tables ---------------------------------------------------------------------------


def test_generic_csv_with_column_options(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    _csv(tmp_path / "mine.csv", [
        ["path", "text", "set", "pid", "dx"],
        ["imgs/a.png", "FINDINGS: Clear lungs. IMPRESSION: Normal.", "val", "P1", "Normal"],
        ["imgs/b.png", "Small left effusion.", "train", "P2", "Effusion|Atelectasis"],
    ])
    out = tmp_path / "m.jsonl"
    options = {"image": "path", "report": "text", "split": "set", "patient": "pid", "labels": "dx"}
    import_dataset("csv", tmp_path / "mine.csv", out, options=options)
    a, b = read_manifest(out)
    assert (a.id, a.split, a.patient_id) == ("a", "valid", "P1")
    assert a.report == {"findings": "Clear lungs.", "impression": "Normal."}
    assert b.report == {"findings": "Small left effusion."} and [f.label for f in b.findings] == ["Effusion", "Atelectasis"]
    _validate(out)


def test_generic_jsonl_errors_name_the_line(tmp_path):
    _png(tmp_path / "a.png")
    lines = [
        json.dumps({"image": "a.png", "report": "Normal.", "id": "one"}),
        "{not json",
        json.dumps({"image": "missing.png", "report": "x"}),
        json.dumps({"report": "no image"}),
        json.dumps({"image": "a.png", "report": "x", "split": "holdout"}),
    ]
    (tmp_path / "mine.jsonl").write_text("\n".join(lines) + "\n")
    summary = import_dataset("jsonl", tmp_path / "mine.jsonl", tmp_path / "m.jsonl", on_error="skip")
    assert summary.imported == 1
    where = {error.where.rsplit(":", 1)[1]: error.reason for error in summary.skipped}
    assert set(where) == {"2", "3", "4", "5"}
    assert "expected one JSON object per line" in where["2"]
    assert "expected the image" in where["3"] and "missing.png" in where["3"]
    assert "expected image path(s) in the column 'image'" in where["4"]
    assert "expected split train, valid or test" in where["5"]
