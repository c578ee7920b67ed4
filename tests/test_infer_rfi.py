"""Region-Focused Inference: crop arithmetic, the unsupervised region finder, and its encoders."""

from __future__ import annotations

import numpy as np
import pytest

from radscribe.data.images import Radiograph, read_image
from radscribe.infer import FeatureGrid, RegionCrop, RFIConfig, as_feature_fn, dinov2_features, locate_region, model_features, save_rfi_overlay
from radscribe.infer.rfi import otsu_threshold, spine_score
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
    assert crop.mask.sum() == 16 * 2 and crop.note is None and crop.basis == "features"
    assert crop.to_dict()["basis"] == "features"
    assert crop.crop(image).pixels.shape == (128, 16)
    wider = locate_region(image, as_feature_fn(lambda _: grid), RFIConfig(margin=0.25))
    assert wider.box == (36, 0, 60, 160)


def test_the_spine_score_is_the_component_and_sign_most_like_a_centred_band():
    # PC1 (most variance) is a left/right split that has nothing to do with the spine; the spine band
    # varies less but is the component resembling the prior. Its sign is flipped to come out positive.
    rng = np.random.default_rng(0)
    grid = rng.normal(0, 0.01, (20, 12, 6))
    grid[:, :6, 0] += 5.0
    grid[:, 5:7, 1] -= 1.0
    score = spine_score(FeatureGrid(grid), components=3)
    assert score[:, 5:7].min() > score[:, :5].max() and score[:, 5:7].min() > score[:, 7:].max()
    assert spine_score(FeatureGrid(grid), components=1)[:, 5:7].std() > 1  # PC1 alone splits the band in two
    low, high = rng.normal(0, 0.1, 300), rng.normal(2, 0.1, 100)
    assert low.max() < otsu_threshold(np.concatenate([low, high])) < high.min()  # Otsu splits the two modes


def test_an_implausible_feature_region_gives_the_prior_box():
    image = Radiograph(np.zeros((100, 60), np.float32), path="film.png")
    grid = np.zeros((10, 6, 4), np.float32)
    grid[7:10, 2:4, 0] = 1.0  # a short blob low in the film: not a spine column (height 0.3 < 0.5)
    config = RFIConfig(margin=0.0, prior_half_width=0.25, prior_top=0.1, prior_bottom=0.9)
    crop = locate_region(image, as_feature_fn(lambda _: grid), config)
    assert crop.basis == "prior" and crop.box == (15, 10, 45, 90)
    assert crop.mask[7:10, 2:4].all() and crop.mask.sum() == 6  # the rejected region is still shown in the overlay
    wide = np.zeros((10, 6, 4), np.float32)
    wide[1:9, :, 0] = [0.6, 0.8, 1.0, 1.0, 0.8, 0.6]  # tall, centred, but as wide as the film
    assert locate_region(image, as_feature_fn(lambda _: wide), RFIConfig(max_width=0.8)).basis == "prior"
    assert locate_region(image, as_feature_fn(lambda _: wide), RFIConfig(max_width=1.0, margin=0.0)).box == (0, 10, 60, 90)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="margin=1.5"):
        RFIConfig(margin=1.5)
    with pytest.raises(ValueError, match="prior_top"):
        RFIConfig(prior_top=0.9, prior_bottom=0.5)
    with pytest.raises(ValueError, match="components"):
        RFIConfig(components=0)


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

    model = create_model("radscribe-tiny-test")  # 64 x 96 input, stride 16 pooled 2 x 1: a 2 x 6 token grid
    tall = Radiograph(np.random.default_rng(0).random((128, 40), dtype=np.float32), path="tall.png")
    grid = model_features(model)(tall)
    assert isinstance(grid, FeatureGrid) and grid.features.shape[0] == 6
    x0, y0, x1, y1 = grid.extent
    assert y0 == pytest.approx(0.0) and y1 == pytest.approx(1.0) and x0 < 0.5 < x1
    with pytest.raises(ValueError, match="finer RFI stride"):
        model_features(model, stride=8)


def test_a_finer_stride_interleaves_shifted_passes_of_the_same_encoder(tmp_path):
    from radscribe.models import create_model
    from radscribe.models.checkpoints import write_tiny_checkpoint

    model = create_model(write_tiny_checkpoint("llava", tmp_path / "llava"), device="cpu")  # a square input
    size, patch = model.vision_tower().config.image_size, model.vision_tower().config.patch_size
    half = patch // 2
    square = Radiograph(np.random.default_rng(1).random((size, size), dtype=np.float32), path="square.png")
    native = model_features(model)(square)
    fine = model_features(model, stride=half)(square)
    cells = size // patch
    # Cell k of the fine grid is the patch at input pixel k * stride; the last one would reach past the input.
    assert native.features.shape[:2] == (cells, cells) and fine.features.shape[:2] == (2 * cells - 1, 2 * cells - 1)
    np.testing.assert_allclose(fine.features[::2, ::2], native.features, atol=1e-4)  # the unshifted pass
    assert not np.allclose(fine.features[1::2, 1::2], native.features[: cells - 1, : cells - 1], atol=1e-2)
    # Each fine cell stands for the central stride x stride px of its patch: stride / 2 in from the patch's corner.
    quarter = half / 2
    assert fine.extent == pytest.approx((quarter / size, quarter / size, (size - quarter) / size, (size - quarter) / size))
    with pytest.raises(ValueError, match="divide"):
        model_features(model, stride=6)(square)
