"""Structured-report metrics on the shipped spine template: conformance, fields, findings, numbers."""

from __future__ import annotations

import math

import pytest

from radscribe.evaluate.structured import StructuredScorer, diagnostic_findings
from radscribe.templates import GroundedFinding, load_template, render

TEMPLATE = "spine-ap-alignment"


def _report(curves: list[dict], alignment: str = "scoliosis", severity: str = "moderate", count: int = 17) -> str:
    filled = load_template(TEMPLATE).normal()
    filled.set("alignment.alignment", alignment)
    filled.set("alignment.severity", severity)
    filled.set("vertebrae.count", count)
    filled.set("alignment.curves", [GroundedFinding(values) for values in curves])
    return render(filled)


CURVE = {"region": "thoracic", "convexity": "right", "apex": "T8", "upper": "T5", "lower": "T11", "angle": 30.0, "severity": "moderate"}


def _scores(refs, hyps):
    scorer = StructuredScorer(template=TEMPLATE)
    return {s.name: s for s in scorer.compute_score(refs, hyps)}


def test_identical_reports_score_perfectly():
    ref = _report([CURVE])
    scores = _scores([ref], [ref])
    for name in ("template-conformance", "field-accuracy", "diagnostic-f1", "numeric-within-tolerance"):
        assert scores[name].value == 1.0, name
    assert scores["numeric-mae"].value == 0.0


def test_angle_tolerance_and_mae_by_hand():
    ref = _report([CURVE])
    close = _report([{**CURVE, "angle": 34.0}])  # 4 degrees off: within 5
    far = _report([{**CURVE, "angle": 37.0}], count=16)  # 7 degrees off, count off by one (exact field)
    scores = _scores([ref, ref], [close, far])
    # reference numbers per report: count and the curve angle -> 4 in all; within: count, 34, (16 no), (37 no) = 2
    assert scores["numeric-within-tolerance"].value == pytest.approx(2 / 4)
    assert scores["numeric-mae"].value == pytest.approx((0 + 4 + 1 + 7) / 4)
    # findings: both keep {alignment=scoliosis, severity=moderate, thoracic/right curve}: all match
    assert scores["diagnostic-f1"].value == 1.0


def test_unparseable_prediction_counts_as_wrong_not_skipped():
    ref = _report([CURVE])
    scores = _scores([ref, ref], ["the spine looks fine", None])
    assert scores["template-conformance"].value == 0.0
    assert scores["template-conformance"].details["unparseable"] == 2
    assert scores["field-accuracy"].value == 0.0
    assert scores["diagnostic-recall"].value == 0.0
    assert scores["numeric-within-tolerance"].value == 0.0
    assert math.isnan(scores["numeric-mae"].value) and scores["numeric-mae"].details["coverage"] == 0.0


def test_missed_and_false_findings():
    ref = _report([CURVE])
    normal = render(load_template(TEMPLATE).normal())
    hyp = _report([CURVE, {**CURVE, "region": "lumbar", "convexity": "left", "angle": 15.0, "severity": "mild"}])
    scores = _scores([ref, normal], [normal, hyp])
    # ref findings: 3 (alignment, severity, curve) + 0; hyp findings: 0 + 4 (alignment, severity, 2 curves); tp 0
    assert scores["diagnostic-precision"].value == 0.0 and scores["diagnostic-recall"].value == 0.0
    spec = load_template(TEMPLATE)
    from radscribe.templates import parse

    assert sum(diagnostic_findings(parse(hyp, spec), spec).values()) == 4
    assert scores["field-accuracy"].details["per_field"]["technique.projection"] == 1.0


def test_statistics_reproduce_scores():
    ref = _report([CURVE])
    scorer = StructuredScorer(template=TEMPLATE)
    samples = scorer.samples([ref, ref, ref], [ref, "nonsense", _report([{**CURVE, "angle": 20.0}])])
    statistics = scorer.statistics(samples)
    for score in scorer.scores_from(samples):
        assert statistics[f"{score.name}@{score.protocol}"].value() == pytest.approx(score.value, nan_ok=True)
