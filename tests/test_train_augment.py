"""Box-moving augmentation: boxes follow the image, draws are seeded per (step, slot), flips only for box tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("albumentations")

from radscribe.grounding import create_codec  # noqa: E402
from radscribe.tasks import Example  # noqa: E402
from radscribe.train.augment import AugmentSection, ExampleAugmenter, build_pipeline, transform  # noqa: E402
from radscribe.types import Box  # noqa: E402

HEIGHT, WIDTH = 200, 120
RECTANGLE = (20, 50, 60, 90)  # x0, y0, x1, y1 in pixels: left of centre, so a flip moves it


def film() -> tuple[np.ndarray, Box]:
    pixels = np.full((HEIGHT, WIDTH), 30, dtype=np.uint8)
    x0, y0, x1, y1 = RECTANGLE
    pixels[y0:y1, x0:x1] = 230
    return pixels, Box.from_pixels("vertebra", RECTANGLE, WIDTH, HEIGHT, source="test")


def bright_extent(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """The normalised bounding box of the bright pixels (the rectangle wherever the augmentation put it)."""
    ys, xs = np.nonzero(pixels > (int(pixels.max()) + int(np.median(pixels))) / 2)
    return xs.min() / WIDTH, ys.min() / HEIGHT, (xs.max() + 1) / WIDTH, (ys.max() + 1) / HEIGHT


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_box_stays_on_the_bright_rectangle_and_flips_with_it():
    pipeline = build_pipeline(AugmentSection(noise=0.0), flip=True)
    pixels, box = film()
    flipped = 0
    for seed in range(12):
        image, (moved,) = transform(pipeline, pixels, [box], seed)
        assert image.shape == pixels.shape and image.dtype == np.uint8
        assert iou(moved.xyxy, bright_extent(image)) > 0.75, seed
        flipped += moved.center[0] > 0.5
    assert 0 < flipped < 12  # the rectangle (left of centre) lands on the right exactly when the film was flipped


def test_the_same_seed_draws_the_same_augmentation_and_another_seed_does_not():
    pipeline = build_pipeline(AugmentSection(), flip=True)
    pixels, box = film()
    first, again, other = (transform(pipeline, pixels, [box], seed) for seed in (7, 7, 8))
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert not np.array_equal(first[0], other[0])


def test_a_batch_slot_draws_by_step_seed_plus_position():
    """A resumed run redraws what the uninterrupted run drew: a film's draw depends on (step seed, slot) only."""
    import torch

    from radscribe.models.detector import DetectorConfig
    from radscribe.train.detector import Sample, _batch

    config = DetectorConfig(input_size=(64, 128))
    pipeline = build_pipeline(AugmentSection(), flip=True)
    pixels, box = film()
    a, b = Sample("a", pixels, [box]), Sample("b", pixels[::-1].copy(), [box])
    pair, _ = _batch([a, b], config, pipeline, seed=100)
    again, _ = _batch([a, b], config, pipeline, seed=100)
    alone, _ = _batch([b], config, pipeline, seed=101)
    assert torch.equal(pair, again) and torch.equal(pair[1], alone[0])


def example(tmp_path: Path, task: str) -> Example:
    pixels, box = film()
    path = tmp_path / "film.png"
    Image.fromarray(pixels).save(path)
    codec = create_codec("radscribe")
    if task == "vqa":
        return Example("vqa", "s1", (path,), "Which side is the bright block on?", "left", {"answer_type": "closed"})
    metadata = {"codec": codec.name, "image_size": [WIDTH, HEIGHT], "boxes": [box.to_dict()], "phrase": "vertebra"}
    return Example(task, "s1", (path,), "Where is the vertebra?", codec.encode_phrase("vertebra", [box], (WIDTH, HEIGHT)), metadata)


ONLY_FLIP = AugmentSection(scale=[1.0, 1.0], shift=0.0, rotate=0.0, shear=0.0, flip=1.0, brightness_contrast=0.0,
                           gamma=[100.0, 100.0], noise=0.0)


def test_flips_apply_to_box_tasks_and_their_targets_only(tmp_path):
    augmenter = ExampleAugmenter(ONLY_FLIP, create_codec("radscribe"))
    grounding = augmenter(example(tmp_path, "phrase_grounding"), seed=3)
    (moved,) = grounding.metadata["boxes"]
    x0, _, x1, _ = RECTANGLE
    assert (moved["x_min"], moved["x_max"]) == pytest.approx((1 - x1 / WIDTH, 1 - x0 / WIDTH), abs=0.01)  # mirrored
    assert grounding.target == create_codec("radscribe").encode_phrase("vertebra", [Box.from_dict(moved)], (WIDTH, HEIGHT))
    assert bright_extent(grounding.images[0].to_uint8())[0] == pytest.approx(1 - x1 / WIDTH, abs=0.02)  # the image too
    question = augmenter(example(tmp_path, "vqa"), seed=3)  # "left" would become wrong if the film were mirrored
    assert question.target == "left" and bright_extent(question.images[0].to_uint8())[2] == pytest.approx(x1 / WIDTH, abs=0.02)
