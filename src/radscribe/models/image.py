"""Letterboxing radiographs into a fixed-size model input, with the transform kept for mapping boxes.

Spine films are tall (about 229 x 416): squashing them into another shape would distort vertebra
shapes, so the image is scaled to fit, keeping its aspect ratio, and centred on black padding
(radiograph background). The input is a square (``size``: int) or a (width, height) rectangle, e.g.
a tall 256 x 416 input that holds a spine film at its native resolution. :class:`Letterbox` maps
normalised boxes between the original image and the model input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from radscribe.data.images import Radiograph, read_image
from radscribe.types import Box


InputSize = int | tuple[int, int]  # a square side, or (width, height)


def input_dimensions(size: InputSize) -> tuple[int, int]:
    """(width, height) of a model input given as a square side or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class Letterbox:
    """Original (width, height) -> model input (width, height): scaled by ``scale`` then offset by (pad_x, pad_y) pixels."""

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, width: int, height: int, size: InputSize) -> Letterbox:
        input_w, input_h = input_dimensions(size)
        scale = min(input_w / width, input_h / height)
        new_w, new_h = max(1, min(input_w, round(width * scale))), max(1, min(input_h, round(height * scale)))
        return cls((width, height), (input_w, input_h), scale, (input_w - new_w) // 2, (input_h - new_h) // 2)

    @property
    def content_size(self) -> tuple[int, int]:
        width, height = self.original_size
        input_w, input_h = self.input_size
        return max(1, min(input_w, round(width * self.scale))), max(1, min(input_h, round(height * self.scale)))

    def to_input(self, box: Box) -> Box:
        """A box normalised on the original image -> normalised on the model input."""
        cw, ch = self.content_size
        input_w, input_h = self.input_size
        x0, y0, x1, y1 = box.xyxy
        coords = (
            (self.pad_x + x0 * cw) / input_w, (self.pad_y + y0 * ch) / input_h,
            (self.pad_x + x1 * cw) / input_w, (self.pad_y + y1 * ch) / input_h,
        )
        return Box.from_xyxy(box.label, coords, source=box.source, image=box.image, score=box.score)

    def to_original(self, box: Box) -> Box:
        """A box normalised on the model input -> normalised on the original image (padding clipped off)."""
        cw, ch = self.content_size
        input_w, input_h = self.input_size
        x0, y0, x1, y1 = box.xyxy
        coords = (
            (x0 * input_w - self.pad_x) / cw, (y0 * input_h - self.pad_y) / ch,
            (x1 * input_w - self.pad_x) / cw, (y1 * input_h - self.pad_y) / ch,
        )
        return Box.from_xyxy(box.label, coords, source=box.source, image=box.image, score=box.score)


def as_radiograph(image: Radiograph | Path | str) -> Radiograph:
    return image if isinstance(image, Radiograph) else read_image(image)


def letterbox(image: Radiograph, size: InputSize) -> tuple[torch.Tensor, Letterbox]:
    """(1, height, width) float tensor in [0, 1] and the transform that produced it."""
    transform = Letterbox.fit(image.width, image.height, size)
    content_w, content_h = transform.content_size
    resized = Image.fromarray(image.pixels.astype(np.float32), mode="F").resize((content_w, content_h), Image.BILINEAR)
    canvas = np.zeros(transform.input_size[::-1], dtype=np.float32)
    canvas[transform.pad_y : transform.pad_y + content_h, transform.pad_x : transform.pad_x + content_w] = np.clip(
        np.asarray(resized, dtype=np.float32), 0.0, 1.0
    )
    return torch.from_numpy(canvas).unsqueeze(0), transform
