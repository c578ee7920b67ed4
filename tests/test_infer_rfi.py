"""Region-Focused Inference: crop arithmetic, the unsupervised region finder, and its encoders."""

from __future__ import annotations

import numpy as np
import pytest

from radscribe.data.images import Radiograph, read_image
from radscribe.infer import FeatureGrid, RegionCrop, RFIConfig, as_feature_fn, dinov2_features, locate_region, model_features, save_rfi_overlay
from radscribe.infer.rfi import choose_foreground, otsu_threshold
from radscribe.types import Box


def test_boxes_on_the_crop_map_back_to_the_original_exactly():
    crop = RegionCrop((37, 50, 137, 350), (229, 416))
    on_crop = Box("v", 0.1, 0.25, 0.6, 0.5)
    mapped = crop.to_original(on_crop)
    # Pixel arithmetic by hand: x = 37 + 0.1 * 100 = 47 px of 229; y = 50 + 0.25 * 300 = 125 px of 416.
    assert mapped.xyxy == pytest.approx((47 / 229, 125 / 416, 97 / 229, 200 / 416), abs=1e-12)
    assert crop.to_crop(mapped).xyxy == pytest.approx(on_crop.xyxy, abs=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x0, y0, x1, y1 = sorted(rng.random(2)) + sorted(rng.random(2))
        box = Box.from_xyxy("b", (x0, y0, x1, y1))
        assert crop.to_crop(crop.to_original(box)).xyxy == pytest.approx(box.xyxy, abs=1e-12)


def _band_image() -> tuple[Radiograph, np.ndarray]:
    """A 'spine': a bright vertical band in the centre of a dark film, and features that tell it apart."""
    pixels = np.full((160, 96), 0.2, np.float32)
    pixels[20:140, 40:56] = 0.9
    grid = np.zeros((20, 12, 8), np.float32)
    grid[..., 0] = 1.0
    grid[2:18, 5:7, 0] = -1.0
    grid[2:18, 5:7, 1] = 2.0
    grid += np.random.default_rng(0).normal(0, 0.01, grid.shape).astype(np.float32)
    return Radiograph(pixels, path="band.png"), grid


def test_feature_region_finder_crops_to_the_vertical_band():
    image, grid = _band_image()
    crop = locate_region(image, as_feature_fn(lambda _: grid), RFIConfig(margin=0.0))
    # Band patches: rows 2..17 of 20 (y 16..144 px), columns 5..6 of 12 (x 40..56 px).
    assert crop.box == (40, 16, 56, 144)
    assert crop.mask.sum() == 16 * 2 and crop.note is None
    assert crop.crop(image).pixels.shape == (128, 16)
    wider = locate_region(image, as_feature_fn(lambda _: grid), RFIConfig(margin=0.25))
    assert wider.box == (36, 0, 60, 160)


def test_sign_rule_prefers_the_side_away_from_the_border_then_the_minority():
    inner = np.zeros((10, 10), bool)
    inner[3:7, 3:7] = True
    assert choose_foreground(~inner, inner) is inner
    left = np.zeros((10, 10), bool)
    left[:, :3] = True  # both sides touch the border about equally: the smaller side wins
    assert choose_foreground(left, ~left) is left
    low, high = np.random.default_rng(0).normal(0, 0.1, 300), np.random.default_rng(1).normal(2, 0.1, 100)
    assert low.max() < otsu_threshold(np.concatenate([low, high])) < high.min()  # splits the two modes


def test_featureless_image_falls_back_to_the_whole_image():
    image = Radiograph(np.zeros((40, 30), np.float32), path="flat.png")
    crop = locate_region(image, as_feature_fn(lambda _: np.ones((4, 3, 5))))
    assert crop.box == (0, 0, 30, 40) and crop.note


def test_dinov2_from_a_local_folder_gives_a_patch_grid(tmp_path, cadma_dir):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=56)).save_pretrained(tmp_path)
    image = read_image(sorted((cadma_dir / "valid" / "images").iterdir())[0])
    features = dinov2_features(tmp_path, long_side=112)
    grid = features(image)
    scale = 112 / max(image.width, image.height)  # long side to 112 px = 8 patches of 14, aspect kept
    expected = (max(1, round(image.height * scale / 14)), max(1, round(image.width * scale / 14)), 32)
    assert grid.features.shape == expected and max(expected[:2]) == 8
    crop = locate_region(image, features)
    assert 0 <= crop.box[0] < crop.box[2] <= image.width and 0 <= crop.box[1] < crop.box[3] <= image.height
    written = save_rfi_overlay(image, crop, tmp_path / "rfi.png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dinov2_needs_a_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        dinov2_features(tmp_path / "absent")


def test_the_vlm_encoder_grid_covers_the_image_not_the_letterbox_padding():
    from radscribe.models import create_model

    model = create_model("radscribe-tiny-test")  # 64 px input, patch 16: a 4 x 4 grid
    tall = Radiograph(np.random.default_rng(0).random((128, 40), dtype=np.float32), path="tall.png")
    grid = model_features(model)(tall)
    assert isinstance(grid, FeatureGrid) and grid.features.shape[0] == 4 and grid.features.shape[1] < 4
    x0, y0, x1, y1 = grid.extent
    assert y0 == pytest.approx(0.0) and y1 == pytest.approx(1.0) and x0 <= 0.0 and x1 >= 1.0
