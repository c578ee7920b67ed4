"""Spine numbers for the model card: vertebra detection and count, curve severity and angle, column box.

Each image is scored against its reference: the true vertebra boxes, and the ``spine-ap-alignment``
template that :mod:`radscribe.annotate` derives from them (the manifest's structured report).

* ``vertebra-f1`` (also ``-precision``/``-recall``) at IoU 0.5: predicted and true vertebra boxes are
  paired one-to-one by Hungarian matching (:func:`radscribe.grounding.matching.match_at_threshold`:
  the most pairs with IoU >= 0.5, ties broken by the higher total IoU), labels ignored. Precision =
  TP / predicted boxes, recall = TP / true boxes, both pooled over images; F1 is their harmonic mean.
* ``vertebra-matched-iou``: the mean IoU of those TP pairs, pooled over all pairs of all images.
* ``count-error-boxes``: |predicted vertebra boxes - true vertebra boxes|, mean over images.
  ``count-error-template``: |``vertebrae.count`` - the reference's|; a blank or unparseable value counts
  as 0 vertebrae.
* ``severity-accuracy``: ``alignment.severity`` (the overall severity) equals the reference's; a blank
  value or an unparseable report is wrong.
* ``angle-mae`` (degrees): |largest predicted curve angle - largest reference curve angle|, mean over
  images. The largest curve angle is the maximum ``angle`` over ``alignment.curves`` (blank angles are
  skipped); a report listing no curve with an angle has largest angle 0, as in the annotation, where
  curves under 5 degrees are not reported and the maximum of none is 0. An unparseable or missing
  report also counts as 0 (it reported no curve), so no image is ever skipped; ``parsed`` says how many
  reports parsed.
* ``column-iou``: IoU of the predicted column box (the region task) with the union of the true vertebra
  boxes, mean over images; a missing box scores 0.

Corpus values are recomputed from summed per-image statistics, so :func:`spine_statistics` gives
bootstrap-ready statistics (resampling images) for :mod:`radscribe.evaluate.bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radscribe.evaluate.base import register_family
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic
from radscribe.grounding.matching import box_iou, match_at_threshold
from radscribe.templates import FilledTemplate
from radscribe.types import Box

VERTEBRA_LABELS = frozenset({"vertebra", "vertebrae"})
IOU_THRESHOLD = 0.5
BOX_METRICS: tuple[str, ...] = (
    "vertebra-precision", "vertebra-recall", "vertebra-f1", "vertebra-matched-iou", "count-error-boxes",
)  # fmt: skip
TEMPLATE_METRICS: tuple[str, ...] = ("count-error-template", "severity-accuracy", "angle-mae", "parsed")
COLUMN_METRICS: tuple[str, ...] = ("column-iou",)
SPINE_METRICS: tuple[str, ...] = (*BOX_METRICS, *TEMPLATE_METRICS, *COLUMN_METRICS)


@dataclass(frozen=True)
class SpineSample:
    """Per-image statistics; every corpus value is a function of their sums."""

    n_true: int
    n_pred: int
    tp: int
    tp_iou_sum: float
    count_error_template: float
    severity_correct: bool
    angle_error: float
    column_iou: float
    parsed: bool

    @property
    def f1(self) -> float:
        """This image's own vertebra F1 (for picking best / median / worst examples)."""
        total = self.n_pred + self.n_true
        return 2 * self.tp / total if total else 1.0


def vertebra_boxes(boxes: Sequence[Box]) -> list[Box]:
    """The vertebra boxes among an image's boxes (CADMA's label, or a grounding pass for 'vertebra')."""
    return [box for box in boxes if box.label.casefold() in VERTEBRA_LABELS]


def column_of(boxes: Sequence[Box]) -> Box | None:
    """The union of the boxes (the reference spine column), ``None`` for no box."""
    if not boxes:
        return None
    return Box.enclosing("spine column", boxes)


def largest_curve_angle(filled: FilledTemplate | None) -> float:
    """The largest ``alignment.curves`` angle in degrees; 0 with no curve, no angle, or no report."""
    if filled is None:
        return 0.0
    curves = filled.sections.get("alignment", {}).get("curves")
    angles = [item.values.get("angle") for item in curves] if isinstance(curves, list) else []
    numbers = [float(a) for a in angles if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)]
    return max(numbers, default=0.0)


def _value(filled: FilledTemplate | None, field_id: str) -> object:
    if filled is None:
        return None
    section, _, name = field_id.partition(".")
    return filled.sections.get(section, {}).get(name)


def _count(filled: FilledTemplate | None) -> float:
    value = _value(filled, "vertebrae.count")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def spine_sample(
    true_boxes: Sequence[Box],
    reference: FilledTemplate,
    predicted_boxes: Sequence[Box] = (),
    prediction: FilledTemplate | None = None,
    column: Box | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> SpineSample:
    """Score one image. ``true_boxes``/``predicted_boxes`` are vertebra boxes (other labels are dropped);
    ``prediction`` is the parsed predicted template (``None`` when missing or unparseable)."""
    truth, predicted = vertebra_boxes(true_boxes), vertebra_boxes(predicted_boxes)
    pairs = match_at_threshold(predicted, truth, iou_threshold, match_labels=False)
    true_column = column_of(truth)
    severity = _value(prediction, "alignment.severity")
    reference_severity = _value(reference, "alignment.severity")
    return SpineSample(
        n_true=len(truth),
        n_pred=len(predicted),
        tp=len(pairs),
        tp_iou_sum=sum(box_iou(predicted[p], truth[g]) for p, g in pairs),
        count_error_template=abs(_count(prediction) - _count(reference)),
        severity_correct=isinstance(severity, str)
        and isinstance(reference_severity, str)
        and severity.strip().casefold() == reference_severity.strip().casefold(),
        angle_error=abs(largest_curve_angle(prediction) - largest_curve_angle(reference)),
        column_iou=box_iou(column, true_column) if column is not None and true_column is not None else 0.0,
        parsed=prediction is not None,
    )


def sample_vector(s: SpineSample) -> list[float]:
    """Per-image sufficient statistics, in the column order :func:`corpus_from_sums` reads."""
    return [
        1.0, s.n_true, s.n_pred, s.tp, s.tp_iou_sum, abs(s.n_pred - s.n_true), s.count_error_template,
        float(s.severity_correct), s.angle_error, s.column_iou, float(s.parsed),
    ]  # fmt: skip


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def corpus_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Corpus values for (B, 11) summed sample vectors (module docstring); 0/0 is 0."""
    n, n_true, n_pred, tp, iou, count_boxes, count_template, severity, angle, column, parsed = np.atleast_2d(sums).T
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_true)
    return {
        "vertebra-precision": precision,
        "vertebra-recall": recall,
        "vertebra-f1": _ratio(2 * precision * recall, precision + recall),
        "vertebra-matched-iou": _ratio(iou, tp),
        "count-error-boxes": _ratio(count_boxes, n),
        "count-error-template": _ratio(count_template, n),
        "severity-accuracy": _ratio(severity, n),
        "angle-mae": _ratio(angle, n),
        "parsed": _ratio(parsed, n),
        "column-iou": _ratio(column, n),
    }


def spine_statistics(samples: Sequence[SpineSample], metrics: Collection[str] = SPINE_METRICS) -> dict[str, WeightedStatistic]:
    """One bootstrap-ready statistic per metric (a system without boxes asks only for the others)."""
    if not samples:
        raise ValueError("no spine images to score")
    unknown = set(metrics) - set(SPINE_METRICS)
    if unknown:
        raise ValueError(f"unknown spine metrics {sorted(unknown)}; known: {', '.join(SPINE_METRICS)}")
    vectors = np.array([sample_vector(s) for s in samples], dtype=float)
    return {
        name: SufficientStatistic(vectors, lambda sums, name=name: corpus_from_sums(sums)[name])
        for name in SPINE_METRICS
        if name in metrics
    }


# ----- the `spine` family of `radscribe evaluate` -------------------------------------------------------
STRICT_IOU = 0.7
CONSISTENCY_RULES: tuple[str, ...] = ("severity", "count", "impression")


def consistency(filled: FilledTemplate | None, vertebrae: int | None) -> dict[str, bool]:
    """The three rules a spine report must keep with itself (all false for an unparseable report):

    * ``severity``: ``alignment.severity`` is the severity of the largest listed curve angle
      (:func:`radscribe.annotate.severity_of`), or "not assessed";
    * ``count``: ``vertebrae.count`` equals the number of vertebra boxes drawn (``vertebrae=None``: a
      system that draws no boxes, the rule holds vacuously);
    * ``impression``: the impression says "Scoliosis (<overall severity>)" exactly when a listed curve
      is scoliotic (severity other than none), and otherwise does not start with "Scoliosis".
    """
    from radscribe.annotate import NOT_ASSESSED, severity_of

    if filled is None:
        return {rule: False for rule in CONSISTENCY_RULES}
    severity = _value(filled, "alignment.severity")
    curves = _value(filled, "alignment.curves")
    curve_severities = [str(item.values.get("severity") or "").casefold() for item in curves] if isinstance(curves, list) else []
    scoliotic = any(value not in ("", "none", NOT_ASSESSED) for value in curve_severities)
    impression = str(_value(filled, "impression.text") or "").strip().casefold()
    if scoliotic:
        impression_ok = isinstance(severity, str) and impression.startswith(f"scoliosis ({severity.casefold()})")
    else:
        impression_ok = not impression.startswith("scoliosis")
    return {
        "severity": severity == NOT_ASSESSED or severity == severity_of(largest_curve_angle(filled)),
        "count": vertebrae is None or _count(filled) == vertebrae,
        "impression": impression_ok,
    }


@register_family("spine")
def spine_family(studies: Sequence[Any], predictions: dict[str, Any], options: Any) -> Any:
    """Every spine metric of the model card for the studies with a ``spine-ap-alignment`` reference.

    A prediction's vertebra boxes are its boxes labelled vertebra; its column is its ``column`` box or
    else the union of its vertebrae; its report is parsed as the template (unparseable: ``None``).
    Box metrics are computed only when some prediction carries boxes. Besides :data:`SPINE_METRICS`
    (at IoU 0.5): ``vertebra-f1-iou0.7`` (and precision, recall, matched IoU), ``template-conformance``
    (parses and validates), ``report-consistency`` (all rules of :func:`consistency`) and each rule
    alone, and ``degenerate-boxes`` (boxes per image with no area or unparseable coordinates).
    """
    from radscribe.evaluate.base import FamilyOutput, MetricUnavailable, scores_of
    from radscribe.evaluate.bootstrap import SampleMean
    from radscribe.annotate import SPINE_TEMPLATE
    from radscribe.templates import TemplateParseError, parse, validate

    chosen = [s for s in studies if s.template == SPINE_TEMPLATE and s.structured]
    if not chosen:
        raise MetricUnavailable(f"no reference study has a {SPINE_TEMPLATE} report")
    with_boxes = any(predictions.get(s.id) is not None and predictions[s.id].boxes is not None for s in chosen)
    samples, strict, rules, conformant, degenerate = [], [], [], [], []
    for study in chosen:
        prediction = predictions.get(study.id)
        boxes = (prediction.boxes or []) if prediction is not None else []
        vertebrae = vertebra_boxes([b for b in boxes if b is not None and b.area > 0])
        filled, valid = None, False
        if prediction is not None and prediction.report:
            try:
                filled = parse(prediction.report, SPINE_TEMPLATE)
                valid = not validate(filled, SPINE_TEMPLATE)
            except TemplateParseError:
                filled = None
        column = prediction.column if prediction is not None and prediction.column is not None else column_of(vertebrae)
        reference = parse(study.structured, SPINE_TEMPLATE)
        samples.append(spine_sample(study.boxes, reference, vertebrae, filled, column))
        strict.append(spine_sample(study.boxes, reference, vertebrae, filled, column, iou_threshold=STRICT_IOU))
        drew = prediction is not None and prediction.boxes is not None
        rules.append(consistency(filled, len(vertebrae) if drew else None))
        conformant.append(float(valid))
        degenerate.append(float(sum(b is None or b.area <= 0 for b in boxes)))
    metrics = [m for m in SPINE_METRICS if with_boxes or m not in BOX_METRICS]
    statistics = spine_statistics(samples, metrics)
    if with_boxes:
        for name, statistic in spine_statistics(strict, ("vertebra-precision", "vertebra-recall", "vertebra-f1", "vertebra-matched-iou")).items():
            statistics[f"{name}-iou{STRICT_IOU}"] = statistic
    statistics["template-conformance"] = SampleMean(conformant)
    statistics["report-consistency"] = SampleMean([float(all(r.values())) for r in rules])
    for rule in CONSISTENCY_RULES:
        statistics[f"consistency-{rule}"] = SampleMean([float(r[rule]) for r in rules])
    statistics["degenerate-boxes"] = SampleMean(degenerate)
    details = {"degenerate-boxes": {"total": int(sum(degenerate))}, "report-consistency": {"inconsistent": sum(not all(r.values()) for r in rules)}}
    scores = scores_of(statistics, details)
    for score in scores:  # per-image values where an image has its own (per_sample.csv; best/median/worst films)
        if score.name == "vertebra-f1":
            score.per_sample = [sample.f1 for sample in samples]
        elif score.name in ("report-consistency", "template-conformance", "degenerate-boxes"):
            score.per_sample = list(statistics[score.name].values)  # type: ignore[attr-defined]
    return FamilyOutput(scores, [s.id for s in chosen], statistics)
