"""`radscribe predict`: resumable per study, keyed by the weights fingerprint, read back by `radscribe evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from radscribe.annotate import spine_report_from_boxes
from radscribe.cli.main import app
from radscribe.evaluate import evaluate, read_predictions
from radscribe.evaluate.predict import DetectorPredictor, ReporterPredictor, StalePredictions, predict, select_studies
from radscribe.infer import ConstraintLimits, Reporter
from radscribe.templates import render
from radscribe.types import QA, Box, ImageRef, Study

SIZE = (96, 192)  # width, height: a tall film like CADMA's
SMALL = ConstraintLimits(text_tokens=4, max_items=1, max_elements=1, max_boxes=1, phrase_tokens=2)


def vertebrae(x: float) -> list[Box]:
    return [Box("vertebra", x, 0.1 + 0.07 * k, x + 0.15, 0.15 + 0.07 * k) for k in range(10)]


def film(path: Path, x: float) -> None:
    """A grey film with a brighter band where the vertebrae are."""
    pixels = np.full((SIZE[1], SIZE[0]), 70, np.uint8)
    pixels[:, int(x * SIZE[0]) : int((x + 0.15) * SIZE[0])] = 170
    pixels += np.random.default_rng(int(x * 100)).integers(0, 20, pixels.shape, dtype=np.uint8)
    Image.fromarray(pixels, "L").save(path)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("films")
    lines = []
    for index, x in enumerate((0.3, 0.4, 0.5, 0.45)):
        film(folder / f"f{index}.png", x)
        boxes = vertebrae(x)
        filled, _ = spine_report_from_boxes(boxes, SIZE)
        study = Study(f"f{index}", [ImageRef(f"f{index}.png", *SIZE)], split="valid" if index < 3 else "train",
                      template="spine-ap-alignment", structured=render(filled), boxes=boxes,
                      qa=[QA("Is there scoliosis?", "no", "closed", id=f"{index}a"), QA("Which bone is shown?", "spine", "open", id=f"{index}b")])  # fmt: skip
        lines.append(json.dumps({"version": 1, **study.to_dict()}))
    path = folder / "spine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from radscribe.models import create_model
    from radscribe.models.detector import BoxDetector, DetectorConfig

    folder = tmp_path_factory.mktemp("model")
    create_model("radscribe-tiny-test").save_pretrained(folder)
    torch.manual_seed(0)
    BoxDetector.create(DetectorConfig(input_size=(64, 128)), pretrained=False).save_pretrained(folder / "detector")
    return folder


class KnownBoxes(torch.nn.Module):
    """A detector that finds exactly the given boxes on each film (by file name): it makes the detector
    path's derived report and its scores checkable to the digit."""

    def __init__(self, boxes: dict[str, list[Box]]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))   # a weight to fingerprint
        self.boxes = boxes
        self.config = type("Config", (), {"name": "known-boxes", "labels": ["vertebra"]})()

    def detect(self, images):
        return [list(self.boxes[Path(image.path).stem]) for image in images]


def studies_of(manifest: Path, limit: int = 0) -> list[Study]:
    from radscribe.data.manifest import read_manifest

    return select_studies(read_manifest(manifest), "valid", limit, manifest)


def counting(predictor):
    """Wrap ``predictor.predict`` to record which studies it was asked for."""
    asked: list[str] = []
    inner = predictor.predict

    def wrapped(studies, paths):
        asked.extend(s.id for s in studies)
        return inner(studies, paths)

    predictor.predict = wrapped
    return asked


def test_detector_alone_derives_the_template_and_scores_perfectly_on_its_own_boxes(manifest, tmp_path) -> None:
    studies = studies_of(manifest)
    detector = KnownBoxes({s.id: s.boxes for s in studies})
    out = tmp_path / "detector.jsonl"
    summary = predict(studies, manifest, out, DetectorPredictor(detector))
    assert summary.predicted == 3 and not summary.errors
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["f0", "f1", "f2"]
    assert all(line["meta"]["fingerprint"] == summary.fingerprint and line["meta"]["detections"] == 10 for line in lines)
    result = evaluate(out, manifest, ["spine"], split="valid", n_resamples=50)
    for key, value in {"vertebra-f1": 1.0, "vertebra-f1-iou0.7": 1.0, "severity-accuracy": 1.0, "angle-mae": 0.0,
                       "template-conformance": 1.0, "report-consistency": 1.0, "degenerate-boxes": 0.0}.items():  # fmt: skip
        assert result.value(key).value == pytest.approx(value), key


def test_predict_resumes_without_redoing_studies_and_refuses_another_model(manifest, tiny_folder, tmp_path, one_torch_thread) -> None:
    from radscribe.infer.loading import load_detector
    from radscribe.models import create_model

    model = create_model(str(tiny_folder))
    reporter = Reporter(model, detector=load_detector(tiny_folder), limits=SMALL, grounding_boxes=3, batch_size=2)
    out = tmp_path / "pred.jsonl"
    first = ReporterPredictor(reporter)
    asked = counting(first)
    summary = predict(studies_of(manifest, limit=2), manifest, out, first)
    assert summary.predicted == 2 and asked == ["f0", "f1"]
    assert "model=sha256:" in summary.fingerprint and "detector=sha256:" in summary.fingerprint
    # a run killed mid-line leaves a torn last line: it is dropped and that study redone
    with out.open("a") as handle:
        handle.write('{"id": "f2", "report": "half a li')
    again = ReporterPredictor(reporter)
    asked = counting(again)
    summary = predict(studies_of(manifest), manifest, out, again)
    assert asked == ["f2"] and summary.resumed == 2 and summary.predicted == 1
    records = read_predictions(out).predictions
    assert sorted(records) == ["f0", "f1", "f2"]
    for record in records.values():
        assert record.template == "spine-ap-alignment" and record.report.startswith("# Spine AP alignment report")
        assert "fingerprint" in record.meta and record.boxes is not None
    # nothing left to do: a third run predicts nothing
    assert predict(studies_of(manifest), manifest, out, ReporterPredictor(reporter)).predicted == 0
    # the model alone (no detector) is another predictor: its fingerprint differs and the file is refused
    alone = ReporterPredictor(Reporter(model, detector=None, limits=SMALL, grounding_boxes=3))
    with pytest.raises(StalePredictions, match="delete the file or choose another --out"):
        predict(studies_of(manifest), manifest, out, alone)
    other = create_model(str(tiny_folder))
    with torch.no_grad():
        next(other.parameters()).add_(0.01)  # one weight changed: another model
    with pytest.raises(StalePredictions):
        predict(studies_of(manifest), manifest, out, ReporterPredictor(Reporter(other, detector=load_detector(tiny_folder), limits=SMALL, grounding_boxes=3)))
    result = evaluate(out, manifest, ["spine"], split="valid", n_resamples=0)
    assert 0.0 <= result.value("report-consistency").value <= 1.0 and result.value("degenerate-boxes").value == 0.0


def test_cli_predict_vqa_and_detector_then_evaluate(manifest, tiny_folder, tmp_path, one_torch_thread) -> None:
    runner = CliRunner()
    answers = tmp_path / "vqa.jsonl"
    run = runner.invoke(app, ["predict", str(manifest), "--model", str(tiny_folder), "--task", "vqa", "--limit", "2", "--out", str(answers)])
    assert run.exit_code == 0, run.output
    records = read_predictions(answers).predictions
    assert sorted(records) == ["f0", "f1"] and all(len(r.answers) == 2 for r in records.values())
    assert all(r.answers[f"{k[1]}a"] in ("yes", "no") for k, r in records.items())   # closed: by option likelihood
    boxes = tmp_path / "det.jsonl"
    run = runner.invoke(app, ["predict", str(manifest), "--model", str(tiny_folder), "--task", "detector", "--out", str(boxes)])
    assert run.exit_code == 0, run.output
    assert "3 predicted" in run.output
    evaluated = tmp_path / "eval"
    run = runner.invoke(app, ["evaluate", str(boxes), "--refs", str(manifest), "--split", "valid", "--metrics", "spine",
                              "--baselines", "mean-spine", "--bootstrap", "20", "--out", str(evaluated)])  # fmt: skip
    assert run.exit_code == 0, run.output
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert {m["system"] for m in metrics["metrics"]} == {"model", "baseline:mean-spine"}
    assert any(c["other"] == "baseline:mean-spine" and c["key"] == "vertebra-f1" for c in metrics["comparisons"])
    refused = runner.invoke(app, ["predict", str(manifest), "--model", str(tiny_folder), "--task", "detector", "--detector", "none", "--out", str(tmp_path / "x.jsonl")])
    assert refused.exit_code != 0 and "needs a detector" in refused.output


def test_a_release_that_carries_its_detectors_boxes_reports_them_and_says_so(manifest, tiny_folder, tmp_path, one_torch_thread) -> None:
    """boxes_from='detector': the report's vertebra boxes are the detector's (no grounding pass), the
    template is derived from them, and a release folder records the choice for from_pretrained."""
    from radscribe.infer.loading import load_detector
    from radscribe.models import create_model
    from radscribe.models.embedded import RELEASE_FILE, export_release

    studies = studies_of(manifest)
    known = KnownBoxes({s.id: s.boxes for s in studies})
    reporter = Reporter(create_model(str(tiny_folder)), detector=known, boxes_from="detector", limits=SMALL, grounding_boxes=3)
    out = tmp_path / "release.jsonl"
    summary = predict(studies, manifest, out, ReporterPredictor(reporter))
    assert "boxes_from=detector" in summary.fingerprint and not summary.errors
    records = read_predictions(out).predictions
    assert all(record.meta["detections"] == 10 for record in records.values())
    result = evaluate(out, manifest, ["spine"], split="valid", n_resamples=20)
    assert result.value("vertebra-f1").value == pytest.approx(1.0)
    assert result.value("report-consistency").value == pytest.approx(1.0)
    [single] = reporter.report([manifest.parent / "f0.png"])
    assert single.grounding == {} and single.model["boxes_from"] == "detector"   # the model was not asked to ground

    with pytest.raises(ValueError, match="needs a detector"):
        Reporter(create_model(str(tiny_folder)), detector=None, boxes_from="detector")
    release = export_release(tiny_folder, tmp_path / "release", detector=tiny_folder / "detector", boxes_from="detector")
    assert Reporter.from_pretrained(release).boxes_from == "detector"
    assert Reporter.from_pretrained(release, boxes_from="model").boxes_from == "model"
    assert Reporter.from_pretrained(tiny_folder).boxes_from == "model"   # no release.json: the model's own boxes
    (release / RELEASE_FILE).write_text(json.dumps({"boxes_from": "oracle"}))
    with pytest.raises(ValueError, match="release.json: field 'boxes_from'"):
        Reporter.from_pretrained(release)
    assert load_detector(release) is not None


def test_vqa_abstentions_answer_not_assessed_and_are_other_predictions(manifest, tiny_folder, tmp_path, one_torch_thread) -> None:
    """abstain.json's ``vqa`` answer types: ask() answers "not assessed" for them and says so, and the
    predictions carry another fingerprint than the model's own answers."""
    from radscribe.models import create_model
    from radscribe.models.embedded import read_abstentions

    model = create_model(str(tiny_folder))
    abstaining = Reporter(model, detector=None, abstain={"vqa": ["open"]})
    open_answer = abstaining.ask(manifest.parent / "f0.png", "Which bone is shown?")
    closed_answer = abstaining.ask(manifest.parent / "f0.png", "Is there scoliosis?")
    assert open_answer.text == "not assessed" and open_answer.abstained == ["vqa.open"]
    assert closed_answer.text in ("yes", "no") and closed_answer.abstained == []
    assert ReporterPredictor(abstaining, "vqa").fingerprint.endswith("|abstain=open")
    assert "abstain" not in ReporterPredictor(Reporter(model, detector=None), "vqa").fingerprint
    bad = tmp_path / "abstain.json"
    bad.write_text(json.dumps({"fields": {"vqa": ["sometimes"]}}))
    with pytest.raises(ValueError, match="fields.vqa"):
        read_abstentions(bad)
