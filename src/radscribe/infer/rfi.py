"""Region-Focused Inference (SpineVLM's RFI), unsupervised: find the spine in patch features, crop, report.

Steps, all without labels:

1. patch features of the whole image (:mod:`radscribe.infer.features`: DINOv2 or the VLM's encoder);
2. their first principal component, one score per patch;
3. threshold (Otsu's on the scores, or 0) into two sides. **Sign rule**: the foreground is the side
   touching the image border less (as a share of the border patches): background and the soft
   tissue around the spine reach the edges, the column does not. When both sides touch the border
   about equally (within 0.05) the smaller side is the foreground;
4. connected components of the foreground (8-neighbour); the spine prior picks the component with
   the best ``area x vertical elongation`` (elongation = physical height / width of its bounding box);
5. a vertical band fitted to that component's column profile (the columns holding at least
   ``band_fraction`` of its fullest column), spanning the component's rows inside the band;
6. the band's box plus a margin (a share of its width and height on each side), in whole pixels.

The crop is what the model sees; boxes it predicts on the crop are mapped back to the original image
by :meth:`RegionCrop.to_original` (exact: ``x = (crop_x0 + u * crop_width) / width``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radscribe.data.images import Radiograph
from radscribe.infer.features import FeatureFn, FeatureGrid
from radscribe.types import Box

THRESHOLDS = ("otsu", "zero")
PRIORS = ("vertical", "largest")


@dataclass(frozen=True)
class RFIConfig:
    """Region-Focused Inference settings (``Reporter(rfi=None)`` turns it off)."""

    encoder: str = "embedded"       # "embedded" (the VLM's encoder) or "dinov2:PATH" (a local folder)
    threshold: str = "otsu"
    prior: str = "vertical"
    band_fraction: float = 0.35     # columns with at least this share of the fullest column's patches
    margin: float = 0.08            # added on each side, as a share of the region's width / height
    min_area: float = 0.02          # a region smaller than this share of the image is not trusted: no crop
    debug: bool = False             # write an overlay PNG (PCA map, mask, crop) next to each report

    def __post_init__(self) -> None:
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"RFI threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"RFI prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if not 0 <= self.margin <= 1 or not 0 < self.band_fraction <= 1:
            raise ValueError("RFI margin must be in [0, 1] and band_fraction in (0, 1]")


@dataclass
class RegionCrop:
    """Where RFI cropped: pixel box ``x0, y0, x1, y1`` (x1, y1 exclusive) on an image of ``image_size``."""

    box: tuple[int, int, int, int]
    image_size: tuple[int, int]            # (width, height) of the original image
    encoder: str = ""
    pca: np.ndarray | None = None          # (h, w) first-component scores (foreground positive)
    mask: np.ndarray | None = None         # (h, w) the chosen region's patches
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    note: str | None = None                # why the crop is the whole image, when it is

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def normalized(self) -> Box:
        width, height = self.image_size
        x0, y0, x1, y1 = self.box
        return Box("rfi crop", x0 / width, y0 / height, x1 / width, y1 / height, source="rfi")

    def crop(self, image: Radiograph) -> Radiograph:
        x0, y0, x1, y1 = self.box
        return Radiograph(image.pixels[y0:y1, x0:x1].copy(), image.path, image.is_color, image.source_format)

    def to_original(self, box: Box) -> Box:
        """A box normalised on the crop -> normalised on the original image."""
        width, height = self.image_size
        x0, y0 = self.box[0], self.box[1]
        coords = (
            (x0 + box.x_min * self.width) / width, (y0 + box.y_min * self.height) / height,
            (x0 + box.x_max * self.width) / width, (y0 + box.y_max * self.height) / height,
        )
        return Box.from_xyxy(box.label, coords, source=box.source, image=box.image, score=box.score)

    def to_crop(self, box: Box) -> Box:
        """A box normalised on the original image -> normalised on the crop (clipped to it)."""
        width, height = self.image_size
        x0, y0 = self.box[0], self.box[1]
        coords = (
            (box.x_min * width - x0) / self.width, (box.y_min * height - y0) / self.height,
            (box.x_max * width - x0) / self.width, (box.y_max * height - y0) / self.height,
        )
        return Box.from_xyxy(box.label, coords, source=box.source, image=box.image, score=box.score)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box_pixels": list(self.box), "box": self.normalized().to_dict(), "encoder": self.encoder}
        if self.note:
            out["note"] = self.note
        return out


def whole_image(image: Radiograph, note: str) -> RegionCrop:
    return RegionCrop((0, 0, image.width, image.height), (image.width, image.height), note=note)


def locate_region(image: Radiograph, features: FeatureFn, config: RFIConfig | None = None) -> RegionCrop:
    """The crop RFI reports on (see the module docstring for the steps)."""
    config = config or RFIConfig()
    grid = features(image)
    scores = principal_scores(grid.features)
    threshold = otsu_threshold(scores) if config.threshold == "otsu" else 0.0
    foreground = choose_foreground(scores > threshold, scores <= threshold)
    scores = scores if foreground is None or (scores > threshold)[foreground].all() else -scores
    mask = foreground if foreground is not None else np.zeros_like(scores, dtype=bool)
    region = pick_region(mask, grid, image, config)
    size = (image.width, image.height)
    if region is None or region.sum() < config.min_area * region.size:
        crop = whole_image(image, "no foreground region large enough; reporting on the whole image")
        crop.encoder, crop.pca, crop.mask, crop.extent = grid.encoder, scores, region, grid.extent
        return crop
    band = vertical_band(region, config.band_fraction) if config.prior == "vertical" else region
    box = _pixel_box(band, grid, size, config.margin)
    return RegionCrop(box, size, grid.encoder, scores, band, grid.extent)


def principal_scores(features: np.ndarray) -> np.ndarray:
    """(h, w) projection of each patch on the first principal component of all patches."""
    h, w, c = features.shape
    flat = features.reshape(h * w, c).astype(np.float64)
    flat = flat - flat.mean(axis=0, keepdims=True)
    if not np.any(flat):
        return np.zeros((h, w))
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    return (flat @ vt[0]).reshape(h, w)


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold: the cut maximising the between-class variance of ``values``."""
    flat = values.ravel()
    low, high = float(flat.min()), float(flat.max())
    if high <= low:
        return low
    counts, edges = np.histogram(flat, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mean_low = np.cumsum(counts * centres)
    best, cut = -1.0, centres[0]
    for index in range(bins - 1):
        w0, w1 = weight[index], total - weight[index]
        if w0 == 0 or w1 == 0:
            continue
        m0 = mean_low[index] / w0
        m1 = (mean_low[-1] - mean_low[index]) / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, cut = between, edges[index + 1]
    return float(cut)


def border_share(mask: np.ndarray) -> float:
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(border.mean()) if border.size else 0.0


def choose_foreground(side_a: np.ndarray, side_b: np.ndarray, tie: float = 0.05) -> np.ndarray | None:
    """The sign rule: the side touching the border less; on a tie, the smaller side."""
    if not side_a.any() or not side_b.any():
        return None
    share_a, share_b = border_share(side_a), border_share(side_b)
    if abs(share_a - share_b) > tie:
        return side_a if share_a < share_b else side_b
    return side_a if side_a.sum() <= side_b.sum() else side_b


def pick_region(mask: np.ndarray, grid: FeatureGrid, image: Radiograph, config: RFIConfig) -> np.ndarray | None:
    """The connected component the prior prefers (vertical: area x elongation; largest: area)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    if count == 0:
        return None
    h, w = mask.shape
    x0, y0, x1, y1 = grid.extent
    cell_w = (x1 - x0) * image.width / w
    cell_h = (y1 - y0) * image.height / h
    best, best_score = None, -math.inf
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        component = labels == index
        area = float(component.sum())
        if config.prior == "vertical":
            elongation = ((rows.stop - rows.start) * cell_h) / ((cols.stop - cols.start) * cell_w)
            score = area * elongation
        else:
            score = area
        if score > best_score:
            best, best_score = component, score
    return best


def vertical_band(region: np.ndarray, fraction: float) -> np.ndarray:
    """The region restricted to the contiguous columns around its fullest one holding >= ``fraction`` of it."""
    profile = region.sum(axis=0).astype(float)
    peak = int(np.argmax(profile))
    keep = profile >= fraction * profile[peak]
    left = peak
    while left > 0 and keep[left - 1]:
        left -= 1
    right = peak
    while right < len(profile) - 1 and keep[right + 1]:
        right += 1
    band = np.zeros_like(region)
    band[:, left : right + 1] = region[:, left : right + 1]
    return band


def _pixel_box(mask: np.ndarray, grid: FeatureGrid, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Bounding box of ``mask`` cells in image pixels, widened by ``margin``, rounded outwards, clipped."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    gx0, gy0, gx1, gy1 = grid.extent
    x0 = gx0 + cols[0] * (gx1 - gx0) / w
    x1 = gx0 + (cols[-1] + 1) * (gx1 - gx0) / w
    y0 = gy0 + rows[0] * (gy1 - gy0) / h
    y1 = gy0 + (rows[-1] + 1) * (gy1 - gy0) / h
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    width, height = size
    left = max(0, math.floor((x0 - dx) * width))
    top = max(0, math.floor((y0 - dy) * height))
    right = min(width, math.ceil((x1 + dx) * width))
    bottom = min(height, math.ceil((y1 + dy) * height))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def save_rfi_overlay(image: Radiograph, crop: RegionCrop, path: Path | str) -> Path:
    """PNG: the image with the crop box, the first-component map, and the chosen region mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radscribe.data.manifest import atomic_write

    path = Path(path)
    figure, axes = plt.subplots(1, 3, figsize=(9, 4.5))
    width, height = crop.image_size
    x0, y0, x1, y1 = crop.extent
    extent = (x0 * width, x1 * width, y1 * height, y0 * height)
    axes[0].imshow(image.pixels, cmap="gray", vmin=0, vmax=1)
    bx0, by0, bx1, by1 = crop.box
    axes[0].add_patch(plt.Rectangle((bx0, by0), bx1 - bx0, by1 - by0, fill=False, edgecolor="lime", linewidth=2))
    axes[0].set_title("crop" + (" (whole image)" if crop.note else ""))
    if crop.pca is not None:
        axes[1].imshow(crop.pca, cmap="coolwarm", extent=extent)
    axes[1].set_title(f"PCA 1 ({crop.encoder})", fontsize=8)
    if crop.mask is not None:
        axes[2].imshow(crop.mask, cmap="gray", extent=extent)
    axes[2].set_title("region mask")
    for axis in axes:
        axis.set_xlim(0, width)
        axis.set_ylim(height, 0)
        axis.axis("off")
    figure.tight_layout()
    with atomic_write(path, mode="wb") as handle:
        figure.savefig(handle, format="png", dpi=80)
    plt.close(figure)
    return path
