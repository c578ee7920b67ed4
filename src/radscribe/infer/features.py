"""Patch-feature grids for Region-Focused Inference: DINOv2 from a local folder, or the VLM's own encoder.

A feature function maps a :class:`~radscribe.data.Radiograph` to a :class:`FeatureGrid`: an
(h, w, c) array of patch features and the part of the image the grid covers (normalised xyxy; a
letterboxed encoder's grid can reach past the image edges). Any callable returning an (h, w, c)
array or tensor for the whole image can be used through :func:`as_feature_fn`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from radscribe.data.images import Radiograph

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureGrid:
    features: np.ndarray                          # (h, w, c) float32
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # normalised xyxy covered by the grid
    encoder: str = "custom"

    def __post_init__(self) -> None:
        if self.features.ndim != 3 or min(self.features.shape) < 1:
            raise ValueError(f"a feature grid must be (h, w, c) with every size >= 1, got shape {self.features.shape}")


FeatureFn = Callable[[Radiograph], FeatureGrid]


def as_feature_fn(function: Callable[[Radiograph], Any], name: str = "custom") -> FeatureFn:
    """Wrap any image -> (h, w, c) callable (numpy or torch) covering the whole image."""

    def features(image: Radiograph) -> FeatureGrid:
        grid = function(image)
        if isinstance(grid, FeatureGrid):
            return grid
        if hasattr(grid, "detach"):
            grid = grid.detach().float().cpu().numpy()
        return FeatureGrid(np.asarray(grid, dtype=np.float32), encoder=name)

    return features


def dinov2_features(path: Path | str, long_side: int = 448, device: str = "cpu") -> FeatureFn:
    """DINOv2 (transformers ``Dinov2Model``) loaded from a local folder; nothing is downloaded.

    The image keeps its aspect ratio: its long side is resized to ``long_side`` and both sides are
    rounded to whole patches; gray is repeated to RGB and ImageNet-normalised, as DINOv2 was trained.
    """
    import torch
    from PIL import Image
    from transformers import Dinov2Model

    folder = Path(path)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: not a local DINOv2 folder (no config.json); weights are never downloaded")
    model = Dinov2Model.from_pretrained(str(folder), local_files_only=True).to(device).eval()
    patch = int(model.config.patch_size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(image: Radiograph) -> FeatureGrid:
        scale = long_side / max(image.width, image.height)
        width = max(patch, round(image.width * scale / patch) * patch)
        height = max(patch, round(image.height * scale / patch) * patch)
        resized = Image.fromarray(image.pixels.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
        gray = torch.from_numpy(np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0))
        pixels = ((gray.expand(1, 3, height, width) - mean) / std).to(device)
        hidden = model(pixel_values=pixels).last_hidden_state[0, 1:]  # drop the CLS token
        grid = hidden.reshape(height // patch, width // patch, -1).float().cpu().numpy()
        return FeatureGrid(grid, encoder=f"dinov2:{folder.name}")

    return features


def model_features(model: Any) -> FeatureFn:
    """The VLM's own vision encoder: ``model.patch_features(image)`` when it has one, else its vision
    tower run on the model's own image input (families with a square ``pixel_values`` input)."""
    own = getattr(model, "patch_features", None)
    if callable(own):
        return as_feature_fn(own, f"embedded:{model.name}")

    import torch

    from radscribe.models.image import Letterbox

    @torch.no_grad()
    def features(image: Radiograph) -> FeatureGrid:
        batch = model.collate([SimpleNamespace(images=(image,), prompt="", target="", task="")], with_targets=False)
        if "pixel_values" not in batch or batch["pixel_values"].ndim != 4:
            raise ValueError(
                f"model '{model.name}' ({model.config.family}) has no square pixel input to read patch features from; "
                "use a DINOv2 folder (encoder 'dinov2:PATH') for Region-Focused Inference"
            )
        was_training = model.training
        model.eval()
        try:
            hidden = model.vision_tower()(batch["pixel_values"].to(model.device)).last_hidden_state[0]
        finally:
            model.train(was_training)
        side = int(round(hidden.shape[0] ** 0.5))
        hidden = hidden[-side * side :]  # vision towers with a CLS token put it first
        grid = hidden.reshape(side, side, -1).float().cpu().numpy()
        size = int(batch["pixel_values"].shape[-1])
        box = Letterbox.fit(image.width, image.height, size)
        content_w, content_h = box.content_size
        # The grid covers the square input; in image coordinates that is the content plus padding.
        extent = (-box.pad_x / content_w, -box.pad_y / content_h, (size - box.pad_x) / content_w, (size - box.pad_y) / content_h)
        return _trim_to_image(FeatureGrid(grid, extent, f"embedded:{model.name}"))

    return features


def _trim_to_image(grid: FeatureGrid) -> FeatureGrid:
    """Keep only the rows/columns of patches lying wholly on the image: patches that straddle the
    letterbox edge carry the edge itself, which would otherwise dominate the principal component."""
    h, w, _ = grid.features.shape
    x0, y0, x1, y1 = grid.extent
    cell_w, cell_h = (x1 - x0) / w, (y1 - y0) / h
    cols, rows = _inside(x0, cell_w, w), _inside(y0, cell_h, h)
    extent = (x0 + cols[0] * cell_w, y0 + rows[0] * cell_h, x0 + (cols[-1] + 1) * cell_w, y0 + (rows[-1] + 1) * cell_h)
    return FeatureGrid(grid.features[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], extent, grid.encoder)


def _inside(start: float, cell: float, count: int) -> list[int]:
    """Indices of cells wholly inside [0, 1]; when none is (an image narrower than a patch), those centred inside."""
    tolerance = 1e-6
    whole = [i for i in range(count) if start + i * cell >= -tolerance and start + (i + 1) * cell <= 1 + tolerance]
    return whole or [i for i in range(count) if 0.0 <= start + (i + 0.5) * cell <= 1.0] or list(range(count))


def feature_fn(encoder: str | FeatureFn, model: Any = None) -> FeatureFn:
    """``"embedded"`` (the model's encoder), ``"dinov2:PATH"``, or a feature function as is."""
    if callable(encoder):
        return encoder
    if encoder == "embedded":
        if model is None:
            raise ValueError("encoder 'embedded' needs a model")
        return model_features(model)
    if encoder.startswith("dinov2:"):
        return dinov2_features(encoder.removeprefix("dinov2:"))
    raise ValueError(f"unknown RFI encoder {encoder!r}: use 'embedded' or 'dinov2:PATH'")
