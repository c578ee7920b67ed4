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


def model_features(model: Any, stride: int | None = None) -> FeatureFn:
    """The VLM's own vision encoder: ``model.patch_features(image)`` when it has one (a grid and the
    image extent it covers), else its vision tower run on the model's own image input (families with
    a square ``pixel_values`` input).

    ``stride`` (pixels of the model input, dividing the patch size) samples the patch grid more
    finely without changing what the encoder sees: the input is also run shifted by every multiple
    of ``stride`` below the patch size, in one batch, and the grids are interleaved (stride 8 with
    patch 16: four passes, twice the resolution each way). Each cell then stands for the ``stride``-
    wide square at the centre of its patch.
    """
    own = getattr(model, "patch_features", None)
    if callable(own):
        if stride is not None:
            raise ValueError(f"model '{model.name}' gives its own token grid; a finer RFI stride is not available for it")

        def features(image: Radiograph) -> FeatureGrid:
            grid, extent = own(image)
            return _trim_to_image(FeatureGrid(np.asarray(grid, dtype=np.float32), extent, f"embedded:{model.name}"))

        return features

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
        pixels = batch["pixel_values"].to(model.device)
        size = int(pixels.shape[-1])
        tower = model.vision_tower()
        patch = int(getattr(getattr(tower, "config", None), "patch_size", 0) or 0) or None
        if stride is not None and (patch is None or stride > patch or patch % stride):
            raise ValueError(f"RFI feature stride {stride} must divide the encoder's patch size ({patch or 'unknown'})")
        shifts = range(0, patch, stride) if stride else range(1)
        shifted = torch.cat([_shifted(pixels, dy, dx) for dy in shifts for dx in shifts])
        was_training = model.training
        model.eval()
        try:
            hidden = tower(shifted).last_hidden_state
        finally:
            model.train(was_training)
        side = int(round(hidden.shape[1] ** 0.5))
        hidden = hidden[:, -side * side :].reshape(len(shifts), len(shifts), side, side, -1)  # a CLS token comes first
        # Pass (dy, dx) patch (r, c) sits at input pixel (r * patch + dy, c * patch + dx): interleave.
        grid = hidden.permute(2, 0, 3, 1, 4).reshape(side * len(shifts), side * len(shifts), -1).float().cpu().numpy()
        patch = patch or size // side
        step = stride or patch
        box = Letterbox.fit(image.width, image.height, size)
        content_w, content_h = box.content_size
        # A cell stands for the central step x step square of its patch; in image coordinates the grid
        # covers the content plus padding. A cell's patch reaches (patch - step) / 2 further each way.
        start = (patch - step) / 2
        span = grid.shape[0] * step
        extent = (
            (start - box.pad_x) / content_w, (start - box.pad_y) / content_h,
            (start + span - box.pad_x) / content_w, (start + span - box.pad_y) / content_h,
        )
        reach = (start / content_w, start / content_h)
        return _trim_to_image(FeatureGrid(grid, extent, f"embedded:{model.name}"), reach)

    return features


def _shifted(pixels: Any, dy: int, dx: int) -> Any:
    """The input moved up by ``dy`` and left by ``dx`` pixels, the far edges repeated to keep its size."""
    import torch.nn.functional as functional

    if dy == 0 and dx == 0:
        return pixels
    return functional.pad(pixels[..., dy:, dx:], (0, dx, 0, dy), mode="replicate")


def _trim_to_image(grid: FeatureGrid, reach: tuple[float, float] = (0.0, 0.0)) -> FeatureGrid:
    """Keep only the rows/columns of cells whose patch lies wholly on the image: patches that straddle
    the letterbox edge carry the edge itself, which would otherwise dominate the principal components.
    ``reach``: how far (normalised x, y) a cell's patch extends beyond the cell on each side."""
    h, w, _ = grid.features.shape
    x0, y0, x1, y1 = grid.extent
    cell_w, cell_h = (x1 - x0) / w, (y1 - y0) / h
    cols, rows = _inside(x0, cell_w, w, reach[0]), _inside(y0, cell_h, h, reach[1])
    extent = (x0 + cols[0] * cell_w, y0 + rows[0] * cell_h, x0 + (cols[-1] + 1) * cell_w, y0 + (rows[-1] + 1) * cell_h)
    return FeatureGrid(grid.features[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], extent, grid.encoder)


def _inside(start: float, cell: float, count: int, reach: float = 0.0) -> list[int]:
    """Indices of cells whose patch (the cell plus ``reach`` each side) is wholly inside [0, 1]; when none
    is (an image narrower than a patch), those centred inside."""
    tolerance = 1e-6
    whole = [
        i for i in range(count)
        if start + i * cell - reach >= -tolerance and start + (i + 1) * cell + reach <= 1 + tolerance
    ]
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
