"""Spine metrics: Hungarian vertebra F1, matched IoU, counts, severity, angle MAE, column IoU."""

from __future__ import annotations

import pytest
from conftest import shared_path

from radscribe.evaluate.bootstrap import bootstrap
from radscribe.evaluate.spine import (
    BOX_METRICS,
    SPINE_METRICS,
    TEMPLATE_METRICS,
    column_of,
    largest_curve_angle,
    spine_sample,
    spine_statistics,
    vertebra_boxes,
)
from radscribe.templates import GroundedFinding, load_template
from radscribe.types import Box


def column(*spans: tuple[float, float], x: tuple[float, float] = (0.4, 0.6)) -> list[Box]:
    """Vertebra boxes sharing one x range, one per (y0, y1) span."""
    return [Box("vertebra", x[0], y0, x[1], y1) for y0, y1 in spans]


def report(severity: str | None = "mild", angles: tuple[float | None, ...] = (12.0,), count: int | None = 17):
    filled = load_template("spine-ap-alignment").blank()
    filled.set("vertebrae.count", count)
    filled.set("alignment.severity", severity)
    filled.set("alignment.curves", [GroundedFinding({"region": "thoracic", "angle": angle}) for angle in angles])
    return filled


def shifted(boxes: list[Box], fraction: float) -> list[Box]:
    """Each box moved down by ``fraction`` of its own height: IoU with the original is (1 - f) / (1 + f)."""
    return [Box("vertebra", b.x_min, b.y_min + fraction * b.height, b.x_max, b.y_max + fraction * b.height) for b in boxes]


def cadma_boxes() -> list[Box]:
    """The vertebra boxes of one real CADMA validation film (YOLO labels: class cx cy w h)."""
    labels = sorted((shared_path("spine-cadma") / "valid" / "labels").glob("*.txt"))[0]
    boxes = []
    for line in labels.read_text().splitlines():
        _, cx, cy, w, h = map(float, line.split()[:5])
        boxes.append(Box("vertebra", cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return boxes


def values(samples, metrics=SPINE_METRICS) -> dict[str, float]:
    return {name: statistic.value() for name, statistic in spine_statistics(samples, metrics).items()}


def test_shifted_copy_of_real_cadma_boxes_matches_every_vertebra_with_the_known_iou() -> None:
    truth = cadma_boxes()
    assert len(truth) >= 10
    ok = values([spine_sample(truth, report(), shifted(truth, 0.2))])
    assert ok["vertebra-f1"] == pytest.approx(1.0)
    assert ok["vertebra-matched-iou"] == pytest.approx(0.8 / 1.2)
    # Shifted by half a height a box overlaps its own vertebra and the next one by a third each: no match.
    assert values([spine_sample(truth, report(), shifted(truth, 0.5))])["vertebra-f1"] == 0.0


def test_missing_and_extra_boxes_give_the_pooled_precision_and_recall() -> None:
    truth = cadma_boxes()
    spurious = [Box("vertebra", 0.0, 0.0, 0.05, 0.02), Box("vertebra", 0.9, 0.9, 1.0, 1.0)]
    predicted = truth[3:] + spurious
    result = values([spine_sample(truth, report(), predicted)])
    tp = len(truth) - 3
    assert result["vertebra-precision"] == pytest.approx(tp / len(predicted))
    assert result["vertebra-recall"] == pytest.approx(tp / len(truth))
    assert result["count-error-boxes"] == pytest.approx(1.0)


def test_hungarian_matching_finds_pairs_a_greedy_highest_iou_matching_misses() -> None:
    # In units of 1/20: gt1 = [0, 10], gt2 = [2, 12]; A = [0.5, 10.5] has IoU 9.5/10.5 with gt1 and
    # 8.5/11.5 with gt2, B = [-3, 7] only reaches gt1 (IoU 7/13). Greedy takes the best pair A-gt1 and
    # strands B (IoU 5/15 with gt2); Hungarian pairs A-gt2 and B-gt1.
    def span(y0: float, y1: float) -> tuple[float, float]:
        return (0.2 + y0 / 20, 0.2 + y1 / 20)

    truth = column(span(0, 10), span(2, 12))
    predicted = column(span(0.5, 10.5), span(-3, 7))
    result = values([spine_sample(truth, report(), predicted)])
    assert result["vertebra-f1"] == pytest.approx(1.0)
    assert result["vertebra-matched-iou"] == pytest.approx((8.5 / 11.5 + 7 / 13) / 2)


def test_box_counts_pool_over_images_before_the_ratio() -> None:
    truth_a = column((0.1, 0.2), (0.2, 0.3))
    truth_b = column((0.1, 0.2), (0.2, 0.3), (0.3, 0.4))
    samples = [spine_sample(truth_a, report(), truth_a), spine_sample(truth_b, report(), [])]
    result = values(samples)
    assert result["vertebra-precision"] == 1.0
    assert result["vertebra-recall"] == pytest.approx(2 / 5)
    assert result["vertebra-f1"] == pytest.approx(2 * 0.4 / 1.4)
    assert result["count-error-boxes"] == pytest.approx(1.5)
    assert [s.f1 for s in samples] == [1.0, 0.0]


def test_other_labels_are_not_vertebrae() -> None:
    truth = column((0.1, 0.2), (0.2, 0.3)) + [Box("T5", 0.4, 0.1, 0.6, 0.2), Box("spine column", 0.4, 0.1, 0.6, 0.3)]
    predicted = column((0.1, 0.2)) + [Box("thoracic curve 1", 0.4, 0.1, 0.6, 0.3)]
    sample = spine_sample(truth, report(), predicted)
    assert (sample.n_true, sample.n_pred, sample.tp) == (2, 1, 1)
    assert len(vertebra_boxes(truth)) == 2


def test_severity_angle_and_count_against_the_reference_template() -> None:
    reference = report("moderate", (12.0, 30.5), count=16)
    samples = [
        spine_sample([], reference, prediction=report("moderate", (20.0,), count=17)),  # angle error 10.5
        spine_sample([], reference, prediction=report("MODERATE ", (None, 33.0), count=16)),  # blank angle skipped: 2.5
        spine_sample([], reference, prediction=report("severe", (), count=None)),  # no curve: 30.5, blank count: 16
        spine_sample([], reference, prediction=None),  # unparseable: wrong, angle 0, count 0
    ]
    result = values(samples, TEMPLATE_METRICS)
    assert set(result) == set(TEMPLATE_METRICS)
    assert result["severity-accuracy"] == pytest.approx(0.5)
    assert result["angle-mae"] == pytest.approx((10.5 + 2.5 + 30.5 + 30.5) / 4)
    assert result["count-error-template"] == pytest.approx((1 + 0 + 16 + 16) / 4)
    assert result["parsed"] == pytest.approx(0.75)


def test_largest_curve_angle_is_zero_without_curves_or_report() -> None:
    assert largest_curve_angle(report(angles=(8.6, 13.9))) == pytest.approx(13.9)
    assert largest_curve_angle(report(angles=())) == 0.0
    assert largest_curve_angle(report(angles=(None,))) == 0.0
    assert largest_curve_angle(None) == 0.0


def test_column_iou_compares_with_the_union_of_true_vertebrae() -> None:
    truth = column((0.1, 0.2), (0.2, 0.3), x=(0.4, 0.6))
    exact = column_of(truth)
    assert exact is not None and exact.xyxy == pytest.approx((0.4, 0.1, 0.6, 0.3))
    half = Box("spine column", 0.4, 0.1, 0.6, 0.2)
    samples = [spine_sample(truth, report(), column=exact), spine_sample(truth, report(), column=half), spine_sample(truth, report())]
    assert [s.column_iou for s in samples] == pytest.approx([1.0, 0.5, 0.0])
    assert values(samples, ("column-iou",))["column-iou"] == pytest.approx(0.5)


def test_statistics_bootstrap_over_images_and_reject_unknown_metrics() -> None:
    truth = column((0.1, 0.2), (0.2, 0.3), (0.3, 0.4))
    samples = [spine_sample(truth, report(), truth[: k + 1]) for k in range(3)] * 4
    statistics = spine_statistics(samples, BOX_METRICS)
    assert set(statistics) == set(BOX_METRICS)
    result = bootstrap(statistics["vertebra-recall"], n_resamples=200, seed=0)
    assert result.estimate == pytest.approx(6 / 9)
    assert result.low < result.estimate < result.high
    with pytest.raises(ValueError, match="unknown spine metrics"):
        spine_statistics(samples, ("cobb-angle",))
    with pytest.raises(ValueError, match="no spine images"):
        spine_statistics([])
