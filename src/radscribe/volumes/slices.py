"""Slices out of a volume: which ones, and how their intensities become an 8-bit image.

CT: Hounsfield windows (level, width), one per channel; three windows stack into an RGB PNG, as
RadGrounder feeds CT to its RGB encoder (radscribe's own grayscale models read such a PNG as its
luma). One window gives a grayscale PNG. MR has no absolute scale: intensities are normalised per
volume between two percentiles (default 0.5 and 99.5) so that a few hot voxels do not darken it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


# (level, width) in Hounsfield units; common radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
DEFAULT_CT_WINDOWS: tuple[str, ...] = ("lung", "soft_tissue", "bone")


@dataclass(frozen=True)
class Rendering:
    """How slice intensities become pixels: CT windows by name, or MR percentiles."""

    modality: str  # "CT" or "MR"
    windows: tuple[str, ...] = DEFAULT_CT_WINDOWS
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if self.modality not in ("CT", "MR"):
            raise ValueError(f"modality must be CT or MR, got {self.modality!r}")
        unknown = [name for name in self.windows if name not in CT_WINDOWS]
        if unknown:
            raise ValueError(f"unknown CT window {unknown[0]!r}; known: {', '.join(CT_WINDOWS)}")
        if self.modality == "CT" and len(self.windows) not in (1, 3):
            raise ValueError(f"give 1 CT window (grayscale) or 3 (stacked as RGB channels), got {len(self.windows)}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")

    def describe(self) -> dict[str, object]:
        if self.modality == "CT":
            return {"modality": "CT", "windows": {name: list(CT_WINDOWS[name]) for name in self.windows}}
        return {"modality": "MR", "percentiles": list(self.percentiles)}


def guess_modality(data: np.ndarray) -> str:
    """CT when a clear share of voxels lies at air's -1000 HU (below -500), else MR."""
    sample = data[:: max(1, data.shape[0] // 64), :: max(1, data.shape[1] // 64), :: max(1, data.shape[2] // 32)]
    return "CT" if float(np.mean(sample < -500)) > 0.05 else "MR"


def mr_range(data: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The intensity range of a whole MR volume between two percentiles (computed once per volume)."""
    sample = data[:: max(1, data.shape[0] // 128), :: max(1, data.shape[1] // 128), :]
    low, high = np.percentile(sample, percentiles)
    return float(low), float(max(high, low + 1e-6))


def render_slice(pixels: np.ndarray, rendering: Rendering, mr_bounds: tuple[float, float] | None = None) -> np.ndarray:
    """A (rows, columns) slice as uint8: (H, W) grayscale or (H, W, 3) with one CT window per channel."""
    values = pixels.astype(np.float32, copy=False)
    if rendering.modality == "MR":
        if mr_bounds is None:
            raise ValueError("an MR slice needs the volume's percentile range (mr_range)")
        low, high = mr_bounds
        return _to_uint8((values - low) / (high - low))
    channels = []
    for name in rendering.windows:
        level, width = CT_WINDOWS[name]
        channels.append(_to_uint8((values - (level - width / 2)) / width))
    return channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def select_slices(count: int, every: int = 1, present: Sequence[int] | None = None, limit: int | None = None) -> list[int]:
    """Slice indices: every ``every``-th (from 0), kept only where ``present`` (if given), then at most
    ``limit`` of them spread evenly over the range."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    chosen = list(range(0, count, every))
    if present is not None:
        keep = set(present)
        chosen = [index for index in chosen if index in keep]
    if limit is not None and len(chosen) > limit:
        picks = np.linspace(0, len(chosen) - 1, limit).round().astype(int)
        chosen = [chosen[i] for i in sorted(set(picks.tolist()))]
    return chosen


def write_png(image: np.ndarray, path: Path) -> None:
    """Write a uint8 slice image (grayscale or RGB) under a temporary name, then rename it into place.

    No fsync: a run killed before its study is recorded as done redoes (and rewrites) that study's
    images on resume. zlib level 1: CT noise barely compresses, and level 6 takes ~5x longer.
    """
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(temporary, format="PNG", compress_level=1)
    os.replace(temporary, path)
