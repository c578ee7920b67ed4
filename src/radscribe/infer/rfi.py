"""Region-Focused Inference (SpineVLM's RFI), unsupervised: find the spine in patch features, crop, report.

Steps, none of which looks at a label:

1. patch features of the whole image (:mod:`radscribe.infer.features`: DINOv2 or the VLM's encoder);
2. their first ``components`` principal components; the **spine score** is the component, with the
   sign, that correlates best with the spine prior map (a band centred on the image's vertical
   midline). PC1 is not assumed: with a small encoder it is often an artefact splitting tokens into
   two types, unrelated to anatomy;
3. Otsu's threshold on the score; of the connected components (8-neighbour) the one holding most
   of the prior map's mass; a vertical band fitted to its column profile (the columns holding at
   least ``band_fraction`` of its fullest column); the band's box plus a margin (a share of its
   width and height on each side): the **feature box**;
4. the spine prior decides whether to trust it: the feature box must be tall (``min_height`` of the
   image), not wide (``max_width``) and centred (its centre within ``max_offset`` of the midline).
   Otherwise the crop is the **prior box**: ``prior_half_width`` either side of the midline, from
   ``prior_top`` to ``prior_bottom``. ``RegionCrop.basis`` says which one was used.

The numeric defaults were chosen on CADMA *train* images only (``benchmarks/rfi_cadma.py --tune``
with radscribe-tiny's encoder): the best mean IoU with the column box at a mean recall >= 0.98,
with a gate that accepts the shape of >= 90% of the real columns. With that encoder the features
locate the spine no better than where it usually is, so the prior box is used on most films
(benchmarks/results/rfi_cadma*.json); a stronger encoder's clear band passes the gate and is followed.

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

# Width (share of the image width, one standard deviation) of the spine prior map used to pick the
# component, its sign and the connected component: the column's centre lies within 0.05 of the
# midline on most CADMA train films, and its lateral curve within about 0.15.
PRIOR_SIGMA = 0.15


@dataclass(frozen=True)
class RFIConfig:
    """Region-Focused Inference settings (``Reporter(rfi=None)`` turns it off)."""

    encoder: str = "embedded"       # "embedded" (the VLM's encoder) or "dinov2:PATH" (a local folder)
    components: int = 3             # principal components tried as the spine score
    band_fraction: float = 0.2      # columns with at least this share of the fullest column's patches
    margin: float = 0.15            # added to the feature box on each side, as a share of its width / height
    min_height: float = 0.5         # feature box trusted only if at least this tall (share of image height)
    max_width: float = 0.8          # ... at most this wide (share of image width)
    max_offset: float = 0.5         # ... and centred within this of the vertical midline
    prior_half_width: float = 0.40  # prior box: this share of the width either side of the midline
    prior_top: float = 0.02         # prior box: from this share of the height ...
    prior_bottom: float = 0.97      # ... down to this one
    debug: bool = False             # write an overlay PNG (score map, region, crop) next to each report

    def __post_init__(self) -> None:
        if self.components < 1:
            raise ValueError(f"RFI components must be >= 1, got {self.components}")
        shares = {name: getattr(self, name) for name in ("margin", "min_height", "max_width", "max_offset", "prior_top", "prior_bottom")}
        outside = [f"{name}={value}" for name, value in shares.items() if not 0 <= value <= 1]
        if outside or not 0 < self.band_fraction <= 1 or not 0 < self.prior_half_width <= 0.5:
            raise ValueError(
                "RFI shares must lie in [0, 1], band_fraction in (0, 1] and prior_half_width in (0, 0.5]"
                + (f"; got {', '.join(outside)}" if outside else "")
            )
        if self.prior_top >= self.prior_bottom:
            raise ValueError(f"RFI prior_top ({self.prior_top}) must be above prior_bottom ({self.prior_bottom})")


@dataclass
class RegionCrop:
    """Where RFI cropped: pixel box ``x0, y0, x1, y1`` (x1, y1 exclusive) on an image of ``image_size``."""

    box: tuple[int, int, int, int]
    image_size: tuple[int, int]            # (width, height) of the original image
    encoder: str = ""
    pca: np.ndarray | None = None          # (h, w) spine score: the chosen principal component, oriented
    mask: np.ndarray | None = None         # (h, w) the chosen region's patches
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    note: str | None = None                # why the crop is the whole image, when it is
    basis: str = "whole image"             # "features" (the feature box), "prior" (the prior box) or "whole image"

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
        out: dict[str, Any] = {
            "box_pixels": list(self.box), "box": self.normalized().to_dict(), "encoder": self.encoder, "basis": self.basis,
        }
        if self.note:
            out["note"] = self.note
        return out


def whole_image(image: Radiograph, note: str) -> RegionCrop:
    return RegionCrop((0, 0, image.width, image.height), (image.width, image.height), note=note)


def locate_region(image: Radiograph, features: FeatureFn, config: RFIConfig | None = None) -> RegionCrop:
    """The crop RFI reports on (see the module docstring for the steps)."""
    config = config or RFIConfig()
    grid = features(image)
    size = (image.width, image.height)
    score = spine_score(grid, config.components)
    if score is None:
        crop = whole_image(image, "the patch features do not vary; reporting on the whole image")
        crop.encoder, crop.extent = grid.encoder, grid.extent
        return crop
    region = spine_region(score, grid, config.band_fraction)
    feature_box = _normalised_box(region, grid, config.margin)
    if plausible_spine(feature_box, config):
        basis, box = "features", feature_box
    else:
        basis, box = "prior", prior_box(config)
    return RegionCrop(_to_pixels(box, size), size, grid.encoder, score, region, grid.extent, basis=basis)


def principal_components(features: np.ndarray, count: int) -> np.ndarray:
    """(count, h, w): each patch's projection on the first ``count`` principal components of all patches."""
    h, w, c = features.shape
    flat = features.reshape(h * w, c).astype(np.float64)
    flat = flat - flat.mean(axis=0, keepdims=True)
    if not np.any(flat):
        return np.zeros((0, h, w))
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    kept = [index for index in range(min(count, len(singular))) if singular[index] > 1e-9 * singular[0]]
    return np.stack([(flat @ vt[index]).reshape(h, w) for index in kept]) if kept else np.zeros((0, h, w))


def principal_scores(features: np.ndarray) -> np.ndarray:
    """(h, w) projection of each patch on the first principal component (zeros when nothing varies)."""
    components = principal_components(features, 1)
    return components[0] if len(components) else np.zeros(features.shape[:2])


def prior_map(grid: FeatureGrid) -> np.ndarray:
    """(h, w) the spine prior at each patch centre: a Gaussian band around the image's vertical midline."""
    h, w, _ = grid.features.shape
    x0, _, x1, _ = grid.extent
    centres = x0 + (np.arange(w) + 0.5) * (x1 - x0) / w
    return np.broadcast_to(np.exp(-0.5 * ((centres - 0.5) / PRIOR_SIGMA) ** 2), (h, w))


def spine_score(grid: FeatureGrid, components: int) -> np.ndarray | None:
    """The principal component, signed, most correlated with the prior map (PC1 as it is when none
    correlates at all, e.g. a single column of patches); None when the features do not vary."""
    candidates = principal_components(grid.features, components)
    if not len(candidates):
        return None
    prior = prior_map(grid).ravel()
    if np.ptp(prior) == 0:
        return candidates[0]
    correlations = [float(np.corrcoef(scores.ravel(), prior)[0, 1]) for scores in candidates]
    best = int(np.argmax(np.abs(correlations)))
    return candidates[best] if correlations[best] >= 0 else -candidates[best]


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


def spine_region(score: np.ndarray, grid: FeatureGrid, band_fraction: float) -> np.ndarray:
    """Thresholded score -> the connected component with most prior mass -> its vertical band."""
    labels, count = ndimage.label(score > otsu_threshold(score), structure=np.ones((3, 3), dtype=int))
    if count == 0:  # Otsu puts every patch on one side only when all scores are equal
        return np.ones_like(score, dtype=bool)
    mass = ndimage.sum(prior_map(grid), labels, index=np.arange(1, count + 1))
    return vertical_band(labels == int(np.argmax(mass)) + 1, band_fraction)


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


def plausible_spine(box: tuple[float, float, float, float], config: RFIConfig) -> bool:
    """The spine prior: a column is tall, not wide, and near the vertical midline of the film."""
    x0, y0, x1, y1 = box
    return y1 - y0 >= config.min_height and x1 - x0 <= config.max_width and abs((x0 + x1) / 2 - 0.5) <= config.max_offset


def prior_box(config: RFIConfig) -> tuple[float, float, float, float]:
    return 0.5 - config.prior_half_width, config.prior_top, 0.5 + config.prior_half_width, config.prior_bottom


def _normalised_box(mask: np.ndarray, grid: FeatureGrid, margin: float) -> tuple[float, float, float, float]:
    """Bounding box of ``mask`` cells, normalised on the image, widened by ``margin``, clipped to [0, 1]."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    gx0, gy0, gx1, gy1 = grid.extent
    x0 = gx0 + cols[0] * (gx1 - gx0) / w
    x1 = gx0 + (cols[-1] + 1) * (gx1 - gx0) / w
    y0 = gy0 + rows[0] * (gy1 - gy0) / h
    y1 = gy0 + (rows[-1] + 1) * (gy1 - gy0) / h
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return max(0.0, x0 - dx), max(0.0, y0 - dy), min(1.0, x1 + dx), min(1.0, y1 + dy)


def _to_pixels(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A normalised box in whole pixels, rounded outwards, at least one pixel each way."""
    width, height = size
    x0, y0, x1, y1 = box
    left = max(0, math.floor(x0 * width))
    top = max(0, math.floor(y0 * height))
    right = min(width, math.ceil(x1 * width))
    bottom = min(height, math.ceil(y1 * height))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def save_rfi_overlay(image: Radiograph, crop: RegionCrop, path: Path | str) -> Path:
    """PNG: the image with the crop box, the spine score map, and the chosen region mask."""
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
    axes[0].set_title(f"crop ({crop.basis})", fontsize=9)
    if crop.pca is not None:
        axes[1].imshow(crop.pca, cmap="coolwarm", extent=extent)
    axes[1].set_title(f"spine score ({crop.encoder})", fontsize=8)
    if crop.mask is not None:
        axes[2].imshow(crop.mask, cmap="gray", extent=extent)
    axes[2].set_title("feature region", fontsize=9)
    for axis in axes:
        axis.set_xlim(0, width)
        axis.set_ylim(height, 0)
        axis.axis("off")
    figure.tight_layout()
    with atomic_write(path, mode="wb") as handle:
        figure.savefig(handle, format="png", dpi=80)
    plt.close(figure)
    return path
