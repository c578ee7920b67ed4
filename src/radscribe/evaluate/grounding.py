"""Grounding metrics on :class:`~radscribe.types.Box` lists (normalised xyxy), one list per sample.

A hypothesis list may contain ``None`` for a box the model emitted but that could not be parsed: it
counts as a prediction that matches nothing. Missing boxes score 0; nothing is ever skipped.

* Localisation (per reference box): each reference box is paired with a prediction by Hungarian
  matching that maximises total IoU (only between equal normalised labels unless labels are ignored);
  ``iou``/``giou`` are the pair's values, an unpaired reference box scores IoU 0 and GIoU -1 (GIoU's
  floor, so a missing box never beats a bad one). ``acc-iou<t>`` = share of reference boxes with IoU >= t,
  ``miou`` = their mean IoU. Pooled over all reference boxes of the corpus.
* Detection (``box-precision-iou<t>``/``box-recall-iou<t>``/``box-f1-iou<t>``): one-to-one matching that
  maximises the number of pairs with IoU >= t (Hungarian), pooled counts.
* ``g-iou`` (RadGrounder, ``detect_grounding_evaluator.py``): greedy one-to-one phrase matching by text
  similarity (highest first; ties by higher IoU), each pair scores IoU x similarity, the sum divided by
  max(#pred, #gt); the corpus value is the mean over samples that have reference boxes. Similarity is
  normalised-label equality by default (protocol ``label``) or all-MiniLM-L6-v2 cosine (``minilm``).
  RadGrounder itself used embeddinggemma-300m, so only the ``label`` form is an exact definition here.
* RadFact box part (``radfact-*``): boxes grouped by phrase, rasterised on a 224 x 224 grid with
  RadFact's truncating ``int(coord * 224)``; box precision = |candidate ∩ evidence| / |candidate|;
  a phrase is spatially entailed when it is logically entailed and box precision > 0.5. The logical
  entailment needs an LLM in RadFact; here it is "a phrase with the same normalised label exists on
  the other side" (protocol ``label-entailment``), and that side's boxes are the evidence. Precision
  runs prediction -> reference, recall reference -> prediction, per-report values are nan-averaged
  and F1 is the harmonic mean of the averaged P and R.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radscribe.evaluate.base import Score, register_metric
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic
from radscribe.grounding.matching import (
    box_giou,
    box_iou,
    iou_matrix,
    label_similarity,
    match_at_threshold,
    match_max_iou,
    normalise_label,
)
from radscribe.types import Box

IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
RADFACT_MASK_SIZE = 224
RADFACT_PRECISION_THRESHOLD = 0.5

Similarity = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def greedy_phrase_matches(
    pred_labels: Sequence[str], gt_labels: Sequence[str], similarity: np.ndarray, ious: np.ndarray
) -> list[tuple[int, int, float]]:
    """RadGrounder's greedy matching: repeatedly take the most similar remaining (pred, gt) pair."""
    pairs = sorted(
        ((similarity[p, g], ious[p, g], -p, -g) for p in range(len(pred_labels)) for g in range(len(gt_labels))),
        reverse=True,
    )
    used_p: set[int] = set()
    used_g: set[int] = set()
    matches = []
    for sim, _, neg_p, neg_g in pairs:
        p, g = -neg_p, -neg_g
        if p in used_p or g in used_g:
            continue
        used_p.add(p)
        used_g.add(g)
        matches.append((p, g, float(sim)))
    return matches


def g_iou(preds: Sequence[Box | None], gts: Sequence[Box], similarity: Similarity = label_similarity) -> float:
    """RadGrounder's G-IoU of one sample: Σ IoU·similarity over greedy matches / max(#pred, #gt).

    Unparseable predictions (``None``) match nothing but still count in #pred.
    """
    valid = [box for box in preds if box is not None]
    if not valid or not gts:
        return 0.0
    ious = iou_matrix(valid, gts)
    sims = np.asarray(similarity([p.label for p in valid], [g.label for g in gts]))
    matches = greedy_phrase_matches([p.label for p in valid], [g.label for g in gts], sims, ious)
    return sum(ious[p, g] * sim for p, g, sim in matches) / max(len(preds), len(gts))


def radfact_mask(boxes: Sequence[Box], size: int = RADFACT_MASK_SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = (int(v * size) for v in box.xyxy)
        mask[y0:y1, x0:x1] = True
    return mask


def radfact_box_precision(candidate: Sequence[Box], evidence: Sequence[Box]) -> float:
    """|candidate ∩ evidence| / |candidate| on RadFact's 224 grid; NaN when the candidate mask is empty."""
    cand = radfact_mask(candidate)
    area = cand.sum()
    if area == 0:
        return float("nan")
    return float((cand & radfact_mask(evidence)).sum() / area)


def _spatial_entailment_rate(candidates: Sequence[Box | None], evidence: Sequence[Box | None]) -> float:
    """Share of candidate phrases (boxes grouped by label) spatially entailed by the evidence side.

    Each unparseable candidate box (``None``) is one more phrase that is never entailed.
    """
    groups: dict[str, list[Box]] = {}
    unparseable = sum(box is None for box in candidates)
    for box in candidates:
        if box is not None:
            groups.setdefault(normalise_label(box.label), []).append(box)
    evidence_groups: dict[str, list[Box]] = {}
    for box in evidence:
        if box is not None:
            evidence_groups.setdefault(normalise_label(box.label), []).append(box)
    if not groups and not unparseable:
        return float("nan")
    entailed = 0
    for label, boxes in groups.items():
        if label in evidence_groups:
            precision = radfact_box_precision(boxes, evidence_groups[label])
            entailed += int(precision > RADFACT_PRECISION_THRESHOLD)
    return entailed / (len(groups) + unparseable)


@dataclass
class SampleGrounding:
    """Per-sample sufficient statistics; corpus values are recomputed from these (also for bootstrap)."""

    n_gt: int
    n_pred: int
    iou_sum: float
    giou_sum: float
    hits: dict[float, int] = field(default_factory=dict)
    tp: dict[float, int] = field(default_factory=dict)
    g_iou: float = 0.0
    radfact_precision: float = float("nan")
    radfact_recall: float = float("nan")
    gt_ious: list[float] = field(default_factory=list)


def sample_grounding(
    preds: Sequence[Box | None],
    gts: Sequence[Box],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    match_labels: bool = True,
    similarity: Similarity = label_similarity,
) -> SampleGrounding:
    valid = [box for box in preds if box is not None]
    pairs = match_max_iou(valid, gts, match_labels)
    gt_iou = [0.0] * len(gts)
    gt_giou = [-1.0] * len(gts)
    for p, g in pairs:
        gt_iou[g] = box_iou(valid[p], gts[g])
        gt_giou[g] = box_giou(valid[p], gts[g])
    return SampleGrounding(
        n_gt=len(gts),
        n_pred=len(preds),
        iou_sum=sum(gt_iou),
        giou_sum=sum(gt_giou),
        hits={t: sum(v >= t for v in gt_iou) for t in thresholds},
        tp={t: len(match_at_threshold(valid, gts, t, match_labels)) for t in thresholds},
        g_iou=g_iou(preds, gts, similarity),
        radfact_precision=_spatial_entailment_rate(preds, gts),
        radfact_recall=_spatial_entailment_rate(gts, preds),
        gt_ious=gt_iou,
    )


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2 * precision * recall, precision + recall)


def sample_vector(s: SampleGrounding, thresholds: Sequence[float] = IOU_THRESHOLDS) -> list[float]:
    """The per-sample sufficient statistics, in the column order :func:`corpus_from_sums` reads."""
    has_gt = float(s.n_gt > 0)
    p_ok, r_ok = not np.isnan(s.radfact_precision), not np.isnan(s.radfact_recall)
    return [
        s.n_gt, s.n_pred, s.iou_sum, s.giou_sum,
        *(s.hits[t] for t in thresholds), *(s.tp[t] for t in thresholds),
        s.g_iou * has_gt, has_gt,
        s.radfact_precision if p_ok else 0.0, float(p_ok), s.radfact_recall if r_ok else 0.0, float(r_ok),
    ]


def corpus_from_sums(sums: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, np.ndarray]:
    """Corpus values for (B, k) summed sample vectors: mean IoU/GIoU and acc-iou<t> over reference boxes,
    pooled box P/R/F1, G-IoU over samples with reference boxes, nan-averaged RadFact P/R and their F1."""
    n_gt, n_pred, iou, giou = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
    k = len(thresholds)
    hits, tps = sums[:, 4 : 4 + k], sums[:, 4 + k : 4 + 2 * k]
    g_sum, with_gt, rp, rp_n, rr, rr_n = (sums[:, 4 + 2 * k + i] for i in range(6))
    out = {"miou": _ratio(iou, n_gt), "mgiou": _ratio(giou, n_gt)}
    for i, t in enumerate(thresholds):
        out[f"acc-iou{t:g}"] = _ratio(hits[:, i], n_gt)
    for i, t in enumerate(thresholds):
        precision, recall = _ratio(tps[:, i], n_pred), _ratio(tps[:, i], n_gt)
        out[f"box-precision-iou{t:g}"] = precision
        out[f"box-recall-iou{t:g}"] = recall
        out[f"box-f1-iou{t:g}"] = _f1(precision, recall)
    out["g-iou"] = _ratio(g_sum, with_gt)
    out["radfact-spatial-precision"] = _ratio(rp, rp_n)
    out["radfact-spatial-recall"] = _ratio(rr, rr_n)
    out["radfact-spatial-f1"] = _f1(out["radfact-spatial-precision"], out["radfact-spatial-recall"])
    return out


def _per_sample(name: str, s: SampleGrounding) -> float:
    if name == "miou":
        return s.iou_sum / s.n_gt if s.n_gt else float("nan")
    if name == "mgiou":
        return s.giou_sum / s.n_gt if s.n_gt else float("nan")
    return s.g_iou if s.n_gt else float("nan")


@register_metric("grounding")
class GroundingScorer:
    """All grounding metrics for parallel lists of reference and predicted box lists."""

    name = "grounding"

    def __init__(self, thresholds: Sequence[float] = IOU_THRESHOLDS, match_labels: bool = True, similarity: str = "label"):
        self.thresholds = tuple(thresholds)
        self.match_labels = match_labels
        self.similarity_name = similarity
        if similarity == "label":
            self.similarity: Similarity = label_similarity
        elif similarity == "minilm":
            from radscribe.evaluate.embeddings import MiniLMEncoder

            self.similarity = MiniLMEncoder().similarity
        else:
            raise ValueError(f"unknown phrase similarity '{similarity}'; known: label, minilm")

    def samples(self, refs: Sequence[Sequence[Box]], hyps: Sequence[Sequence[Box | None] | None]) -> list[SampleGrounding]:
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} reference box lists but {len(hyps)} predicted box lists")
        return [
            sample_grounding(list(h or []), list(r), self.thresholds, self.match_labels, self.similarity)
            for r, h in zip(refs, hyps)
        ]

    def protocol(self, metric: str) -> str:
        matching = "label-matched" if self.match_labels else "any-label"
        if metric == "g-iou":
            return f"radgrounder/{self.similarity_name}"
        if metric.startswith("radfact"):
            return "radfact-box/label-entailment"
        return matching

    def statistics(self, samples: Sequence[SampleGrounding]) -> dict[str, WeightedStatistic]:
        """One bootstrap-ready statistic per score key."""
        vectors = np.array([sample_vector(s, self.thresholds) for s in samples], dtype=float)
        names = corpus_from_sums(vectors.sum(axis=0, keepdims=True), self.thresholds)
        return {
            f"{name}@{self.protocol(name)}": SufficientStatistic(vectors, lambda sums, n=name: corpus_from_sums(sums, self.thresholds)[n])
            for name in names
        }

    def scores_from(self, samples: Sequence[SampleGrounding]) -> list[Score]:
        if not samples:
            raise ValueError("no samples to score")
        scores = []
        for key, statistic in self.statistics(samples).items():
            name, _, protocol = key.partition("@")
            per_sample = [_per_sample(name, s) for s in samples] if name in ("miou", "mgiou", "g-iou") else None
            details: dict[str, Any] = {"gt_ious": [v for s in samples for v in s.gt_ious]} if name == "miou" else {}
            scores.append(Score(name, statistic.value(), per_sample, protocol, details))
        return scores

    def compute_score(self, refs: Sequence[Sequence[Box]], hyps: Sequence[Sequence[Box | None] | None]) -> list[Score]:
        return self.scores_from(self.samples(refs, hyps))
