"""The spine, chest and vqa families of `radscribe evaluate` and its baselines, on hand-made studies and predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from typer.testing import CliRunner

from radscribe.annotate import chest_template_from_labels, spine_report_from_boxes
from radscribe.cli.main import app
from radscribe.evaluate import evaluate
from radscribe.evaluate.base import MetricUnavailable
from radscribe.evaluate.predictions import Prediction, PredictionFile
from radscribe.templates import parse, render
from radscribe.types import QA, Box, Finding, ImageRef, Study

SIZE = (200, 400)
RESAMPLES = 200


def column(x: float = 0.45, bend: float = 0.0, count: int = 12) -> list[Box]:
    """``count`` vertebra boxes top to bottom, centred on x, bent sideways by ``bend`` at mid-height."""
    boxes = []
    for k in range(count):
        y0 = 0.1 + k * 0.06
        dx = bend * math.sin(math.pi * k / (count - 1))
        boxes.append(Box("vertebra", x + dx, y0, x + dx + 0.1, y0 + 0.05))
    return boxes


def spine_study(study_id: str, boxes: list[Box], split: str = "valid") -> Study:
    filled, _ = spine_report_from_boxes(boxes, SIZE)
    return Study(study_id, [ImageRef(f"{study_id}.png", *SIZE)], split=split, template="spine-ap-alignment",
                 structured=render(filled), boxes=boxes)  # fmt: skip


def as_file(predictions: list[Prediction]) -> PredictionFile:
    return PredictionFile(Path("<hand-made>"), {p.id: p for p in predictions})


def perfect(study: Study) -> Prediction:
    return Prediction(study.id, report=study.structured, template=study.template, boxes=list(study.boxes))


@pytest.fixture(scope="module")
def spines() -> list[Study]:
    bends = [0.0, 0.03, 0.08, 0.12, 0.0, 0.05]
    valid = [spine_study(f"v{i}", column(bend=bend)) for i, bend in enumerate(bends)]
    # training spines sit far to the left: the mean training spine misses every valid vertebra
    train = [spine_study(f"t{i}", column(x=0.05, bend=0.01 * i), "train") for i in range(4)]
    return valid + train


def test_perfect_spine_predictions_score_perfectly(spines) -> None:
    valid = [s for s in spines if s.split == "valid"]
    result = evaluate(as_file([perfect(s) for s in valid]), spines, ["spine"], split="valid", n_resamples=RESAMPLES)
    expected = {
        "vertebra-f1": 1.0, "vertebra-f1-iou0.7": 1.0, "vertebra-matched-iou": 1.0, "count-error-boxes": 0.0,
        "severity-accuracy": 1.0, "angle-mae": 0.0, "column-iou": 1.0, "template-conformance": 1.0,
        "report-consistency": 1.0, "degenerate-boxes": 0.0,
    }  # fmt: skip
    for key, value in expected.items():
        assert result.value(key).value == pytest.approx(value), key
        assert result.value(key).samples == len(valid)
    # the severities really vary, so severity accuracy 1.0 is not a constant's luck
    assert len({parse(s.structured, s.template).get("alignment.severity") for s in valid}) >= 2


def test_shifted_boxes_pass_iou_half_but_not_seven_tenths(spines) -> None:
    valid = [s for s in spines if s.split == "valid"]
    # moved down by 1/4 of their height: IoU = 0.75 / 1.25 = 0.6
    moved = [Prediction(s.id, report=s.structured, boxes=[Box("vertebra", b.x_min, b.y_min + b.height / 4, b.x_max, b.y_max + b.height / 4)
                                                          for b in s.boxes]) for s in valid]  # fmt: skip
    result = evaluate(as_file(moved), spines, ["spine"], split="valid", n_resamples=0)
    assert result.value("vertebra-f1").value == pytest.approx(1.0)
    assert result.value("vertebra-matched-iou").value == pytest.approx(0.6)
    assert result.value("vertebra-f1-iou0.7").value == 0.0


def test_inconsistent_reports_and_degenerate_boxes_are_counted(spines, tmp_path) -> None:
    valid = [s for s in spines if s.split == "valid"]
    lines = []
    for index, study in enumerate(valid):
        filled = parse(study.structured, study.template)
        boxes = [b.to_dict() for b in study.boxes]
        if index == 0:
            filled.set("alignment.severity", "severe")   # the curves say otherwise
        if index == 1:
            boxes = boxes[:-1]                           # the count says one more vertebra than drawn
        if index == 2:
            boxes.append({"label": "vertebra", "x_min": 0.5, "y_min": 0.5, "x_max": 0.4, "y_max": 0.6})  # inverted
        lines.append(json.dumps({"id": study.id, "report": render(filled), "boxes": boxes}))
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = evaluate(path, spines, ["spine"], split="valid", n_resamples=0)
    n = len(valid)
    assert result.value("consistency-severity").value == pytest.approx((n - 1) / n)
    assert result.value("consistency-count").value == pytest.approx((n - 1) / n)
    assert result.value("consistency-impression").value == pytest.approx(1.0)
    assert result.value("report-consistency").value == pytest.approx((n - 2) / n)
    assert result.value("degenerate-boxes").value == pytest.approx(1 / n)
    assert result.value("degenerate-boxes").details["total"] == 1
    assert any("scored as a wrong box" in w for w in result.warnings)


def test_baselines_only_and_paired_differences_have_the_right_sign(spines) -> None:
    valid = [s for s in spines if s.split == "valid"]
    alone = evaluate(None, spines, ["spine"], split="valid", baselines=True, n_resamples=RESAMPLES)
    assert {v.system for v in alone.values} == {"baseline:majority", "baseline:mean-spine"}
    assert alone.value("vertebra-f1", "baseline:mean-spine").value == 0.0   # trained far to the left
    with pytest.raises(KeyError):
        alone.value("vertebra-f1", "baseline:majority")                    # a majority report draws no boxes
    assert alone.comparisons == []

    good = evaluate(as_file([perfect(s) for s in valid]), spines, ["spine"], split="valid", baselines=["mean-spine"], n_resamples=RESAMPLES)
    better = good.comparison("vertebra-f1", "baseline:mean-spine")
    assert better.difference == pytest.approx(1.0) and better.ci_low > 0
    # trained where the valid spines are, the mean spine beats a model that draws its boxes beside the spine
    aligned = valid + [spine_study(f"a{i}", column(bend=0.02 * i), "train") for i in range(4)]
    lost = [Prediction(s.id, report=s.structured, boxes=column(x=0.8)) for s in valid]
    bad = evaluate(as_file(lost), aligned, ["spine"], split="valid", baselines=["mean-spine"], n_resamples=RESAMPLES)
    for key in ("vertebra-f1", "column-iou"):
        worse = bad.comparison(key, "baseline:mean-spine")
        assert worse.difference < 0 and worse.ci_high < 0, key
    with pytest.raises(ValueError, match="unknown baselines"):
        evaluate(None, spines, ["spine"], split="valid", baselines=["nope"])


def chest_study(study_id: str, labels: list[str], split: str = "valid") -> Study:
    findings = [Finding(label, "positive", "nih-nlp") for label in labels]
    filled = chest_template_from_labels(findings).filled
    return Study(study_id, [ImageRef(f"{study_id}.png", 256, 256)], split=split, template="chest-pa", structured=render(filled), findings=findings)


def test_chest_family_and_the_all_present_prior() -> None:
    valid = [chest_study("a", ["Cardiomegaly"]), chest_study("b", ["Effusion", "Cardiomegaly"]), chest_study("c", []), chest_study("d", ["Effusion"])]
    train = [chest_study(f"t{i}", ["Effusion"] if i % 2 else [], "train") for i in range(6)]
    studies = valid + train
    result = evaluate(as_file([Prediction(s.id, report=s.structured) for s in valid]), studies, ["chest"], split="valid",
                      baselines=["prior-positive", "majority"], n_resamples=RESAMPLES)  # fmt: skip
    assert result.value("micro-f1").value == pytest.approx(1.0)
    assert result.value("f1/heart_mediastinum.cardiomegaly").value == pytest.approx(1.0)
    fields = result.value("macro-f1").details["per_field"]
    # "present" for all 13 fields on 4 images: TP 4 (2 cardiomegaly + 2 effusion), FP 13*4 - 4, FN 0
    assert result.value("micro-f1", "baseline:prior-positive").value == pytest.approx(2 * 4 / (2 * 4 + 13 * 4 - 4))
    assert result.value("micro-f1", "baseline:majority").value == 0.0
    assert sum(f["support"] for f in fields.values()) == 4
    assert result.comparison("micro-f1", "baseline:majority").difference == pytest.approx(1.0)


def vqa_studies() -> list[Study]:
    def qa(question: str, answer: str, kind: str, qid: str) -> QA:
        return QA(question, answer, kind, id=qid)

    train = [
        Study("t1", [ImageRef("t1.png")], split="train", qa=[qa("Is there a fracture?", "yes", "closed", "1"), qa("What organ is shown?", "liver", "open", "2")]),
        Study("t2", [ImageRef("t2.png")], split="train", qa=[qa("Is the heart enlarged?", "no", "closed", "3"), qa("What organ is shown?", "liver", "open", "4")]),
        Study("t3", [ImageRef("t3.png")], split="train", qa=[qa("Is the heart enlarged?", "no", "closed", "5"), qa("Which side is the mass on?", "left", "open", "6")]),
    ]
    valid = [
        Study("v1", [ImageRef("v1.png")], split="valid", qa=[qa("Is there a fracture?", "yes", "closed", "7"), qa("What organ is shown?", "liver", "open", "8"),
                                                              qa("Is the heart enlarged?", "no", "closed", "9")]),
        Study("v2", [ImageRef("v2.png")], split="valid", qa=[qa("Is there a fracture?", "no", "closed", "10")]),
    ]  # fmt: skip
    return train + valid


def test_vqa_family_resamples_images_with_their_questions_and_its_baselines() -> None:
    studies = vqa_studies()
    answers = {"v1": {"7": "yes", "8": "liver", "9": "yes"}, "v2": {"10": "no"}}
    result = evaluate(as_file([Prediction(k, answers=v) for k, v in answers.items()]), studies, ["vqa"], split="valid",
                      baselines=["majority", "question-prior"], n_resamples=RESAMPLES)  # fmt: skip
    closed = result.value("closed-accuracy@strict")
    assert closed.value == pytest.approx(2 / 3) and closed.samples == 4   # 4 questions, on 2 images
    # resampling the 2 images: every resample is v1 alone (1/2), v2 alone (1) or both (2/3)
    assert {round(closed.ci_low, 4), round(closed.ci_high, 4)} <= {0.5, round(2 / 3, 4), 1.0}
    # the majority closed answer in training is "no" (2 of 3); the question prior answers "yes" to the fracture question
    assert result.value("closed-accuracy@strict", "baseline:majority").value == pytest.approx(2 / 3)
    assert result.value("closed-accuracy@strict", "baseline:question-prior").value == pytest.approx(2 / 3)
    assert result.value("open-exact@strict", "baseline:majority").value == pytest.approx(1.0)


def test_question_embedding_baselines_answer_from_the_nearest_training_questions() -> None:
    try:
        from radscribe.evaluate.embeddings import minilm_model_dir

        minilm_model_dir()
    except MetricUnavailable as reason:
        pytest.skip(str(reason))
    studies = vqa_studies()
    result = evaluate(None, studies, ["vqa"], split="valid", baselines=["nearest-question", "question-classifier"], n_resamples=0)
    # v1's questions appear verbatim in training; v2's fracture question was answered "yes" there
    for system in ("baseline:nearest-question", "baseline:question-classifier"):
        assert result.value("closed-accuracy@strict", system).value == pytest.approx(2 / 3), system
        assert result.value("open-exact@strict", system).value == pytest.approx(1.0), system


def test_cli_baselines_only(spines, tmp_path) -> None:
    manifest = tmp_path / "spine.jsonl"
    manifest.write_text("".join(json.dumps({"version": 1, **s.to_dict()}) + "\n" for s in spines))
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["evaluate", "--refs", str(manifest), "--metrics", "spine", "--split", "valid", "--baselines-only",
                                   "--bootstrap", "50", "--out", str(out)])  # fmt: skip
    assert run.exit_code == 0, run.output
    metrics = json.loads((out / "metrics.json").read_text())
    systems = {m["system"] for m in metrics["metrics"]}
    assert systems == {"baseline:majority", "baseline:mean-spine"}
    assert "| spine | vertebra-f1 |" in (out / "metrics.md").read_text()
    refused = CliRunner().invoke(app, ["evaluate", "--refs", str(manifest), "--metrics", "spine"])
    assert refused.exit_code != 0 and "--baselines-only" in refused.output


def test_vqa_rad_baselines_on_real_data(tmp_path) -> None:
    from radscribe.data import import_dataset, read_manifest
    from radscribe.data.split import assign_splits

    source = shared_path("vqa-rad")
    manifest = tmp_path / "vqa.jsonl"
    import_dataset("vqa-rad", source, manifest)
    studies = assign_splits(read_manifest(manifest), valid=0.15, seed=0)   # the carve of configs/prepare-data.sh
    result = evaluate(None, studies, ["vqa"], split="valid", baselines=["majority", "question-prior"], n_resamples=100)
    majority = result.value("closed-accuracy@strict", "baseline:majority")
    prior = result.value("closed-accuracy@strict", "baseline:question-prior")
    # VQA-RAD closed questions are about half "yes": a constant answer is near chance, never near perfect
    assert 0.4 < majority.value < 0.75 and majority.ci_low < majority.value < majority.ci_high
    assert prior.value >= majority.value - 0.05
    assert np.isfinite(result.value("open-recall@strict", "baseline:majority").value)
