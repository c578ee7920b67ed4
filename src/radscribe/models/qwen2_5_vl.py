"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) from a local checkpoint.

Prompt: the checkpoint's chat template (``<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>
{prompt}<|im_end|>\\n<|im_start|>assistant\\n``); each ``<|image_pad|>`` is expanded to the image's
merged patch count (``grid_t * grid_h * grid_w / merge_size^2``, as Qwen's processor does) and
``mm_token_type_ids`` marks those tokens for the 3-D (M-RoPE) positions. Target: ``{target}<|im_end|>``.

The image processor and tokenizer are loaded separately rather than through ``Qwen2_5_VLProcessor``:
that processor insists on a video processor, which needs torchvision (no CPU build here), and
radscribe never feeds video. The memory adapter sits in front of the vision tower's ``merger``
(the projector), on its flat (patches, width) features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.base import IGNORE_INDEX, Architecture, EncodedExample
from radscribe.models.hf_common import HFBackboneVLM, pil_images
from radscribe.models.registry import register_family

IMAGE_PAD, IM_END = "<|image_pad|>", "<|im_end|>"


@dataclass
class QwenInputs:
    """The two halves of a Qwen2.5-VL processor that radscribe uses."""

    image_processor: Any
    tokenizer: Any

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def save_pretrained(self, folder: str) -> None:
        self.image_processor.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


@register_family
class Qwen25VLM(HFBackboneVLM):
    family = "qwen2.5-vl"
    hf_model_types = ("qwen2_5_vl",)
    model_class_name = "Qwen2_5_VLForConditionalGeneration"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    @classmethod
    def _load_processor(cls, folder: Path) -> QwenInputs:
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        template = Path(folder) / "chat_template.jinja"
        if not getattr(tokenizer, "chat_template", None) and template.exists():
            tokenizer.chat_template = template.read_text(encoding="utf-8")
        return QwenInputs(AutoImageProcessor.from_pretrained(str(folder), local_files_only=True), tokenizer)

    @property
    def eos_token_ids(self) -> list[int]:
        ids = [self.tokenizer.convert_tokens_to_ids(IM_END), self.tokenizer.eos_token_id]
        return list(dict.fromkeys(int(i) for i in ids if i is not None))

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        fallback = "<|im_start|>user\n" + "<|vision_start|><|image_pad|><|vision_end|>" * len(images) + f"{prompt}<|im_end|>\n<|im_start|>assistant\n"
        text = self.chat_prompt(len(images), prompt, fallback)
        pixels = self.processor.image_processor(images=pil_images(images), return_tensors="pt")
        grid = pixels["image_grid_thw"]
        merge = self.processor.image_processor.merge_size**2
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(images):
            raise ValueError(f"chat template produced {len(pieces) - 1} {IMAGE_PAD} tokens for {len(images)} images")
        expanded = pieces[0] + "".join(IMAGE_PAD * int(grid[i].prod() // merge) + piece for i, piece in enumerate(pieces[1:]))
        prefix = self.text_ids(expanded)
        image_id = self.image_token_id
        vision = {"pixel_values": pixels["pixel_values"], "image_grid_thw": grid}
        if target is None:
            return EncodedExample(prefix, token_types={"mm_token_type_ids": [int(t == image_id) for t in prefix]}, vision=vision)
        answer = self.text_ids(target) + [self.eos_token_ids[0]]
        ids = prefix + answer
        return EncodedExample(
            ids, [IGNORE_INDEX] * len(prefix) + answer,
            token_types={"mm_token_type_ids": [int(t == image_id) for t in ids]}, vision=vision,
        )

    def vision_tower(self) -> nn.Module:
        return self.base_model().model.visual

    def _projector_slot(self) -> tuple[nn.Module, str]:
        return self.base_model().model.visual, "merger"

    def _vision_width(self) -> int:
        return int(self.base_model().config.vision_config.hidden_size)

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        return int(vision["pixel_values"].shape[0])

    def _num_images(self, vision: dict[str, torch.Tensor]) -> int:
        return int(vision["image_grid_thw"].shape[0])

    def architecture(self) -> Architecture:
        config = self.base_model().config
        layers, width = self._text_architecture(config.text_config)
        return Architecture(layers, width, config.vision_config.depth, config.vision_config.hidden_size)
