"""Grounding metrics: IoU/GIoU by hand, Hungarian matching vs brute force, G-IoU and RadFact worked examples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radscribe.evaluate.grounding import GroundingScorer, g_iou, radfact_box_precision
from radscribe.grounding.matching import box_giou, box_iou, iou_matrix, match_at_threshold
from radscribe.types import Box


def B(label: str, *xyxy: float) -> Box:
    return Box(label, *xyxy)


def test_iou_and_giou_by_hand():
    a, b = B("x", 0.0, 0.0, 0.5, 0.5), B("x", 0.25, 0.25, 0.75, 0.75)
    # intersection .0625, union .4375, hull .5625
    assert box_iou(a, b) == pytest.approx(0.0625 / 0.4375)
    assert box_giou(a, b) == pytest.approx(0.0625 / 0.4375 - (0.5625 - 0.4375) / 0.5625)
    far = B("x", 0.6, 0.6, 1.0, 1.0)
    assert box_iou(a, far) == 0.0 and box_giou(a, far) < 0
    assert box_iou(a, a) == box_giou(a, a) == 1.0


boxes_strategy = st.lists(
    st.tuples(st.floats(0, 0.6), st.floats(0, 0.6), st.floats(0.05, 0.4), st.floats(0.05, 0.4)).map(
        lambda t: Box("x", t[0], t[1], t[0] + t[2], t[1] + t[3])
    ),
    min_size=0,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(boxes_strategy, boxes_strategy, st.sampled_from([0.3, 0.5, 0.7]))
def test_hungarian_matches_as_many_pairs_as_brute_force(preds, gts, threshold):
    ious = iou_matrix(preds, gts)
    best = 0
    small, large = (preds, gts) if len(preds) <= len(gts) else (gts, preds)
    for perm in itertools.permutations(range(len(large)), len(small)):
        pairs = [(i, j) if small is preds else (j, i) for i, j in enumerate(perm)]
        best = max(best, sum(ious[p, g] >= threshold for p, g in pairs))
    matched = match_at_threshold(preds, gts, threshold)
    assert len(matched) == best
    assert len({p for p, _ in matched}) == len(matched) == len({g for _, g in matched})
    assert all(ious[p, g] >= threshold for p, g in matched)


def test_labels_restrict_matching():
    gt = [B("effusion", 0.1, 0.1, 0.5, 0.5)]
    assert match_at_threshold([B("nodule", 0.1, 0.1, 0.5, 0.5)], gt, 0.5) == []
    assert match_at_threshold([B("Effusion ", 0.1, 0.1, 0.5, 0.5)], gt, 0.5) == [(0, 0)]
    assert match_at_threshold([B("nodule", 0.1, 0.1, 0.5, 0.5)], gt, 0.5, match_labels=False) == [(0, 0)]


def test_g_iou_worked_example():
    # gt: liver (IoU .5 with the pred liver), spleen; pred: liver, kidney, aorta.
    gts = [B("liver", 0.0, 0.0, 0.4, 0.5), B("spleen", 0.6, 0.0, 1.0, 0.4)]
    preds = [B("liver", 0.0, 0.0, 0.4, 0.25), B("kidney", 0.6, 0.0, 1.0, 0.4), B("aorta", 0.4, 0.4, 0.6, 1.0)]
    # label similarity: liver-liver 1 (IoU .5); kidney-spleen 0 -> contributes 0; max(#pred, #gt) = 3.
    assert g_iou(preds, gts) == pytest.approx(0.5 / 3)

    def soft(a, b):  # a similarity that pairs kidney with spleen at 0.8
        table = {("liver", "liver"): 1.0, ("kidney", "spleen"): 0.8}
        return np.array([[table.get((x, y), 0.1) for y in b] for x in a])

    assert g_iou(preds, gts, soft) == pytest.approx((0.5 * 1.0 + 1.0 * 0.8) / 3)
    assert g_iou([], gts) == 0.0 and g_iou([None], gts) == 0.0


def test_radfact_box_precision_reference_check():
    # evaluation-metrics.md §4.3: pred (.1,.1,.5,.5) vs GT (.2,.2,.6,.6) -> box precision 0.571.
    assert radfact_box_precision([B("x", 0.1, 0.1, 0.5, 0.5)], [B("x", 0.2, 0.2, 0.6, 0.6)]) == pytest.approx(0.571, abs=1e-3)


def test_scorer_counts_missing_and_unparseable_boxes_as_wrong():
    refs = [[B("a", 0.1, 0.1, 0.5, 0.5)], [B("a", 0.2, 0.2, 0.6, 0.6), B("b", 0.0, 0.0, 0.2, 0.2)]]
    hyps = [[B("a", 0.1, 0.1, 0.5, 0.5)], [None]]
    scores = {s.key: s for s in GroundingScorer().compute_score(refs, hyps)}
    assert scores["miou@label-matched"].value == pytest.approx(1 / 3)
    assert scores["mgiou@label-matched"].value == pytest.approx((1 - 1 - 1) / 3)
    assert scores["acc-iou0.5@label-matched"].value == pytest.approx(1 / 3)
    assert scores["box-precision-iou0.5@label-matched"].value == pytest.approx(1 / 2)
    assert scores["box-recall-iou0.5@label-matched"].value == pytest.approx(1 / 3)
    assert scores["g-iou@radgrounder/label"].value == pytest.approx(0.5)
    assert scores["g-iou@radgrounder/label"].per_sample == [1.0, 0.0]
    assert scores["radfact-spatial-precision@radfact-box/label-entailment"].value == pytest.approx(0.5)
    assert scores["radfact-spatial-recall@radfact-box/label-entailment"].value == pytest.approx(0.5)


def test_corpus_statistics_reproduce_scores():
    refs = [[B("a", 0.1, 0.1, 0.5, 0.5)], [B("a", 0.2, 0.2, 0.6, 0.6)], []]
    hyps = [[B("a", 0.15, 0.1, 0.5, 0.55)], [], [B("a", 0.0, 0.0, 1.0, 1.0)]]
    scorer = GroundingScorer()
    samples = scorer.samples(refs, hyps)
    statistics = scorer.statistics(samples)
    for score in scorer.scores_from(samples):
        assert statistics[score.key].value() == pytest.approx(score.value)


def test_minilm_similarity_when_installed():
    pytest.importorskip("transformers")
    from radscribe.evaluate.base import MetricUnavailable
    from radscribe.evaluate.embeddings import MiniLMEncoder

    try:
        encoder = MiniLMEncoder()
    except MetricUnavailable as reason:
        pytest.skip(str(reason))
    sims = encoder.similarity(["left pleural effusion", "liver"], ["pleural effusion on the left", "enlarged heart"])
    assert sims.shape == (2, 2)
    assert sims[0, 0] > 0.8 and sims[0, 0] > sims[0, 1]
    assert np.allclose(np.diag(encoder.similarity(["liver"], ["liver"])), 1.0, atol=1e-5)
