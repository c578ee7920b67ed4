"""Masks -> boxes: per class and slice, connected components above a minimum area.

A box covers whole pixels: a component spanning columns c0..c1 and rows r0..r1 (inclusive) becomes
the canonical :class:`~radscribe.types.Box` ``(c0 / W, r0 / H, (c1 + 1) / W, (r1 + 1) / H)`` on the
W x H slice image, so boxes made from a rasterised box come back exactly (pixel edges).

``per="component"`` gives one box per connected component (8-connected); ``per="class"`` one box per
class and patient side, enclosing that side's kept components (RadGrounder merges per class and
slice; splitting by side keeps "left lung" answerable for a schema with one ``lung`` class).
The side of a component is its class's side when the name states one (``kidney_left``), else the side
of the image its centre lies on; ``patient_left_on_image_right`` says how the image is displayed
(true for axial CT/MR in the radiological convention and for PA/AP radiographs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from radscribe.types import Box
from radscribe.volumes.schema import ClassSchema, Side, side_of

Per = Literal["component", "class"]
PER_CHOICES: tuple[str, ...] = ("component", "class")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ClassBox:
    """A box of one class on one slice; ``box.label`` is the class name, ``area`` its pixel count."""

    class_name: str
    box: Box
    side: Side | None
    area: int


def label_boxes(
    labels: np.ndarray,
    schema: ClassSchema,
    *,
    min_area: int = 10,
    per: Per = "component",
    patient_left_on_image_right: bool = True,
    source: str = "mask",
) -> list[ClassBox]:
    """The boxes of every schema class present in a 2-D label map (rows, columns); id 0 is background."""
    if labels.ndim != 2:
        raise ValueError(f"a label slice must be 2-D (rows, columns), got shape {labels.shape}")
    if per not in PER_CHOICES:
        raise ValueError(f"per must be one of {', '.join(PER_CHOICES)}, got {per!r}")
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int64)
    height, width = labels.shape
    found: list[ClassBox] = []
    for index, bounds in enumerate(ndimage.find_objects(labels)):
        class_name = schema.classes.get(index + 1)
        if bounds is None or class_name is None:
            continue
        mask = labels[bounds] == index + 1
        components = _components(mask, bounds, min_area)
        named_side = side_of(class_name)
        sided = []
        for (r0, c0, r1, c1), area in components:
            side = named_side or _image_side((c0 + c1 + 1) / 2 / width, patient_left_on_image_right)
            sided.append(((r0, c0, r1, c1), area, side))
        if per == "class":
            merged: dict[Side | None, tuple[tuple[int, int, int, int], int]] = {}
            for (r0, c0, r1, c1), area, side in sided:
                if side in merged:
                    (a0, b0, a1, b1), total = merged[side]
                    merged[side] = ((min(a0, r0), min(b0, c0), max(a1, r1), max(b1, c1)), total + area)
                else:
                    merged[side] = ((r0, c0, r1, c1), area)
            sided = [(extent, area, side) for side, (extent, area) in merged.items()]
        for (r0, c0, r1, c1), area, side in sided:
            box = Box(class_name, c0 / width, r0 / height, (c1 + 1) / width, (r1 + 1) / height, source=source)
            found.append(ClassBox(class_name, box, side, int(area)))
    return found


def _components(mask: np.ndarray, bounds: tuple[slice, slice], min_area: int) -> list[tuple[tuple[int, int, int, int], int]]:
    """(row0, col0, row1, col1) inclusive in slice pixels, and area, of each component of ``mask`` >= ``min_area``."""
    top, left = bounds[0].start, bounds[1].start
    numbered, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 1:
        area = int(mask.sum())
        if area < min_area:
            return []
        return [((top, left, top + mask.shape[0] - 1, left + mask.shape[1] - 1), area)]
    areas = np.bincount(numbered.ravel(), minlength=count + 1)
    out = []
    for number, extent in enumerate(ndimage.find_objects(numbered), start=1):
        if extent is None or areas[number] < min_area:
            continue
        out.append(((top + extent[0].start, left + extent[1].start, top + extent[0].stop - 1, left + extent[1].stop - 1), int(areas[number])))
    return out


def _image_side(centre_x: float, patient_left_on_image_right: bool) -> Side:
    on_right_half = centre_x >= 0.5
    return "left" if on_right_half == patient_left_on_image_right else "right"


def read_mask_png(path: Path | str) -> np.ndarray:
    """A 2-D label map stored as a PNG (8- or 16-bit grayscale; pixel value = class id)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "P", "1"):
                raise ValueError(f"{path}: a label PNG must be grayscale or palette (pixel = class id), got mode {image.mode}")
            return np.asarray(image).astype(np.int64)
    except OSError as error:
        raise ValueError(f"{path}: cannot read the mask PNG ({error})") from None


def mask_from_boxes(boxes: list[Box], width: int, height: int, ids: dict[str, int]) -> np.ndarray:
    """A label map with each box painted (in order, later boxes over earlier) as its class id.

    A box covers the pixels whose centres lie inside it: columns ``round(x_min W) .. round(x_max W) - 1``.
    """
    labels = np.zeros((height, width), dtype=np.int32)
    for box in boxes:
        c0, c1 = round(box.x_min * width), max(round(box.x_min * width) + 1, round(box.x_max * width))
        r0, r1 = round(box.y_min * height), max(round(box.y_min * height) + 1, round(box.y_max * height))
        labels[r0:r1, c0:c1] = ids[box.label]
    return labels
