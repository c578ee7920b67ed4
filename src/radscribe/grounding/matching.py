"""Box geometry and one-to-one matching: IoU, GIoU and Hungarian pairing of predicted with reference boxes.

Shared by training (a detector's validation F1), inference and evaluation, so it sits beside the
box codecs, below all of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from radscribe.types import Box

XYXY = tuple[float, float, float, float]
def _xyxy(box: Box | Sequence[float]) -> XYXY:
    return box.xyxy if isinstance(box, Box) else (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def box_iou(a: Box | Sequence[float], b: Box | Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (continuous coordinates); 0 when the union is empty."""
    ax0, ay0, ax1, ay1 = _xyxy(a)
    bx0, by0, bx1, by1 = _xyxy(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def box_giou(a: Box | Sequence[float], b: Box | Sequence[float]) -> float:
    """Generalised IoU (Rezatofighi et al. 2019): IoU - |C minus (A ∪ B)| / |C|, C the enclosing box."""
    ax0, ay0, ax1, ay1 = _xyxy(a)
    bx0, by0, bx1, by1 = _xyxy(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    if hull <= 0:
        return 0.0
    iou = inter / union if union > 0 else 0.0
    return iou - (hull - union) / hull


def iou_matrix(preds: Sequence[Box], gts: Sequence[Box]) -> np.ndarray:
    """IoU of every prediction (rows) with every reference box (columns)."""
    return np.array([[box_iou(p, g) for g in gts] for p in preds]).reshape(len(preds), len(gts))


def normalise_label(label: str) -> str:
    """Lowercase, punctuation to spaces, single spaces: 'Pleural-Effusion ' -> 'pleural effusion'."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", label.lower()).split())


def label_similarity(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """1 where normalised labels are equal, else 0."""
    na, nb = [normalise_label(x) for x in a], [normalise_label(x) for x in b]
    return np.array([[float(x == y) for y in nb] for x in na]).reshape(len(na), len(nb))


def _label_mask(preds: Sequence[Box], gts: Sequence[Box], match_labels: bool) -> np.ndarray:
    if not match_labels:
        return np.ones((len(preds), len(gts)), dtype=bool)
    return label_similarity([p.label for p in preds], [g.label for g in gts]) > 0


def match_max_iou(preds: Sequence[Box], gts: Sequence[Box], match_labels: bool = True) -> list[tuple[int, int]]:
    """One-to-one pairs (pred, gt) maximising the total IoU; pairs with IoU 0 or different labels are dropped."""
    if not preds or not gts:
        return []
    weights = iou_matrix(preds, gts) * _label_mask(preds, gts, match_labels)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if weights[r, c] > 0]


def match_at_threshold(
    preds: Sequence[Box], gts: Sequence[Box], threshold: float, match_labels: bool = True
) -> list[tuple[int, int]]:
    """One-to-one pairs with IoU >= threshold, as many as possible (ties: higher total IoU).

    Each valid pair weighs 1 + IoU/(k+1) with k = min(#pred, #gt), so any matching with more pairs
    outweighs every matching with fewer, and the IoU term only breaks ties.
    """
    if not preds or not gts:
        return []
    ious = iou_matrix(preds, gts)
    valid = (ious >= threshold) & _label_mask(preds, gts, match_labels)
    weights = np.where(valid, 1.0 + ious / (min(len(preds), len(gts)) + 1), 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]
