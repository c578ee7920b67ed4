"""Spine alignment from vertebra boxes alone (SpineVLM's AI-assisted annotation, made deterministic).

Everything here is a pure function of the boxes and the image size, so any derived value can be
recomputed and checked. The steps, in pixel space (angles need true aspect ratio):

1. **Centre line**: vertebra box centres ordered top to bottom, smoothed with a Savitzky-Golay
   filter over ``window`` neighbouring vertebrae (local quadratic fits: box jitter is damped while
   a curve, up to its end vertebrae, keeps its shape; a Gaussian would flatten the ends). Seven
   vertebrae was chosen on simulated columns with CADMA-like jitter (1.5 px at 21 px spacing): a
   straight column reads about 2 degrees, C and S curves within about +4 degrees.
2. **Tilt**: the centre line's tangent angle at each vertebra, ``atan(dx/dy)`` in degrees, from the
   same local fits (0 = vertical, positive = running towards image right going down).
3. **Curves**: the centre line is cut at its inflection points, i.e. the turning points of the tilt;
   a turning point counts only if the tilt reverses by at least ``min_turn`` degrees (hysteresis,
   so box jitter does not split a curve). Each piece between inflection points is one curve.
4. **Angle**: within a curve, the difference between the most tilted tangents (one above, one below
   the apex). This is a **centre-line Cobb proxy**, not a Cobb angle: a Cobb angle is measured on
   vertebral endplates, which boxes do not show. The two most tilted vertebrae are the curve's end
   vertebrae.
5. **Apex**: the vertebra of the curve farthest from the straight line joining its end vertebrae.
6. **Convexity** in PATIENT terms. Radiographs are displayed with the patient's right on the
   viewer's left, for AP and PA views alike (the CADMA films carry an "R" marker at image left),
   so a curve bulging to image right is convex to the patient's LEFT.
7. **Levels** are estimates: boxes carry no level names. The default anchor assumes the lowest box
   is L5 (in CADMA the lowest box sits on the sacrum's top in every film we inspected, while the
   top box ranges from C7 to T4) and names the others counting upwards; ``level_anchor="top-T1"``
   instead assumes the top box is T1 and counts down from it.
8. **Region** from the apex's estimated level: thoracic (apex at or above T11; cervical apices
   fall here too), thoracolumbar (T12-L1), lumbar (L2 and below).
9. **Severity** from the angle: none < 10, mild 10-25, moderate 25-40, severe >= 40 degrees;
   alignment is "scoliosis" when any curve reaches 10 degrees. Curves below ``min_curve`` degrees
   are box jitter and are not reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.signal import savgol_filter

from radscribe.types import Box

LevelAnchor = Literal["bottom-L5", "top-T1"]
LEVEL_NAMES: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    *(f"S{i}" for i in range(1, 6)),
)
SEVERITY_CUTOFFS: tuple[tuple[float, str], ...] = ((40.0, "severe"), (25.0, "moderate"), (10.0, "mild"))
SEVERITY_ORDER: tuple[str, ...] = ("none", "mild", "moderate", "severe")
SCOLIOSIS_ANGLE = 10.0
ANGLE_METHOD = "centre-line Cobb proxy"
MIN_VERTEBRAE = 3


class SpineGeometryError(ValueError):
    """Boxes from which no centre line can be derived (too few vertebrae, bad image size)."""


@dataclass(frozen=True)
class Curve:
    """One curve of the centre line; indices refer to :attr:`SpineGeometry.boxes` (top to bottom)."""

    start: int           # first vertebra of the piece between inflection points
    end: int             # last vertebra of that piece
    upper: int           # upper end vertebra: the most tilted tangent above the apex
    lower: int           # lower end vertebra: the most tilted tangent below the apex
    apex: int
    angle: float         # centre-line Cobb proxy, degrees
    convexity: str       # patient side: "left" | "right"
    region: str          # "thoracic" | "thoracolumbar" | "lumbar"
    severity: str        # "none" | "mild" | "moderate" | "severe"
    apex_deviation: float  # pixels from the end-vertebra chord (signed, + = image right)


@dataclass(frozen=True)
class SpineGeometry:
    image_size: tuple[int, int]          # (width, height) in pixels
    boxes: tuple[Box, ...]               # vertebra boxes, top to bottom
    centres: tuple[tuple[float, float], ...]   # raw box centres, pixels
    centre_line: tuple[tuple[float, float], ...]  # smoothed centres, pixels
    tilts: tuple[float, ...]             # tangent angle per vertebra, degrees
    levels: tuple[str, ...]              # estimated level name per vertebra
    column: Box                          # union of the vertebra boxes
    curves: tuple[Curve, ...]
    level_anchor: str

    @property
    def max_angle(self) -> float:
        return max((curve.angle for curve in self.curves), default=0.0)

    @property
    def alignment(self) -> str:
        return "scoliosis" if self.max_angle >= SCOLIOSIS_ANGLE else "normal"

    @property
    def severity(self) -> str:
        return severity_of(self.max_angle)

    @property
    def level_range(self) -> str:
        return f"{self.levels[0]}-{self.levels[-1]}"


def severity_of(angle: float) -> str:
    for cutoff, name in SEVERITY_CUTOFFS:
        if angle >= cutoff:
            return name
    return "none"


def region_of(level: str) -> str:
    letter, number = level[0], int(level[1:])
    if letter == "C" or (letter == "T" and number <= 11):
        return "thoracic"
    if (letter == "T" and number == 12) or (letter == "L" and number == 1):
        return "thoracolumbar"
    return "lumbar"


def estimate_levels(count: int, anchor: LevelAnchor = "bottom-L5") -> tuple[str, ...]:
    """Level names for ``count`` vertebrae, top to bottom (see the module docstring)."""
    if anchor == "bottom-L5":
        last = LEVEL_NAMES.index("L5")
        first = last - count + 1
    elif anchor == "top-T1":
        first = LEVEL_NAMES.index("T1")
    else:
        raise ValueError(f"unknown level anchor '{anchor}'; expected 'bottom-L5' or 'top-T1'")
    if first < 0 or first + count > len(LEVEL_NAMES):
        raise SpineGeometryError(f"{count} vertebrae cannot be named from anchor {anchor} (C1 to S5 is {len(LEVEL_NAMES)})")
    return LEVEL_NAMES[first : first + count]


def analyze_spine(
    boxes: Sequence[Box],
    image_size: tuple[int, int],
    *,
    level_anchor: LevelAnchor = "bottom-L5",
    window: int = 7,
    min_turn: float = 5.0,
    min_curve: float = 5.0,
) -> SpineGeometry:
    """Derive the centre line, curves and levels from vertebra boxes (normalised) on an image of ``image_size``."""
    width, height = image_size
    if width <= 0 or height <= 0:
        raise SpineGeometryError(f"image size must be positive, got {width}x{height}")
    if len(boxes) < MIN_VERTEBRAE:
        raise SpineGeometryError(f"a centre line needs at least {MIN_VERTEBRAE} vertebra boxes, got {len(boxes)}")
    ordered = tuple(sorted(boxes, key=lambda box: (box.center[1], box.center[0])))
    xs = np.array([box.center[0] * width for box in ordered])
    ys = np.array([box.center[1] * height for box in ordered])
    if np.any(np.diff(ys) <= 0):
        # Two centres at one height have no defined tangent between them: nudge apart by a hair,
        # deterministically, rather than dividing by zero.
        ys = ys + np.arange(len(ys)) * 1e-6
    smooth_x, tilts = _smooth(xs, ys, window)
    levels = estimate_levels(len(ordered), level_anchor)
    curves = []
    bounds = [0, *_turning_points(tilts, min_turn), len(ordered) - 1]
    for start, end in zip(bounds, bounds[1:]):
        curve = _curve(start, end, smooth_x, ys, tilts, levels)
        if curve is not None and curve.angle >= min_curve:
            curves.append(curve)
    column = Box.enclosing("spine column", ordered, source="spine-geometry")
    return SpineGeometry(
        image_size=(int(width), int(height)),
        boxes=ordered,
        centres=tuple(zip(xs.tolist(), ys.tolist())),
        centre_line=tuple(zip(smooth_x.tolist(), ys.tolist())),
        tilts=tuple(float(t) for t in tilts),
        levels=levels,
        column=column,
        curves=tuple(curves),
        level_anchor=level_anchor,
    )


def _smooth(xs: np.ndarray, ys: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed lateral positions and tangent tilts (degrees), from local quadratic fits over the index."""
    window = min(window, len(xs) if len(xs) % 2 else len(xs) - 1)
    if window < 3:
        return xs, np.degrees(np.arctan(np.gradient(xs, ys)))
    smooth_x = savgol_filter(xs, window, 2, mode="interp")
    dx = savgol_filter(xs, window, 2, deriv=1, mode="interp")
    dy = savgol_filter(ys, window, 2, deriv=1, mode="interp")
    return smooth_x, np.degrees(np.arctan2(dx, dy))


def _turning_points(tilts: np.ndarray, threshold: float) -> list[int]:
    """Indices where the tilt turns (a local extreme followed by a reversal of at least ``threshold``)."""
    points: list[int] = []
    high = low = 0
    direction = 0  # +1 while the tilt rises, -1 while it falls, 0 before the first clear move
    extreme = 0
    for index in range(1, len(tilts)):
        value = tilts[index]
        if direction == 0:
            high = index if value > tilts[high] else high
            low = index if value < tilts[low] else low
            if tilts[high] - tilts[low] >= threshold:
                direction, extreme = (1, high) if high > low else (-1, low)
        elif direction == 1:
            if value > tilts[extreme]:
                extreme = index
            elif tilts[extreme] - value >= threshold:
                points.append(extreme)
                direction, extreme = -1, index
        else:
            if value < tilts[extreme]:
                extreme = index
            elif value - tilts[extreme] >= threshold:
                points.append(extreme)
                direction, extreme = 1, index
    return points


def _curve(start: int, end: int, xs: np.ndarray, ys: np.ndarray, tilts: np.ndarray, levels: tuple[str, ...]) -> Curve | None:
    if end - start < 2:
        return None
    piece = tilts[start : end + 1]
    most, least = start + int(np.argmax(piece)), start + int(np.argmin(piece))
    upper, lower = min(most, least), max(most, least)
    if lower - upper < 2:
        return None
    # Lateral deviation from the chord joining the end vertebrae, measured horizontally.
    inner = np.arange(upper, lower + 1)
    chord = xs[upper] + (xs[lower] - xs[upper]) * (ys[inner] - ys[upper]) / (ys[lower] - ys[upper])
    deviation = xs[inner] - chord
    apex_offset = int(np.argmax(np.abs(deviation)))
    apex = upper + apex_offset
    # Tilt falling from upper to lower end means the line runs right then back left: bulging to
    # image right, which is the patient's left (see the module docstring).
    bulges_image_right = tilts[upper] > tilts[lower]
    angle = float(abs(tilts[upper] - tilts[lower]))
    return Curve(
        start=start,
        end=end,
        upper=upper,
        lower=lower,
        apex=apex,
        angle=round(angle, 6),
        convexity="left" if bulges_image_right else "right",
        region=region_of(levels[apex]),
        severity=severity_of(angle),
        apex_deviation=float(deviation[apex_offset]),
    )


def describe_curve(curve: Curve, levels: Sequence[str]) -> str:
    """``right-convex thoracic curve T5-T11, apex T8, centre-line Cobb proxy 32.1 degrees (moderate)``."""
    return (
        f"{curve.convexity}-convex {curve.region} curve {levels[curve.upper]}-{levels[curve.lower]}, apex {levels[curve.apex]}, "
        f"{ANGLE_METHOD} {curve.angle:.1f} degrees ({curve.severity})"
    )

