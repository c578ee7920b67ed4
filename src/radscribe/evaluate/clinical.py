"""Clinical efficacy (CE): precision, recall and F1 over CheXpert label matrices, every published variant.

Papers feed an N x 14 label matrix (1 positive, 0 negative, -1 uncertain, blank not mentioned) into
P/R/F1 in incompatible ways (see ``evaluation-metrics.md`` §2.2), so radscribe computes all of them and
names each one: ``{pos-only, uncertain-as-pos} x {micro, macro, weighted, example} x {14, 5}``.

Uncertainty mappings:
  * ``pos-only``: only 1 is positive (R2Gen ``compute_ce.py``, cvt2distilgpt2);
  * ``uncertain-as-pos``: 1 and -1 are positive (f1chexbert / RadEval, ORGan).
  Blank and 0 are always negative.

Zero-division rule (explicit, for every variant): any 0/0 in precision, recall or F1 is 0. This is
sklearn's ``zero_division=0``, which R2Gen and f1chexbert get by default, and the ``nan_to_num`` of the
example-based CheXbert metrics. Consequences worth knowing: a label that no reference and no hypothesis
marks positive contributes F1 = 0 to the macro mean, and a report whose reference and hypothesis are
both all-negative scores 0 in the example-based average.

Labelers: label CSVs produced elsewhere (the trusted path for published comparisons),
``chexpert-lite`` (radscribe's approximate rule labeler) and CheXbert from local weights only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radscribe.evaluate.base import MetricUnavailable, Score, register_metric
from radscribe.evaluate.bootstrap import SampleMean, SufficientStatistic, WeightedStatistic
from radscribe.labeling import CHEXPERT_OBSERVATIONS

CE_LABELS_5: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
LABEL_SETS: dict[str, tuple[str, ...]] = {"14": tuple(CHEXPERT_OBSERVATIONS), "5": CE_LABELS_5}
UNCERTAINTY_MAPPINGS: tuple[str, ...] = ("pos-only", "uncertain-as-pos")
AVERAGES: tuple[str, ...] = ("micro", "macro", "weighted", "example")
LABELERS: tuple[str, ...] = ("chexpert-lite", "chexbert", "csv")
ID_COLUMNS: tuple[str, ...] = ("id", "study_id")

_CSV_VALUES = {"": math.nan, "nan": math.nan, "1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0}


class LabelFileError(ValueError):
    """A label CSV that does not fit the expected format; names file, line and column."""


@dataclass(frozen=True)
class LabelMatrix:
    """Labels of N reports over the 14 CheXpert observations (columns in CheXpert order).

    ``values`` holds 1, 0, -1 or NaN (not mentioned). ``ids`` names the rows when known.
    """

    values: np.ndarray
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(CHEXPERT_OBSERVATIONS):
            raise ValueError(f"a label matrix has {len(CHEXPERT_OBSERVATIONS)} columns, got shape {self.values.shape}")
        if self.ids is not None and len(self.ids) != len(self.values):
            raise ValueError(f"{len(self.ids)} ids for {len(self.values)} label rows")

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], ids: Sequence[str] | None = None) -> LabelMatrix:
        """Rows as ``{observation: 1 | 0 | -1 | None}``; missing observations are blank."""
        values = np.full((len(rows), len(CHEXPERT_OBSERVATIONS)), np.nan)
        for r, row in enumerate(rows):
            unknown = set(row) - set(CHEXPERT_OBSERVATIONS)
            if unknown:
                raise ValueError(f"row {r}: unknown observation(s) {sorted(unknown)}; expected CheXpert names")
            for c, name in enumerate(CHEXPERT_OBSERVATIONS):
                value = row.get(name)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    if value not in (1, 0, -1):
                        raise ValueError(f"row {r}: '{name}' must be 1, 0, -1 or blank, got {value!r}")
                    values[r, c] = float(value)
        return cls(values, tuple(ids) if ids is not None else None)

    def select(self, ids: Sequence[str]) -> LabelMatrix:
        """The rows for ``ids`` in that order; ids absent here become all-blank rows."""
        if self.ids is None:
            raise ValueError("this label matrix has no ids to join on")
        where = {study_id: row for row, study_id in enumerate(self.ids)}
        values = np.full((len(ids), self.values.shape[1]), np.nan)
        for row, study_id in enumerate(ids):
            if study_id in where:
                values[row] = self.values[where[study_id]]
        return LabelMatrix(values, tuple(ids))


def read_label_csv(path: Path | str) -> LabelMatrix:
    """Read a CheXpert-style label CSV (header: the 14 observation names, optionally ``id``/``study_id``).

    Other columns (e.g. the labeler's ``Reports`` text column) are ignored. Without an id column, rows
    are matched by order.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in CHEXPERT_OBSERVATIONS if name not in header]
        if missing:
            raise LabelFileError(f"{path}:1: header lacks the CheXpert column(s) {missing}")
        id_column = next((name for name in ID_COLUMNS if name in header), None)
        ids: list[str] = []
        rows: list[list[float]] = []
        for line, record in enumerate(reader, start=2):
            row = []
            for name in CHEXPERT_OBSERVATIONS:
                text = (record.get(name) or "").strip().lower()
                if text not in _CSV_VALUES:
                    raise LabelFileError(f"{path}:{line}: column '{name}': expected 1, 0, -1 or blank, got {text!r}")
                row.append(_CSV_VALUES[text])
            rows.append(row)
            if id_column:
                study_id = (record.get(id_column) or "").strip()
                if not study_id:
                    raise LabelFileError(f"{path}:{line}: column '{id_column}': expected a non-empty id")
                ids.append(study_id)
    values = np.array(rows, dtype=float).reshape(len(rows), len(CHEXPERT_OBSERVATIONS))
    if id_column and len(set(ids)) != len(ids):
        raise LabelFileError(f"{path}: column '{id_column}' has duplicate ids")
    return LabelMatrix(values, tuple(ids) if id_column else None)


def label_texts(texts: Sequence[str], labeler: str = "chexpert-lite", **options: Any) -> LabelMatrix:
    """Label report texts with a named labeler (``chexpert-lite`` or ``chexbert`` with local weights)."""
    if labeler == "chexpert-lite":
        from radscribe.labeling import label_reports

        return LabelMatrix.from_rows([labels.values for labels in label_reports(list(texts))])
    if labeler == "chexbert":
        from radscribe.evaluate.chexbert import CheXbertLabeler

        weights = options.get("chexbert_weights")
        if not weights:
            raise MetricUnavailable("the chexbert labeler needs a local weights file (--chexbert-weights); radscribe never downloads it")
        return CheXbertLabeler(weights, options.get("chexbert_tokenizer")).label(texts)
    raise ValueError(f"unknown labeler '{labeler}'; known: chexpert-lite, chexbert (label CSVs are read with read_label_csv)")


def binarize(values: np.ndarray, mapping: str) -> np.ndarray:
    """1/0/-1/NaN labels -> positive booleans under an uncertainty mapping."""
    if mapping == "pos-only":
        return values == 1
    if mapping == "uncertain-as-pos":
        return (values == 1) | (values == -1)
    raise ValueError(f"unknown uncertainty mapping '{mapping}'; known: {', '.join(UNCERTAINTY_MAPPINGS)}")


def _divide(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_label_prf(ref: np.ndarray, hyp: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column precision, recall, F1 and support (reference positives) of boolean matrices."""
    tp, fp, fn = _label_counts(ref, hyp).sum(axis=0)
    return {
        "precision": _divide(tp, tp + fp),
        "recall": _divide(tp, tp + fn),
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "support": tp + fn,
    }


def _label_counts(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Per-report, per-label TP/FP/FN as an (N, 3, K) array."""
    return np.stack([ref & hyp, ~ref & hyp, ref & ~hyp], axis=1).astype(float)


def _aggregate(summed: np.ndarray, average: str) -> np.ndarray:
    """(B, 3, K) summed TP/FP/FN -> (B, 3) precision, recall, F1 under micro, macro or weighted averaging."""
    tp, fp, fn = summed[:, 0], summed[:, 1], summed[:, 2]
    if average == "micro":
        tp, fp, fn = tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)
        return np.stack([_divide(tp, tp + fp), _divide(tp, tp + fn), _divide(2 * tp, 2 * tp + fp + fn)], axis=1)
    per_label = np.stack([_divide(tp, tp + fp), _divide(tp, tp + fn), _divide(2 * tp, 2 * tp + fp + fn)], axis=1)
    if average == "macro":
        return per_label.mean(axis=2) if per_label.shape[2] else np.zeros(per_label.shape[:2])
    support = (tp + fn)[:, None, :]
    return _divide((per_label * support).sum(axis=2), support.sum(axis=2))


def _example_values(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """(N, 3) per-report precision, recall, F1."""
    tp, fp, fn = _label_counts(ref, hyp).sum(axis=2).T
    return np.stack([_divide(tp, tp + fp), _divide(tp, tp + fn), _divide(2 * tp, 2 * tp + fp + fn)], axis=1)


def precision_recall_f1(ref: np.ndarray, hyp: np.ndarray, average: str) -> tuple[float, float, float]:
    """P, R, F1 of boolean N x K matrices under one averaging.

    micro: pooled counts. macro: unweighted mean of per-label values. weighted: per-label values
    weighted by reference support. example: per-report values, then the mean over reports.
    Every 0/0 is 0 (module docstring).
    """
    if average == "example":
        values = _example_values(ref, hyp)
        return tuple(float(v) for v in values.mean(axis=0)) if len(values) else (0.0, 0.0, 0.0)  # type: ignore[return-value]
    if average not in AVERAGES:
        raise ValueError(f"unknown averaging '{average}'; known: {', '.join(AVERAGES)}")
    summed = _label_counts(ref, hyp).sum(axis=0)[None]
    return tuple(float(v) for v in _aggregate(summed, average)[0])  # type: ignore[return-value]


def ce_protocol(mapping: str, average: str, label_set: str, labeler: str) -> str:
    return f"{mapping}/{average}/{label_set}@{labeler}"


CE_METRICS: tuple[str, ...] = ("ce-precision", "ce-recall", "ce-f1")


def ce_statistics(ref: LabelMatrix, hyp: LabelMatrix, labeler: str) -> dict[str, WeightedStatistic]:
    """One bootstrap-ready statistic per CE score key (``ce-f1@pos-only/micro/14@chexpert-lite``...)."""
    if len(ref) != len(hyp):
        raise ValueError(f"{len(ref)} reference label rows but {len(hyp)} hypothesis label rows")
    if len(ref) == 0:
        raise ValueError("no reports to score")
    statistics: dict[str, WeightedStatistic] = {}
    for mapping in UNCERTAINTY_MAPPINGS:
        ref_pos, hyp_pos = binarize(ref.values, mapping), binarize(hyp.values, mapping)
        for label_set, labels in LABEL_SETS.items():
            cols = [CHEXPERT_OBSERVATIONS.index(name) for name in labels]
            r, h = ref_pos[:, cols], hyp_pos[:, cols]
            counts = _label_counts(r, h).reshape(len(r), -1)
            examples = _example_values(r, h)
            for average in AVERAGES:
                protocol = ce_protocol(mapping, average, label_set, labeler)
                for m, metric in enumerate(CE_METRICS):
                    key = f"{metric}@{protocol}"
                    if average == "example":
                        statistics[key] = SampleMean(examples[:, m])
                    else:
                        statistics[key] = SufficientStatistic(
                            counts,
                            lambda sums, a=average, m=m, k=len(cols): _aggregate(sums.reshape(len(sums), 3, k), a)[:, m],
                        )
    return statistics


def clinical_scores(ref: LabelMatrix, hyp: LabelMatrix, labeler: str) -> list[Score]:
    """Every named CE variant for aligned label matrices.

    Names are ``ce-precision``, ``ce-recall``, ``ce-f1``; protocols like ``pos-only/micro/14@chexpert-lite``.
    Example-based F1 keeps its per-report values; macro F1 keeps per-label values in ``details``.
    """
    scores: list[Score] = []
    statistics = ce_statistics(ref, hyp, labeler)
    for key, statistic in statistics.items():
        name, _, protocol = key.partition("@")
        mapping, average, label_set = protocol.split("@")[0].split("/")
        per_sample = statistic.values.tolist() if isinstance(statistic, SampleMean) else None
        details: dict[str, Any] = {}
        if average == "macro" and name == "ce-f1":
            cols = [CHEXPERT_OBSERVATIONS.index(o) for o in LABEL_SETS[label_set]]
            per_label = per_label_prf(binarize(ref.values, mapping)[:, cols], binarize(hyp.values, mapping)[:, cols])
            details["per_label"] = {
                label: {k: float(per_label[k][i]) for k in ("precision", "recall", "f1", "support")}
                for i, label in enumerate(LABEL_SETS[label_set])
            }
        scores.append(Score(name, statistic.value(), per_sample, protocol, details))
    return scores


@register_metric("ce")
class ClinicalEfficacy:
    """CE over report texts (labelled here) or over label rows (dicts or :class:`LabelMatrix`)."""

    name = "ce"

    def __init__(self, labeler: str = "chexpert-lite", **labeler_options: Any):
        if labeler not in LABELERS:
            raise ValueError(f"unknown labeler '{labeler}'; known: {', '.join(LABELERS)}")
        self.labeler = labeler
        self.labeler_options = labeler_options

    def _matrix(self, items: Sequence[Any] | LabelMatrix) -> LabelMatrix:
        if isinstance(items, LabelMatrix):
            return items
        if all(isinstance(item, str) for item in items):
            if self.labeler == "csv":
                raise ValueError("labeler 'csv' scores label rows, not texts")
            return label_texts(items, self.labeler, **self.labeler_options)
        return LabelMatrix.from_rows(list(items))

    def compute_score(self, refs: Sequence[Any], hyps: Sequence[Any]) -> list[Score]:
        return clinical_scores(self._matrix(refs), self._matrix(hyps), self.labeler)
