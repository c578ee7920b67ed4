"""What Hugging Face tooling needs beside radscribe-tiny's weights: an image processor and a fast tokenizer.

``AutoImageProcessor.from_pretrained(folder)`` gives :class:`RadscribeImageProcessor` (grayscale,
letterboxed into the model's input size, values in [0, 1]: exactly what the model was trained on) and
``AutoTokenizer.from_pretrained(folder)`` a ``PreTrainedTokenizerFast`` over the same ``tokenizer.json``
with its pad, bos and eos tokens set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import BatchFeature, PreTrainedTokenizerFast
from transformers.image_processing_utils import BaseImageProcessor, ImageProcessingMixin

from radscribe.data.images import Radiograph
from radscribe.models.image import letterbox
from radscribe.models.tokenizer import BOS, CONTROL_TOKENS, EOS, PAD


class RadscribeImageProcessor(BaseImageProcessor):
    """Images (PIL, arrays in [0, 255] or [0, 1], or radscribe Radiographs) -> ``pixel_values`` (B, 1, H, W) in [0, 1]."""

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: list[int] | tuple[int, int] = (256, 416), **kwargs: Any):
        ImageProcessingMixin.__init__(self, **kwargs)
        self.image_size = [int(image_size[0]), int(image_size[1])]

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        batch = images if isinstance(images, (list, tuple)) else [images]
        pixels = torch.stack([letterbox(_as_radiograph(image), tuple(self.image_size))[0] for image in batch])
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)


def _as_radiograph(image: Any) -> Radiograph:
    if isinstance(image, Radiograph):
        return image
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    else:
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 3:
            array = array.mean(axis=-1)
        if array.max(initial=0.0) > 1.0:
            array = array / 255.0
    if array.ndim != 2:
        raise ValueError(f"RadscribeImageProcessor: expected a 2-D grayscale image, got shape {array.shape}")
    return Radiograph(np.clip(array, 0.0, 1.0), Path("<array>"))


def save_hf_tokenizer(tokenizer: Tokenizer, folder: Path | str) -> None:
    """``tokenizer_config.json`` (and its special-token map) so ``AutoTokenizer`` knows pad, bos and eos."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[token for token in CONTROL_TOKENS if token not in (BOS, EOS, PAD)],
        model_max_length=1024, padding_side="left",
    )
    fast.save_pretrained(str(folder))
