"""Reporter and `radscribe report` / `radscribe ask`: grounded outputs, FHIR, and bad input per file."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.infer import ConstraintLimits, Reporter, ReportError, ReportResult, RFIConfig, as_feature_fn, diagnostic_report, write_result

runner = CliRunner()
SMALL = ConstraintLimits(text_tokens=4, max_items=1, max_elements=1, max_boxes=1, phrase_tokens=2)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from radscribe.models import create_model

    folder = tmp_path_factory.mktemp("model")
    create_model("radscribe-tiny-test").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    from radscribe.models import create_model

    return create_model(str(tiny_folder))


def _spine_images(cadma_dir: Path, n: int) -> list[Path]:
    return sorted((cadma_dir / "valid" / "images").iterdir())[:n]


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    photo = folder / "photo.png"
    rng = np.random.default_rng(0)
    colours = np.zeros((64, 64, 3), np.uint8)
    colours[..., 0] = 220
    colours[..., 1] = rng.integers(0, 60, (64, 64))
    Image.fromarray(colours, "RGB").save(photo)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    huge = folder / "huge.png"  # a 20000 x 20000 header: refused before any pixel is decoded
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    dicom = folder / "nopixels.dcm"
    _dicom_without_pixels(dicom)
    return {"empty": empty, "photo": photo, "corrupt": corrupt, "huge": huge, "dicom": dicom}


def _dicom_without_pixels(path: Path) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Rows, dataset.Columns, dataset.Modality = 64, 64, "DX"
    dataset.save_as(str(path), enforce_file_format=True)


def test_reporter_gives_valid_grounded_reports_and_per_file_errors(tiny, cadma_dir, tmp_path):
    bad = _bad_inputs(tmp_path / "bad")
    good = _spine_images(cadma_dir, 2)
    reporter = Reporter(tiny, rfi=RFIConfig(), limits=SMALL, grounding_boxes=3, max_new_tokens=400, batch_size=4)
    results = reporter.report([good[0], bad["empty"], bad["photo"], good[1], bad["huge"], bad["dicom"], bad["corrupt"]])
    assert [r.ok for r in results] == [True, False, False, True, False, False, False]
    reasons = {Path(r.image).name: r.reason for r in results if isinstance(r, ReportError)}
    assert "empty" in reasons["empty.png"] and "colour photograph" in reasons["photo.png"]
    assert "decompression bomb" in reasons["huge.png"] and "no pixel data" in reasons["nopixels.dcm"]
    assert "corrupt" in reasons["corrupt.jpg"]
    for result in results[0], results[3]:
        assert isinstance(result, ReportResult) and result.valid, result.issues
        assert result.filled is not None and result.template == {"name": "spine-ap-alignment", "version": "2"}
        assert result.crop is not None and result.model["version"].startswith("sha256:")
        vertebrae = [box for box in result.boxes if box.label == "vertebra"]
        assert 1 <= len(vertebrae) <= 3 and not result.box_errors
        # Boxes were predicted on the crop and mapped back: they lie inside the crop on the original image.
        crop = result.crop.normalized()
        for box in vertebrae:
            assert crop.x_min - 1e-9 <= box.x_min <= box.x_max <= crop.x_max + 1e-9
            assert crop.y_min - 1e-9 <= box.y_min <= box.y_max <= crop.y_max + 1e-9


def test_written_outputs_and_fhir_diagnostic_report(tiny, cadma_dir, tmp_path):
    image = _spine_images(cadma_dir, 1)[0]
    reporter = Reporter(tiny, rfi=None, limits=SMALL, ground=(), max_new_tokens=400)
    result = reporter.report([image])[0]
    paths = write_result(result, tmp_path / "out", fhir=True)
    assert {p.name for p in paths} == {"report.md", "report.json", "overlay.png", "fhir.json"}
    record = json.loads((tmp_path / "out" / "report.json").read_text())
    assert record["valid"] and record["template"]["name"] == "spine-ap-alignment" and record["model"]["name"] == "radscribe-tiny-test"
    assert set(record["fields"]) == {"technique", "vertebrae", "alignment", "impression"} and "derive" in record["timings_s"]  # the spine template is computed from the boxes, not generated
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# Spine AP alignment report")
    fhir = json.loads((tmp_path / "out" / "fhir.json").read_text())
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "preliminary"
    assert fhir["code"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
    assert fhir["conclusion"] == result.filled.get("impression.text")
    assert base64.b64decode(fhir["presentedForm"][0]["data"]).decode() == markdown
    assert fhir["presentedForm"][0]["contentType"] == "text/markdown"
    findings = result.findings()
    per_finding = [o for o in fhir.get("contained", []) if "[" in o["code"]["coding"][0]["code"]]
    assert len(per_finding) == len(findings)  # one Observation per finding, besides one per filled field
    for observation, reference in zip(fhir.get("contained", []), fhir.get("result", [])):
        assert observation["resourceType"] == "Observation" and reference["reference"] == f"#{observation['id']}"


def test_fhir_contains_one_observation_per_finding():
    from radscribe.templates import GroundedFinding, load_template
    from radscribe.types import Box

    filled = load_template("spine-ap-alignment").normal()
    filled.set("alignment.curves", [GroundedFinding({"region": "lumbar", "angle": 12.0}, [Box("curve", 0.1, 0.2, 0.3, 0.4)])])
    result = ReportResult("x.png", "report", "", filled=filled, template={"name": "spine-ap-alignment", "version": "1"})
    fhir = diagnostic_report(result, "# md\n", "impression")
    curve = next(o for o in fhir["contained"] if o["code"]["coding"][0]["code"] == "alignment.curves[0]")
    assert {"valueString": "lumbar"}.items() <= next(c for c in curve["component"] if c["code"]["text"] == "Region").items()
    assert "0.1000" in curve["note"][0]["text"] and {"reference": f"#{curve['id']}"} in fhir["result"]
    assert fhir["conclusion"] == "impression"  # the impression is the conclusion, not an Observation


def test_cli_report_continues_past_bad_files_and_exits_non_zero(tiny_folder, cadma_dir, tmp_path):
    bad = _bad_inputs(tmp_path / "in")
    good = _spine_images(cadma_dir, 1)[0]
    out = tmp_path / "out"
    args = ["report", str(good), str(tmp_path / "in"), "--model", str(tiny_folder), "--out", str(out), "--fhir", "--rfi-debug", "--batch-size", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 1 + len(bad) and summary["reported"] == 1 and summary["failed"] == len(bad)
    assert all(failure["reason"] for failure in summary["failures"])
    assert {p.name for p in (out / good.stem).iterdir()} >= {"report.md", "report.json", "overlay.png", "fhir.json", "rfi.png"}


def test_cli_ask_and_clear_errors(tiny_folder, cadma_dir, tmp_path):
    image = _spine_images(cadma_dir, 1)[0]
    answered = runner.invoke(app, ["ask", str(image), "Is there scoliosis?", "--model", str(tiny_folder), "--max-new-tokens", "4"])
    assert answered.exit_code == 0, answered.output
    missing = runner.invoke(app, ["report", str(image), "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "cannot load model" in missing.output
    no_question = runner.invoke(app, ["report", str(image), "--task", "vqa", "--model", str(tiny_folder)])
    assert no_question.exit_code == 2 and "--question" in no_question.output


def test_without_the_embedded_model_the_cli_says_how_to_give_one(cadma_dir, tmp_path, monkeypatch):
    import radscribe.models.embedded as embedded

    monkeypatch.setattr(embedded, "EMBEDDED_DIR", tmp_path / "not-installed")
    result = runner.invoke(app, ["report", str(_spine_images(cadma_dir, 1)[0])])
    assert result.exit_code == 2 and "--model" in result.output


def test_custom_feature_function_drives_the_crop(tiny, cadma_dir):
    def centre_band(image):
        grid = np.zeros((16, 8, 4), np.float32)
        grid[2:14, 3:5, 0] = 1.0
        return grid

    reporter = Reporter(tiny, rfi=RFIConfig(margin=0.0), features=as_feature_fn(centre_band), limits=SMALL, ground=(), max_new_tokens=400)
    result = reporter.report(_spine_images(cadma_dir, 1))[0]
    width, height = result.image_size
    assert result.crop.box == (int(np.floor(3 / 8 * width)), int(np.floor(2 / 16 * height)), int(np.ceil(5 / 8 * width)), int(np.ceil(14 / 16 * height)))


def test_the_readme_command_reports_a_bundled_film_with_the_embedded_model(tmp_path):
    from radscribe.models import embedded_release

    sample = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
    result = runner.invoke(app, ["report", str(sample), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert embedded_release()["release"] in result.output
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    report = json.loads((folder / "report.json").read_text())
    assert report["valid"] and report["issues"] == [] and report["template"]["name"] == "spine-ap-alignment"
    assert report["model"]["version"].startswith("sha256:") and report["rfi_crop"]["note"]  # RFI is off by default
    assert (folder / "report.md").read_text().startswith("# Spine AP alignment report")
    assert Image.open(folder / "overlay.png").size[0] > 0


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    """The README's five-line API example, executed verbatim on a bundled film."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 6
    sample = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spine.jpg").write_bytes(sample.read_bytes())
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example is the test
    result = namespace["result"]
    assert result.valid and result.text.startswith("# Spine AP alignment report")
    vertebrae = [box for box in result.boxes if box.label == "vertebra"]
    assert len(vertebrae) == result.filled.sections["vertebrae"]["count"] >= 3


@pytest.fixture(scope="module")
def embedded_reporter() -> Reporter:
    return Reporter.from_pretrained()


def _images_without_a_spine(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    images = {
        "blank": Image.new("L", (256, 416), 0),
        "one-pixel": Image.new("L", (1, 1), 128),
        "16-bit-noise": Image.fromarray(rng.integers(0, 65535, (416, 256), dtype=np.uint16)),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    return paths


def test_an_image_without_a_spine_gets_a_report_that_says_so(embedded_reporter, tmp_path):
    """Blank, 1 x 1 and 16-bit noise images: no vertebra boxes, no curve, no severity, an impression that says why."""
    for name, path in _images_without_a_spine(tmp_path).items():
        [result] = embedded_reporter.report([path])
        assert isinstance(result, ReportResult) and result.valid, name
        assert [box for box in result.boxes if box.label == "vertebra"] == [], name
        assert result.filled.sections["alignment"]["severity"] == "not assessed", name
        assert result.filled.sections["alignment"]["curves"] == [], name
        assert "No vertebral column was identified" in result.text, name
