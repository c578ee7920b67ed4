"""Augmentation that moves boxes with the image, for the detector and for VLM training examples.

One albumentations pipeline (affine scale, shift, rotation and shear, optional left-right flip,
brightness, contrast, gamma, noise) is applied to the ORIGINAL film with its boxes in normalised
xyxy, before the model letterboxes it. For a VLM example the text is then rebuilt from the moved
boxes with the same task code that built it (targets in the box codec, and a detected-grounding
prompt's proposals perturbed afresh), so location tokens always describe the image the model sees.

Every call takes a seed: a trainer passes one derived from (step, position in the batch), so a
resumed run draws exactly the augmentations an uninterrupted run would have drawn.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radscribe.data.images import Radiograph, read_image
from radscribe.grounding import BoxCodec
from radscribe.tasks import Example, reading_order
from radscribe.tasks.builders import detected_prompt, perturb_boxes
from radscribe.types import Box

# Tasks whose targets are boxes of the example's image (rebuilt after a geometric transform).
BOX_TASKS = ("phrase_grounding", "detected_grounding", "region")


@dataclass
class AugmentSection:
    enabled: bool = True
    scale: list[float] = field(default_factory=lambda: [0.85, 1.15])
    shift: float = 0.06            # fraction of the image side, each way
    rotate: float = 6.0            # degrees, each way
    shear: float = 3.0             # degrees, each way
    flip: float = 0.5              # probability of a left-right flip (box tasks only: a question may name a side)
    brightness_contrast: float = 0.2
    gamma: list[float] = field(default_factory=lambda: [80.0, 120.0])
    noise: float = 0.3             # probability of Gaussian noise


def build_pipeline(settings: AugmentSection, flip: bool) -> Any:
    """The albumentations pipeline for normalised xyxy boxes (``flip``: include the left-right flip)."""
    try:
        import albumentations as A
        import cv2
    except ImportError:
        raise ImportError("augmentation needs albumentations (pip install radscribe[train])") from None
    steps = [
        A.Affine(
            scale=tuple(settings.scale), translate_percent={"x": (-settings.shift, settings.shift), "y": (-settings.shift, settings.shift)},
            rotate=(-settings.rotate, settings.rotate), shear=(-settings.shear, settings.shear),
            border_mode=cv2.BORDER_CONSTANT, fill=0, rotate_method="ellipse", p=0.9,
        ),
        A.RandomBrightnessContrast(settings.brightness_contrast, settings.brightness_contrast, p=0.8),
        A.RandomGamma(gamma_limit=tuple(settings.gamma), p=0.5),
        A.GaussNoise(std_range=(0.01, 0.04), p=settings.noise),
    ]
    if flip and settings.flip > 0:
        steps.insert(1, A.HorizontalFlip(p=settings.flip))
    return A.Compose(steps, bbox_params=A.BboxParams(format="albumentations", label_fields=["labels"], min_visibility=0.5, clip=True))


def transform(pipeline: Any, pixels: np.ndarray, boxes: list[Box], seed: int) -> tuple[np.ndarray, list[Box]]:
    """``pixels`` (uint8, H x W) and its boxes moved together; boxes pushed mostly out of the image are dropped."""
    pipeline.set_random_seed(seed)
    out = pipeline(image=pixels, bboxes=[box.xyxy for box in boxes], labels=list(range(len(boxes))))
    moved = [Box.from_xyxy(boxes[int(index)].label, xyxy, source=boxes[int(index)].source) for xyxy, index in zip(out["bboxes"], out["labels"])]
    return out["image"], [box for box in moved if box.width > 0 and box.height > 0]


class ExampleAugmenter:
    """Augments VLM training examples (see the module docstring); decoded films are kept in a small cache."""

    def __init__(self, settings: AugmentSection, codec: BoxCodec, cache_size: int = 2048):
        self.codec = codec
        self._with_flip = build_pipeline(settings, flip=True)
        self._without_flip = build_pipeline(settings, flip=False)
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, example: Example, seed: int) -> Example:
        if len(example.images) != 1:
            return example  # multi-image examples pass through unchanged
        pixels = self._pixels(Path(example.images[0]))
        boxes = [Box.from_dict(box) for box in example.metadata.get("boxes", [])] if example.task in BOX_TASKS else []
        pipeline = self._with_flip if boxes else self._without_flip
        image, moved = transform(pipeline, pixels, boxes, seed)
        if boxes and not moved:
            return example  # every box left the image: keep the example as it was
        radiograph = Radiograph(image.astype(np.float32) / 255.0, Path(example.images[0]))
        replaced: dict[str, Any] = {"images": (radiograph,)}
        if boxes:
            size = tuple(example.metadata["image_size"])
            phrase = example.metadata.get("phrase") or example.metadata.get("region") or moved[0].label
            replaced["target"] = self.codec.encode_phrase(phrase, reading_order(moved), size)
            replaced["metadata"] = {**example.metadata, "boxes": [box.to_dict() for box in reading_order(moved)]}
            if example.task == "detected_grounding":
                noise = example.metadata["perturbation"]
                proposals = perturb_boxes(moved, np.random.default_rng(seed), noise["jitter"], noise["drop"], noise["extra"])
                replaced["prompt"] = detected_prompt(phrase, proposals, size, self.codec)
        return dataclasses.replace(example, **replaced)

    def _pixels(self, path: Path) -> np.ndarray:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        pixels = read_image(path).to_uint8()
        self._cache[path] = pixels
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pixels
