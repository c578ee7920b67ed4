"""Review overlays: the derived spine geometry drawn over the radiograph, for a person to check."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from radscribe.annotate.spine import ANGLE_METHOD, SpineGeometry
from radscribe.data.images import Radiograph
from radscribe.data.manifest import atomic_write

SCALE = 2  # CADMA films are ~229x416: drawn twice as large so labels stay legible
COLORS = {
    "vertebra": (80, 200, 80),
    "column": (240, 200, 40),
    "line": (60, 200, 255),
    "apex": (255, 60, 60),
    "tangent": (255, 80, 255),
    "text": (255, 255, 255),
}


def draw_spine_overlay(radiograph: Radiograph, geometry: SpineGeometry, path: Path | str) -> Path:
    """Write a PNG: vertebra boxes with estimated levels, the column box, the smoothed centre line,
    the end-vertebra tangents and apex of each curve, and a legend with each curve's angle."""
    width, height = geometry.image_size
    image = radiograph.to_pil().convert("RGB").resize((width * SCALE, height * SCALE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)

    def pixels(box) -> list[float]:
        x0, y0, x1, y1 = box.to_pixels(width, height)
        return [x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE]

    draw.rectangle(pixels(geometry.column), outline=COLORS["column"], width=1)
    for box, level in zip(geometry.boxes, geometry.levels):
        corners = pixels(box)
        draw.rectangle(corners, outline=COLORS["vertebra"], width=1)
        draw.text((corners[2] + 3, corners[1]), level, fill=COLORS["vertebra"])
    draw.line([(x * SCALE, y * SCALE) for x, y in geometry.centre_line], fill=COLORS["line"], width=2)
    legend = [f"{ANGLE_METHOD}; levels estimated ({geometry.level_anchor})"]
    for number, curve in enumerate(geometry.curves, start=1):
        for index in (curve.upper, curve.lower):
            _tangent(draw, geometry, index)
        apex = pixels(geometry.boxes[curve.apex])
        draw.rectangle(apex, outline=COLORS["apex"], width=2)
        draw.text((apex[0] - 16, apex[1]), str(number), fill=COLORS["apex"])
        legend.append(
            f"{number}: {curve.region} {curve.angle:.1f} deg {curve.severity}, convex {curve.convexity} (patient), "
            f"{geometry.levels[curve.upper]}-{geometry.levels[curve.lower]} apex {geometry.levels[curve.apex]}"
        )
    if not geometry.curves:
        legend.append("no curve")
    for row, text in enumerate(legend):
        draw.text((4, 4 + 11 * row), text, fill=COLORS["text"] if row else COLORS["line"])
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        image.save(handle, format="PNG", compress_level=1)  # review images: speed over size
    return path


def _tangent(draw: ImageDraw.ImageDraw, geometry: SpineGeometry, index: int) -> None:
    """The centre-line tangent through a vertebra, drawn as a line across it (the proxy's 'endplate')."""
    x, y = geometry.centre_line[index]
    tilt = math.radians(geometry.tilts[index])
    # Perpendicular to the tangent, like an endplate: the angle between two such lines is the curve angle.
    dx, dy = math.cos(tilt), -math.sin(tilt)
    half = geometry.boxes[index].width * geometry.image_size[0] * 0.9
    draw.line(
        [((x - dx * half) * SCALE, (y - dy * half) * SCALE), ((x + dx * half) * SCALE, (y + dy * half) * SCALE)],
        fill=COLORS["tangent"],
        width=2,
    )
