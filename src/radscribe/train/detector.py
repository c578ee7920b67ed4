"""Training a BoxDetector (the vertebra detector): targets, losses, box-moving augmentation, the loop.

Targets on the stride-4 grid, in the manner of TTFNet (Liu et al. 2020):

- **heatmap**: per box an elliptical Gaussian at its centre cell, sigma = ``alpha`` x (box side) / 6
  on each axis, so a tall vertebra gets a tall peak; cells keep the maximum over boxes. Trained with
  CenterNet's penalty-reduced focal loss (alpha 2, beta 4), divided by the number of boxes.
- **edges**: every cell inside a box's (narrower, ``beta``) Gaussian learns that box's left, top,
  right and bottom distances; the loss is 1 - GIoU, weighted by the Gaussian so the centre counts
  most, each box's weights summing to one.

Augmentation moves the boxes with the image (:mod:`radscribe.train.augment`), on the original film,
before it is letterboxed into the model input. Validation reports box F1 at IoU 0.5 and 0.7 (one-to-one Hungarian
matching), the mean IoU of matched boxes and the count error; the best model by F1 at IoU 0.5 is kept.

Runs are resumable exactly like VLM training: checkpoints hold weights, optimiser, scheduler and RNG
states, and ``--resume`` continues from the latest one.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radscribe.data.images import Radiograph, read_image
from radscribe.data.manifest import atomic_folder, atomic_write, iter_manifest, resolve_image_path
from radscribe.grounding.matching import box_iou, match_at_threshold
from radscribe.models.detector import BoxDetector, DenseOutput, DetectorConfig, decode_detections, grid_centres
from radscribe.models.image import letterbox
from radscribe.train import checkpoint as ckpt
from radscribe.train.augment import AugmentSection, build_pipeline, transform
from radscribe.train.config import CheckpointSection, ConfigError, OptimSection, build_section, read_recipe, resolve_path
from radscribe.train.optim import make_optimizer, warmup_cosine
from radscribe.types import Box

log = logging.getLogger(__name__)

HEATMAP_ALPHA = 0.54   # TTFNet's Gaussian size for the heatmap
EDGE_BETA = 0.54       # and for the cells that regress a box's edges
GIOU_WEIGHT = 5.0      # TTFNet's balance between the two losses
RESULT_FILE = "result.json"


@dataclass
class DetectorDataSection:
    train: list[str] = field(default_factory=list)     # manifests (JSONL) with boxes
    valid: list[str] = field(default_factory=list)
    train_split: str | None = "train"
    valid_split: str | None = "valid"
    max_train_studies: int | None = None
    max_valid_studies: int | None = None


@dataclass
class DetectorEvalSection:
    every: int = 200
    thresholds: list[float] = field(default_factory=lambda: [0.2, 0.3, 0.4, 0.5])


@dataclass
class DetectorRecipe:
    kind: str = "detector"
    model: dict[str, Any] = field(default_factory=dict)     # DetectorConfig fields
    pretrained: bool = True                                  # start the encoder from ImageNet weights
    data: DetectorDataSection = field(default_factory=DetectorDataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    eval: DetectorEvalSection = field(default_factory=DetectorEvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    seed: int = 0
    device: str = "auto"


def load_detector_recipe(path: Path | str, overrides: list[str] | None = None) -> DetectorRecipe:
    """A detector recipe from YAML (``kind: detector``), checked, with manifest paths resolved."""
    source = str(path)
    recipe = build_section(DetectorRecipe, read_recipe(path, overrides), source)
    if recipe.kind != "detector":
        raise ConfigError(source, "kind", "'detector' for a detector recipe", recipe.kind)
    try:
        DetectorConfig.from_dict(recipe.model, source=f"{source}: model")
    except (TypeError, ValueError) as error:
        raise ConfigError(source, "model", f"detector config fields ({error})") from None
    if not recipe.data.train:
        raise ConfigError(source, "data.train", "at least one training manifest")
    for key, value, expected in (
        ("optim.lr", recipe.optim.lr > 0, "a positive learning rate"),
        ("optim.batch_size", recipe.optim.batch_size >= 1, "an integer >= 1"),
        ("optim.max_steps", recipe.optim.max_steps >= 1, "an integer >= 1"),
        ("eval.every", recipe.eval.every >= 1, "an integer >= 1"),
        ("eval.thresholds", bool(recipe.eval.thresholds) and all(0 < t < 1 for t in recipe.eval.thresholds), "thresholds in (0, 1)"),
        ("checkpoint.every", recipe.checkpoint.every >= 1, "an integer >= 1"),
    ):
        if not value:
            raise ConfigError(source, key, expected)
    recipe.data.train = [resolve_path(item) for item in recipe.data.train]
    recipe.data.valid = [resolve_path(item) for item in recipe.data.valid]
    return recipe


@dataclass
class Sample:
    """One training or validation film: its pixels (uint8, decoded once) and its boxes for the detector's labels."""

    study_id: str
    pixels: np.ndarray
    boxes: list[Box]


def load_samples(manifests: list[str], split: str | None, labels: list[str], limit: int | None) -> list[Sample]:
    """Every study of ``split`` with at least one box of a detector label, decoded once into memory."""
    wanted = set(labels)
    samples = []
    for manifest in manifests:
        for study in iter_manifest(manifest):
            if split is not None and study.split != split:
                continue
            boxes = [box for box in study.boxes if box.image == 0 and box.label in wanted]
            if not study.images or not boxes:
                continue
            image = read_image(resolve_image_path(manifest, study.images[0].path))
            samples.append(Sample(study.id, image.to_uint8(), boxes))
            if limit is not None and len(samples) >= limit:
                return samples
    return samples


@dataclass
class Targets:
    heatmap: torch.Tensor   # (labels, h, w) in [0, 1], exactly 1 at box centres
    edges: torch.Tensor     # (4, h, w) input pixels
    boxes: torch.Tensor     # (4, h, w) the box each edge cell belongs to, xyxy input pixels
    weight: torch.Tensor    # (h, w) edge-loss weight, each box's cells summing to 1
    count: int


def make_targets(boxes: list[Box], config: DetectorConfig) -> Targets:
    """Heatmap and edge targets on the stride-4 grid for boxes normalised on the model input."""
    input_w, input_h = config.input_size
    height, width = input_h // 4, input_w // 4
    heatmap = np.zeros((len(config.labels), height, width), dtype=np.float32)
    edges = np.zeros((4, height, width), dtype=np.float32)
    owners = np.zeros((4, height, width), dtype=np.float32)
    weight = np.zeros((height, width), dtype=np.float32)
    best = np.zeros((height, width), dtype=np.float32)      # the edge Gaussian of the box that owns each cell
    xs, ys = (grid.numpy() for grid in grid_centres(height, width))
    # Larger boxes first, so where boxes overlap the smaller one owns the cells (as TTFNet does).
    for box in sorted(boxes, key=lambda b: -b.area):
        x0, y0, x1, y1 = box.x_min * input_w, box.y_min * input_h, box.x_max * input_w, box.y_max * input_h
        centre_col = min(width - 1, max(0, int(round(((x0 + x1) / 2 - 1.5) / 4))))
        centre_row = min(height - 1, max(0, int(round(((y0 + y1) / 2 - 1.5) / 4))))
        label = config.labels.index(box.label)
        gauss = _gaussian(xs, ys, xs[0, centre_col], ys[centre_row, 0], x1 - x0, y1 - y0, HEATMAP_ALPHA)
        heatmap[label] = np.maximum(heatmap[label], gauss)
        heatmap[label, centre_row, centre_col] = 1.0
        area = _gaussian(xs, ys, xs[0, centre_col], ys[centre_row, 0], x1 - x0, y1 - y0, EDGE_BETA)
        inside = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1) & (area > 0.01)
        inside[centre_row, centre_col] = True
        cells = inside & (area >= best)
        if not cells.any():
            continue
        best[cells] = area[cells]
        edges[:, cells] = np.stack([xs - x0, ys - y0, x1 - xs, y1 - ys])[:, cells]
        owners[:, cells] = np.array([x0, y0, x1, y1], dtype=np.float32)[:, None]
        weight[cells] = area[cells] / area[cells].sum()
    return Targets(torch.from_numpy(heatmap), torch.from_numpy(edges), torch.from_numpy(owners), torch.from_numpy(weight), len(boxes))


def _gaussian(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, width: float, height: float, factor: float) -> np.ndarray:
    sigma_x = max(factor * width / 6, 0.5)
    sigma_y = max(factor * height / 6, 0.5)
    return np.exp(-((xs - cx) ** 2 / (2 * sigma_x**2) + (ys - cy) ** 2 / (2 * sigma_y**2))).astype(np.float32)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, count: float) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed over cells and divided by the number of boxes."""
    probability = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1.0).float()
    positive_loss = -torch.log(probability) * (1 - probability) ** 2 * positive
    negative_loss = -torch.log(1 - probability) * probability**2 * (1 - target) ** 4 * (1 - positive)
    return (positive_loss.sum() + negative_loss.sum()) / max(count, 1.0)


def giou_loss(edges: torch.Tensor, target_boxes: torch.Tensor, weight: torch.Tensor, count: float) -> torch.Tensor:
    """Weighted 1 - GIoU between the box each cell predicts and the box it belongs to."""
    cells = weight > 0
    if not cells.any():
        return edges.sum() * 0.0
    batch, _, height, width = edges.shape
    xs, ys = grid_centres(height, width, edges.device)
    xs, ys = xs.expand(batch, height, width)[cells], ys.expand(batch, height, width)[cells]
    left, top, right, bottom = (edges[:, i][cells].float() for i in range(4))
    predicted = torch.stack([xs - left, ys - top, xs + right, ys + bottom], dim=1)
    target = torch.stack([target_boxes[:, i][cells] for i in range(4)], dim=1)
    giou = _giou(predicted, target)
    return ((1 - giou) * weight[cells]).sum() / max(count, 1.0)


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter_w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2], b[:, 2]) - torch.minimum(a[:, 0], b[:, 0])) * (torch.maximum(a[:, 3], b[:, 3]) - torch.minimum(a[:, 1], b[:, 1]))
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def detection_loss(output: DenseOutput, targets: list[Targets]) -> tuple[torch.Tensor, dict[str, float]]:
    heatmap = torch.stack([t.heatmap for t in targets]).to(output.heatmap.device)
    boxes = torch.stack([t.boxes for t in targets]).to(output.edges.device)
    weight = torch.stack([t.weight for t in targets]).to(output.edges.device)
    count = float(sum(t.count for t in targets))
    focal = focal_loss(output.heatmap, heatmap, count)
    giou = giou_loss(output.edges, boxes, weight, count)
    total = focal + GIOU_WEIGHT * giou
    return total, {"heatmap": float(focal.detach()), "giou": float(giou.detach())}


def score_detections(predicted: list[list[Box]], truth: list[list[Box]]) -> dict[str, float]:
    """Pooled box precision / recall / F1 at IoU 0.5 and 0.7, mean matched IoU (at 0.5) and mean count error."""
    out: dict[str, float] = {}
    for threshold in (0.5, 0.7):
        hits = sum(len(match_at_threshold(p, t, threshold, match_labels=False)) for p, t in zip(predicted, truth))
        n_pred, n_true = sum(map(len, predicted)), sum(map(len, truth))
        precision, recall = hits / max(n_pred, 1), hits / max(n_true, 1)
        key = f"iou{int(threshold * 100):02d}"
        out[f"precision_{key}"], out[f"recall_{key}"] = precision, recall
        out[f"f1_{key}"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ious = [box_iou(p[i], t[j]) for p, t in zip(predicted, truth) for i, j in match_at_threshold(p, t, 0.5, match_labels=False)]
    out["matched_iou"] = float(np.mean(ious)) if ious else 0.0
    out["count_error"] = float(np.mean([abs(len(p) - len(t)) for p, t in zip(predicted, truth)])) if truth else 0.0
    return out


def evaluate_detector(model: BoxDetector, samples: list[Sample], thresholds: list[float], batch_size: int = 16) -> dict[str, Any]:
    """Scores at each heatmap threshold (boxes on the original images, as users get them)."""
    outputs: list[DenseOutput] = []
    transforms = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            prepared = [letterbox(Radiograph(s.pixels.astype(np.float32) / 255.0, Path(s.study_id)), model.config.input_size) for s in chunk]
            pixels = torch.stack([p for p, _ in prepared]).to(model.device).contiguous(memory_format=torch.channels_last)
            outputs.append(model(pixels))
            transforms += [t for _, t in prepared]
    model.train()
    truth = [s.boxes for s in samples]
    scores = {}
    for threshold in thresholds:
        predicted = []
        for output in outputs:
            predicted += decode_detections(output, model.config, threshold)
        predicted = [[t.to_original(b) for b in boxes] for boxes, t in zip(predicted, transforms)]
        scores[f"{threshold:g}"] = score_detections(predicted, truth)
    return scores


def _batch(samples: list[Sample], config: DetectorConfig, pipeline: Any, seed: int) -> tuple[torch.Tensor, list[Targets]]:
    """Augmented, letterboxed pixels and targets; each sample's augmentation is seeded by (seed, position),
    so a resumed run draws exactly what the uninterrupted run would have drawn."""
    pixels, targets = [], []
    for index, sample in enumerate(samples):
        image, boxes = transform(pipeline, sample.pixels, sample.boxes, seed + index) if pipeline else (sample.pixels, sample.boxes)
        tensor, fitted = letterbox(Radiograph(image.astype(np.float32) / 255.0, Path(sample.study_id)), config.input_size)
        pixels.append(tensor)
        targets.append(make_targets([fitted.to_input(box) for box in boxes], config))
    return torch.stack(pixels).contiguous(memory_format=torch.channels_last), targets


def train_detector(recipe: DetectorRecipe, run_dir: Path | str, resume: bool = False) -> dict[str, Any]:
    """Train by ``recipe`` into ``run_dir`` (checkpoints/, metrics.jsonl, best/, final/, result.json); resumable."""
    run_dir = Path(run_dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume {run_dir}) or choose another run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    device = torch.device("cuda" if recipe.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")

    config = DetectorConfig.from_dict(recipe.model, source="model")
    model = BoxDetector.create(config, pretrained=recipe.pretrained and latest is None).to(device).to(memory_format=torch.channels_last)
    train_samples = load_samples(recipe.data.train, recipe.data.train_split, config.labels, recipe.data.max_train_studies)
    valid_samples = load_samples(recipe.data.valid, recipe.data.valid_split, config.labels, recipe.data.max_valid_studies) if recipe.data.valid else []
    if not train_samples:
        raise ValueError(f"data.train: no study of split {recipe.data.train_split!r} has boxes labelled {config.labels}")
    log.info("detector %s: %d training films, %d validation films, %.2f M parameters", config.name, len(train_samples),
             len(valid_samples), sum(p.numel() for p in model.parameters()) / 1e6)

    steps = recipe.optim.max_steps
    optimizer = make_optimizer(model, recipe.optim, recipe.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, recipe.optim.warmup_steps, recipe.optim.min_lr_ratio))
    order_rng = np.random.default_rng(recipe.seed)
    state = {"step": 0, "epoch_order": [], "best": None, "history": []}
    if latest is not None:
        saved = ckpt.load_checkpoint(latest)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order_rng.bit_generator.state = saved["order_rng"]
        ckpt.set_rng_state(saved["rng"])
        state = saved["state"]
        log.info("resumed from %s at step %d", latest, state["step"])
    pipeline = build_pipeline(recipe.augment, flip=True) if recipe.augment.enabled else None
    first_step = state["step"] + 1

    metrics_path = run_dir / "metrics.jsonl"
    model.train()
    started = time.perf_counter()
    while state["step"] < steps:
        if len(state["epoch_order"]) < recipe.optim.batch_size:
            state["epoch_order"] += order_rng.permutation(len(train_samples)).tolist()
        chosen = [train_samples[i] for i in state["epoch_order"][: recipe.optim.batch_size]]
        state["epoch_order"] = state["epoch_order"][recipe.optim.batch_size :]
        pixels, targets = _batch(chosen, config, pipeline, seed=recipe.seed * 1_000_003 + state["step"] * 1009)
        loss, parts = detection_loss(model(pixels.to(device)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        step = state["step"]
        record: dict[str, Any] = {"kind": "train", "step": step, "loss": float(loss.detach()), **parts, "lr": scheduler.get_last_lr()[0]}
        if step % 10 == 0 or step == 1:
            elapsed = time.perf_counter() - started
            log.info("step %d/%d loss %.4f (heatmap %.4f, giou %.4f) lr %.2e, %.2f s/step", step, steps, record["loss"],
                     parts["heatmap"], parts["giou"], record["lr"], elapsed / (step - first_step + 1))
            _append(metrics_path, record)
        if valid_samples and (step % recipe.eval.every == 0 or step == steps):
            scores = evaluate_detector(model, valid_samples, recipe.eval.thresholds)
            best_threshold = max(scores, key=lambda t: scores[t]["f1_iou50"])
            headline = scores[best_threshold]
            _append(metrics_path, {"kind": "valid", "step": step, "scores": scores})
            log.info("step %d valid: F1@0.5 %.4f F1@0.7 %.4f matched IoU %.3f count error %.2f (threshold %s)", step,
                     headline["f1_iou50"], headline["f1_iou70"], headline["matched_iou"], headline["count_error"], best_threshold)
            state["history"].append({"step": step, "threshold": best_threshold, **headline})
            if state["best"] is None or headline["f1_iou50"] > state["best"]["f1_iou50"]:
                state["best"] = {"step": step, "threshold": best_threshold, **headline}
                best_config = DetectorConfig.from_dict({**asdict(config), "score_threshold": float(best_threshold)})
                _save_with_config(model, best_config, run_dir / "best")
        if step % recipe.checkpoint.every == 0 or step == steps:
            ckpt.save_checkpoint(run_dir, step, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "order_rng": order_rng.bit_generator.state, "rng": ckpt.rng_state(), "state": state,
            }, keep_last=recipe.checkpoint.keep_last)
    with atomic_folder(run_dir / "final") as temporary:
        model.save_pretrained(temporary)
    result = {"steps": state["step"], "best": state["best"], "history": state["history"], "recipe": asdict(recipe)}
    with atomic_write(run_dir / RESULT_FILE) as handle:
        json.dump(result, handle, indent=2)
    return result


def _save_with_config(model: BoxDetector, config: DetectorConfig, folder: Path) -> None:
    """Save atomically with ``config`` (the validation-chosen score threshold) in place of the model's own."""
    original = model.config
    model.config = config
    try:
        with atomic_folder(folder) as temporary:
            model.save_pretrained(temporary)
    finally:
        model.config = original


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")

