"""Baselines: retrieval, field-wise majority and label priors, answer priors, the mean training spine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from radscribe.annotate import analyze_spine
from radscribe.data.images import read_image
from radscribe.data.manifest import read_manifest
from radscribe.evaluate.baselines import (
    AnswerPrior,
    NearestStudy,
    chest_label_prior,
    embed_studies,
    majority_template,
    mean_spine,
    mean_spine_reports,
    prior_reports,
    retrieval_answers,
    retrieval_reports,
)
from radscribe.evaluate.chest import chest_statistics, nih_fields, predicted_positives, reference_positives
from radscribe.evaluate.spine import spine_sample, spine_statistics, vertebra_boxes
from radscribe.templates import GroundedFinding, load_template, parse, validate
from radscribe.types import QA, Study

def split(path: Path) -> tuple[Path, list[Study], list[Study]]:
    """A built manifest with its train and valid studies."""
    studies = read_manifest(path)
    return path, [s for s in studies if s.split == "train"], [s for s in studies if s.split == "valid"]


def thumbnail(paths) -> np.ndarray:
    """A model-free image embedding for the tests: 8 x 8 block means of the (real) radiograph."""
    rows = []
    for path in paths:
        pixels = read_image(path).pixels
        h, w = pixels.shape[0] // 8 * 8, pixels.shape[1] // 8 * 8
        rows.append(pixels[:h, :w].reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3)).ravel() - 0.5)
    return np.array(rows)


# ----- hand-built -----------------------------------------------------------------------------------------


def spine_report(severity: str, count: int, angles: list[float]):
    filled = load_template("spine-ap-alignment").blank()
    filled.set("technique.projection", "AP")
    filled.set("vertebrae.count", count)
    filled.set("alignment.severity", severity)
    filled.set("alignment.curves", [GroundedFinding({"region": "thoracic", "angle": a}) for a in angles])
    return filled


def test_majority_template_takes_modes_medians_and_the_modal_list_length() -> None:
    reports = [
        spine_report("severe", 16, [10.0, 40.0]),
        spine_report("mild", 17, [20.0, 50.0]),
        spine_report("severe", 15, [30.0, 45.0, 5.0]),
        spine_report("none", 18, []),
    ]
    prior = majority_template(reports, "spine-ap-alignment")
    assert prior.get("alignment.severity") == "severe"
    assert prior.get("vertebrae.count") == 16  # median 16.5 rounds to the even integer
    curves = prior.get("alignment.curves")
    assert len(curves) == 2
    assert [c.values["angle"] for c in curves] == [20.0, 45.0]  # medians of first and second items
    assert curves[0].values["region"] == "thoracic"
    assert prior.get("technique.projection") == "AP"


def test_answer_prior_per_type_and_per_question() -> None:
    train = [
        QA("Is there a fracture?", "No", "closed"),
        QA("Is there a fracture?", "no", "closed"),
        QA("Is the heart enlarged?", "Yes", "closed"),
        QA("Is the heart enlarged?", "yes", "closed"),
        QA("Is the heart enlarged?", "yes", "closed"),
        QA("What organ is this?", "Brain", "open"),
        QA("What organ is shown?", "brain", "open"),
        QA("What is the modality?", "CT", "open"),
    ]
    majority, by_question = AnswerPrior(train), AnswerPrior(train, by_question=True)
    assert majority.answer(QA("Is there a fracture?", "no", "closed")) == "yes"
    assert by_question.answer(QA("Is there a fracture ?", "no", "closed")) == "no"
    assert by_question.answer(QA("Is it normal?", "yes", "closed")) == "yes"  # unseen question: type majority
    assert majority.answer(QA("Where is the lesion?", "left", "open")) == "brain"


def test_retrieval_answers_prefer_the_same_question_then_the_nearest_image() -> None:
    train = [
        Study("a", qa=[QA("Is there an effusion?", "no", "closed"), QA("What organ is this?", "chest", "open")]),
        Study("b", qa=[QA("Is there an effusion?", "yes", "closed"), QA("Which side is the lesion on?", "left", "open")]),
    ]
    index = NearestStudy(train, np.array([[1.0, 0.0], [0.0, 1.0]]))
    queries = np.array([[0.1, 0.9], [0.9, 0.1]])
    questions = [
        [QA("Is there an effusion?", "?", "closed"), QA("What organ is this?", "?", "open")],
        [QA("Is there an effusion?", "?", "closed"), QA("Which side is the mass on?", "?", "open")],
    ]
    assert retrieval_answers(index, queries, questions) == [["yes", "chest"], ["no", "left"]]


# ----- real manifests -------------------------------------------------------------------------------------


def test_mean_training_spine_of_cadma_is_a_plausible_column(spine_manifest) -> None:
    _, train, valid = split(spine_manifest)
    boxes = mean_spine(train)
    counts = [len(vertebra_boxes(s.boxes)) for s in train]
    assert len(boxes) == round(float(np.mean(counts)))
    centres_y = [b.center[1] for b in boxes]
    assert centres_y == sorted(centres_y)
    assert all(0.3 < b.center[0] < 0.7 and 0 < b.height < 0.1 for b in boxes)
    # The bottom box is the mean of every film's bottom box (all films have one).
    bottoms = [max(vertebra_boxes(s.boxes), key=lambda b: b.center[1]).y_max for s in train]
    assert boxes[-1].y_max == pytest.approx(np.mean(bottoms))
    reports = mean_spine_reports(boxes, valid[:5])
    for study, prediction in zip(valid, reports):
        assert not validate(prediction.filled)
        assert prediction.filled.get("vertebrae.count") == len(boxes)
        geometry = analyze_spine(boxes, (study.images[0].width, study.images[0].height))
        assert prediction.filled.get("alignment.severity") == geometry.severity
        assert prediction.column is not None and prediction.column.y_min == pytest.approx(boxes[0].y_min)


def test_spine_prior_is_the_training_majority_and_scores_as_a_constant(spine_manifest) -> None:
    _, train, valid = split(spine_manifest)
    predictions = prior_reports(train, len(valid), "spine-ap-alignment")
    severities = Counter(parse(s.structured, s.template).get("alignment.severity") for s in train)
    assert predictions[0].filled.get("alignment.severity") == severities.most_common(1)[0][0]
    assert not validate(predictions[0].filled)
    assert predictions[0].vertebrae is None
    samples = [spine_sample(s.boxes, parse(s.structured, s.template), (), p.filled) for s, p in zip(valid, predictions)]
    accuracy = spine_statistics(samples, ("severity-accuracy",))["severity-accuracy"].value()
    expected = np.mean([parse(s.structured, s.template).get("alignment.severity") == predictions[0].filled.get("alignment.severity") for s in valid])
    assert accuracy == pytest.approx(expected)


def test_retrieval_finds_a_training_film_from_its_own_image_and_copies_its_boxes(spine_manifest) -> None:
    path, train, _ = split(spine_manifest)
    train = train[:12]
    embeddings = embed_studies(train, path, thumbnail, batch_size=5)
    assert embeddings.shape[0] == 12 and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)
    index = NearestStudy(train, embeddings)
    copied = retrieval_reports(index, embeddings, with_boxes=True)
    assert [p.source for p in copied] == [s.id for s in train]
    sample = spine_sample(train[0].boxes, parse(train[0].structured, train[0].template), copied[0].vertebrae, copied[0].filled, copied[0].column)
    assert sample.f1 == 1.0 and sample.severity_correct and sample.angle_error == 0 and sample.column_iou == pytest.approx(1.0)


def test_chest_priors_on_the_nih_carve_out(chest_manifest) -> None:
    _, train, valid = split(chest_manifest)
    majority = prior_reports(train, len(valid), "chest-pa")
    assert all(majority[0].filled.get(field) == "absent" for field in nih_fields())
    reference = reference_positives([s.findings for s in valid])
    assert chest_statistics(reference, predicted_positives([p.filled for p in majority]))["macro-f1"].value() == 0.0
    positive = chest_label_prior(train, len(valid), "positive")
    per_field = chest_statistics(reference, predicted_positives([p.filled for p in positive]))
    prevalence = reference.mean(axis=0)
    for k, field in enumerate(nih_fields()):
        assert per_field[f"f1/{field}"].value() == pytest.approx(2 * prevalence[k] / (1 + prevalence[k]))
    sampled = chest_label_prior(train, 400, "sampled", seed=1)
    rate = predicted_positives([p.filled for p in sampled]).mean(axis=0)
    train_rate = predicted_positives([parse(s.structured, s.template) for s in train]).mean(axis=0)
    assert np.abs(rate - train_rate).max() < 0.08
    assert not validate(sampled[0].filled)
