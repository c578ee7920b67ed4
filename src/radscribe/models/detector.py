"""BoxDetector: a dense, anchor-free box detector for structures that repeat along a radiograph (vertebrae).

An EfficientNet-Lite encoder (ImageNet-pretrained at training start), its feature maps merged top-down
into one grid at stride 4 (a feature pyramid's finest level), and two heads on that grid, in the
manner of CenterNet (Zhou et al. 2019) and TTFNet (Liu et al. 2020):

- a **centre heatmap** per label: the probability that a box of that label is centred at the cell;
- a **box head**: the distances (left, top, right, bottom) from the cell to the box edges, in input pixels.

Detection takes the heatmap's local maxima (3 x 3) above ``score_threshold`` and reads the box at
each. At stride 4 a 416-px-tall spine film gives a 104-row grid: about five rows per vertebra, so
neighbouring vertebrae have separate peaks. The input is a tall letterboxed rectangle
(``input_size`` = (width, height), 256 x 416 by default: CADMA films at their native resolution).

Saved folder: ``detector.json`` (:class:`DetectorConfig`) and ``model.safetensors``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.efficientnet import EfficientNetLite, load_imagenet_weights
from radscribe.models.image import Letterbox, as_radiograph, letterbox
from radscribe.types import Box

DETECTOR_CONFIG_FILE = "detector.json"
WEIGHTS_FILE = "model.safetensors"
STRIDE = 4


@dataclass
class DetectorConfig:
    """Everything that rebuilds a detector's structure and its decoding; weights live in model.safetensors."""

    name: str = "vertebra-detector"
    labels: list[str] = field(default_factory=lambda: ["vertebra"])
    backbone: str = "efficientnet-lite0"
    input_size: tuple[int, int] = (256, 416)   # (width, height) the radiograph is letterboxed into
    neck_channels: int = 64
    score_threshold: float = 0.3               # a heatmap peak at or above this is a detection
    max_detections: int = 40
    box_scale: float = 16.0                    # box-head output x this = edge distance in input pixels
    frozen_stages: int = 2                     # encoder stem + stages kept as pretrained (see EfficientNetLite)

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if not self.labels:
            raise ValueError(f"detector config '{self.name}': labels must name at least one class")
        if any(side % 32 for side in self.input_size):
            raise ValueError(f"detector config '{self.name}': input_size {self.input_size} must be multiples of 32")
        if not 0.0 < self.score_threshold < 1.0:
            raise ValueError(f"detector config '{self.name}': score_threshold must lie in (0, 1), got {self.score_threshold}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "detector config") -> DetectorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown detector config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


class FeatureMerge(nn.Module):
    """Top-down merge of the encoder's strides 4-32 into one stride-4 map (a feature pyramid's finest level)."""

    def __init__(self, channels_in: Sequence[int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in channels_in)
        self.smooth = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        merged = self.lateral[-1](features[-1])
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1]):
            merged = lateral(feature) + F.interpolate(merged, size=feature.shape[-2:], mode="nearest")
        return self.smooth(merged)


def _head(channels: int, outputs: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, outputs, 1))
    nn.init.constant_(head[-1].bias, bias)
    return head


@dataclass
class DenseOutput:
    heatmap: torch.Tensor   # (B, labels, H/4, W/4) logits
    edges: torch.Tensor     # (B, 4, H/4, W/4) left, top, right, bottom distances in input pixels


class BoxDetector(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.config = config
        self.encoder = EfficientNetLite(config.backbone, in_channels=1, frozen_stages=config.frozen_stages)
        self.merge = FeatureMerge(self.encoder.feature_channels, config.neck_channels)
        # A prior of 1 % on every cell keeps the focal loss stable at the start (as in RetinaNet).
        self.heatmap = _head(config.neck_channels, len(config.labels), bias=-4.6)
        self.edges = _head(config.neck_channels, 4)

    @classmethod
    def create(cls, config: DetectorConfig | None = None, pretrained: bool = True) -> BoxDetector:
        """A new detector; ``pretrained`` starts its encoder from the ImageNet weights (a training-time extra)."""
        model = cls(config or DetectorConfig())
        if pretrained:
            load_imagenet_weights(model.encoder)
        return model

    def forward(self, pixels: torch.Tensor) -> DenseOutput:
        """(B, 1, H, W) in [0, 1] -> dense heatmap logits and edge distances on the stride-4 grid."""
        grid = self.merge(self.encoder(pixels * 2.0 - 1.0))
        return DenseOutput(self.heatmap(grid), F.softplus(self.edges(grid)) * self.config.box_scale)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----- detection ----------------------------------------------------------------------------
    def prepare(self, image: Radiograph | Path | str) -> tuple[torch.Tensor, Letterbox]:
        """The letterboxed (1, H, W) input of one radiograph and the transform back to it."""
        return letterbox(as_radiograph(image), self.config.input_size)

    @torch.no_grad()
    def detect(self, images: Sequence[Radiograph | Path | str], score_threshold: float | None = None) -> list[list[Box]]:
        """Boxes on each ORIGINAL image (normalised xyxy, ``score`` = heatmap peak), top to bottom."""
        if not images:
            return []
        prepared = [self.prepare(image) for image in images]
        pixels = torch.stack([tensor for tensor, _ in prepared]).to(self.device)
        was_training = self.training
        self.eval()
        try:
            output = self(pixels.contiguous(memory_format=torch.channels_last))
        finally:
            self.train(was_training)
        threshold = self.config.score_threshold if score_threshold is None else score_threshold
        found = decode_detections(output, self.config, threshold)
        results = []
        for boxes, (_, transform) in zip(found, prepared):
            on_original = [transform.to_original(box) for box in boxes]
            results.append(sorted((b for b in on_original if b.width > 0 and b.height > 0), key=lambda b: (b.center[1], b.center[0])))
        return results

    # ----- saving -------------------------------------------------------------------------------
    def save_pretrained(self, folder: Path | str) -> Path:
        from radscribe.data.manifest import atomic_write
        from radscribe.models.base import save_weights

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / DETECTOR_CONFIG_FILE) as handle:
            json.dump(asdict(self.config), handle, indent=2)
        tensors = {name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()}
        save_weights(tensors, folder / WEIGHTS_FILE, {"format": "pt", "radscribe_model": "box-detector"})
        return folder

    @classmethod
    def from_pretrained(cls, folder: Path | str, device: str | torch.device = "cpu") -> BoxDetector:
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path = folder / DETECTOR_CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"{folder}: not a saved detector (no {DETECTOR_CONFIG_FILE})")
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: not valid JSON ({error})") from None
        model = cls(DetectorConfig.from_dict(data, source=str(config_path)))
        state = load_file(str(folder / WEIGHTS_FILE))
        own = model.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{folder / WEIGHTS_FILE}: does not fit {config_path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        misshapen = [f"'{key}' {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in own.items() if state[key].shape != value.shape]
        if misshapen:
            raise ValueError(f"{folder / WEIGHTS_FILE}: does not fit {config_path}: shapes saved vs configured: {', '.join(misshapen[:3])}")
        model.load_state_dict(state, strict=True)
        model.eval()
        return model.to(device).to(memory_format=torch.channels_last)


def grid_centres(height: int, width: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-pixel (x, y) of every stride-4 cell's centre: cell j covers pixels 4j..4j+3."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    return xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)


def decode_detections(output: DenseOutput, config: DetectorConfig, score_threshold: float) -> list[list[Box]]:
    """Boxes normalised on the model INPUT, one list per image: heatmap peaks (3 x 3 local maxima) and their edges."""
    scores = torch.sigmoid(output.heatmap.float())
    peaks = scores * (F.max_pool2d(scores, 3, stride=1, padding=1) == scores)
    batch, labels, height, width = scores.shape
    xs, ys = grid_centres(height, width, scores.device)
    input_w, input_h = config.input_size
    found: list[list[Box]] = []
    for index in range(batch):
        flat = peaks[index].reshape(-1)
        top = torch.topk(flat, min(config.max_detections, flat.numel()))
        boxes = []
        for score, position in zip(top.values.tolist(), top.indices.tolist()):
            if score < score_threshold:
                break
            label, cell = divmod(position, height * width)
            row, column = divmod(cell, width)
            left, top_edge, right, bottom = output.edges[index, :, row, column].float().tolist()
            x, y = float(xs[row, column]), float(ys[row, column])
            xyxy = ((x - left) / input_w, (y - top_edge) / input_h, (x + right) / input_w, (y + bottom) / input_h)
            boxes.append(Box.from_xyxy(config.labels[label], xyxy, source=config.name, score=round(score, 4)))
        found.append(boxes)
    return found
