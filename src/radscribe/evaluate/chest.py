"""Chest numbers for the model card: the ``chest-pa`` fields against the NIH ChestX-ray14 image labels.

The scored fields are the chest-pa fields some NIH label fills (``label-mapping.yaml``; 13 fields for
14 labels, Mass and Nodule both fill ``lungs.lung_lesion``), in mapping order. Per image and field:

* reference positive: the study has a positive NIH label that maps to the field (the reference
  chest-pa templates of ``data/nih/chest.jsonl`` say "present" for exactly these; NIH labels are weak,
  mined from reports by NLP);
* predicted positive: the field's value is ``present``. ``uncertain``, ``absent``, ``not assessed``,
  blank and an unparseable report are negative (the positive-only mapping of CE metrics).

Per-field precision, recall and F1 pool that field's counts over images; ``macro-f1`` is the
unweighted mean of the per-field F1 and ``micro-f1`` pools every field's counts. Any 0/0 is 0, so a
field that no reference and no prediction marks positive scores F1 0 (sklearn's ``zero_division=0``,
as in :mod:`radscribe.evaluate.clinical`). Every statistic recomputes from summed per-image counts, so
bootstrap resamples (and paired comparisons of two systems) resample images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radscribe.evaluate.base import register_family
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic
from radscribe.templates import FilledTemplate, load_label_mapping
from radscribe.types import Finding

POSITIVE_VALUE = "present"
CHEST_TEMPLATE = "chest-pa"


def nih_fields() -> tuple[str, ...]:
    """The chest-pa field ids an NIH label fills, in mapping order."""
    return tuple(entry.field for entry in load_label_mapping().fields if entry.nih)


def reference_positives(findings_per_image: Sequence[Sequence[Finding]], fields: Sequence[str] | None = None) -> np.ndarray:
    """(N, K) booleans: image ``i`` has a positive NIH label mapping to field ``k``."""
    fields = tuple(fields or nih_fields())
    mapping = load_label_mapping()
    out = np.zeros((len(findings_per_image), len(fields)), dtype=bool)
    for row, findings in enumerate(findings_per_image):
        for finding in findings:
            if finding.status != "positive" or finding.label.replace("_", " ").casefold() == "no finding":
                continue
            field = mapping.field_for_nih(finding.label)
            if field in fields:
                out[row, fields.index(field)] = True
    return out


def predicted_positives(filled: Sequence[FilledTemplate | None], fields: Sequence[str] | None = None) -> np.ndarray:
    """(N, K) booleans: the field's value is ``present`` (``None`` = missing or unparseable report)."""
    fields = tuple(fields or nih_fields())
    out = np.zeros((len(filled), len(fields)), dtype=bool)
    for row, template in enumerate(filled):
        if template is None:
            continue
        for column, field_id in enumerate(fields):
            section, _, name = field_id.partition(".")
            value = template.sections.get(section, {}).get(name)
            out[row, column] = isinstance(value, str) and value.strip().casefold() == POSITIVE_VALUE
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def counts(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-image TP, FP, FN of every field, flattened to (N, 3K) columns [TP_1..K, FP_1..K, FN_1..K]."""
    if reference.shape != predicted.shape:
        raise ValueError(f"reference {reference.shape} and prediction {predicted.shape} label matrices differ in shape")
    return np.concatenate([reference & predicted, ~reference & predicted, reference & ~predicted], axis=1).astype(float)


def per_field_from_sums(sums: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """(B, 3K) summed counts -> per-field precision, recall, F1, each (B, K)."""
    sums = np.atleast_2d(sums)
    tp, fp, fn = sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k :]
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def _micro_f1(sums: np.ndarray, k: int) -> np.ndarray:
    sums = np.atleast_2d(sums)
    tp, fp, fn = sums[:, :k].sum(axis=1), sums[:, k : 2 * k].sum(axis=1), sums[:, 2 * k :].sum(axis=1)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def chest_statistics(reference: np.ndarray, predicted: np.ndarray, fields: Sequence[str] | None = None) -> dict[str, WeightedStatistic]:
    """``macro-f1``, ``micro-f1`` and ``f1/<field>`` for each field, bootstrap-ready (resampling images)."""
    fields = tuple(fields or nih_fields())
    k = len(fields)
    if reference.shape[1:] != (k,):
        raise ValueError(f"label matrices need {k} columns (one per field), got shape {reference.shape}")
    if len(reference) == 0:
        raise ValueError("no chest images to score")
    per_image = counts(reference, predicted)
    statistics: dict[str, WeightedStatistic] = {
        "macro-f1": SufficientStatistic(per_image, lambda sums: per_field_from_sums(sums, k)["f1"].mean(axis=1)),
        "micro-f1": SufficientStatistic(per_image, lambda sums: _micro_f1(sums, k)),
    }
    for index, field in enumerate(fields):
        statistics[f"f1/{field}"] = SufficientStatistic(per_image, lambda sums, i=index: per_field_from_sums(sums, k)["f1"][:, i])
    return statistics


def per_field_table(reference: np.ndarray, predicted: np.ndarray, fields: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Per field: precision, recall, F1, reference positives (support) and predicted positives."""
    fields = tuple(fields or nih_fields())
    values = per_field_from_sums(counts(reference, predicted).sum(axis=0), len(fields))
    return {
        field: {
            "precision": float(values["precision"][0, i]),
            "recall": float(values["recall"][0, i]),
            "f1": float(values["f1"][0, i]),
            "support": int(reference[:, i].sum()),
            "predicted": int(predicted[:, i].sum()),
        }
        for i, field in enumerate(fields)
    }


@register_family("chest")
def chest_family(studies: Sequence[Any], predictions: dict[str, Any], options: Any) -> Any:
    """``macro-f1``, ``micro-f1`` and ``f1/<field>`` against the NIH labels, for the studies with a
    ``chest-pa`` reference; a prediction's report is parsed as ``chest-pa`` (unparseable or missing:
    every field negative). Per-field precision/recall/support are in the details of ``macro-f1``."""
    from radscribe.evaluate.base import FamilyOutput, MetricUnavailable, scores_of
    from radscribe.templates import TemplateParseError, parse

    chosen = [s for s in studies if s.template == CHEST_TEMPLATE]
    if not chosen:
        raise MetricUnavailable(f"no reference study has a {CHEST_TEMPLATE} report")
    filled: list[FilledTemplate | None] = []
    for study in chosen:
        prediction = predictions.get(study.id)
        try:
            filled.append(parse(prediction.report, CHEST_TEMPLATE) if prediction is not None and prediction.report else None)
        except TemplateParseError:
            filled.append(None)
    reference, predicted = reference_positives([s.findings for s in chosen]), predicted_positives(filled)
    statistics = chest_statistics(reference, predicted)
    details = {"macro-f1": {"per_field": per_field_table(reference, predicted), "labels": "NIH ChestX-ray14 image labels (weak, NLP-mined)"}}
    return FamilyOutput(scores_of(statistics, details), [s.id for s in chosen], statistics)
