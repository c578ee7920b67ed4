"""PaliGemma / PaliGemma 2 (``PaliGemmaForConditionalGeneration``) from a local checkpoint.

PaliGemma's own layout: ``<image>*N <bos> prefix \\n`` attended bidirectionally (token_type_ids 0),
then the suffix ``{target}<eos>`` attended causally (token_type_ids 1), loss on the suffix only.
The processor adds PaliGemma's ``<loc####>``/``<seg###>`` tokens, which the ``paligemma`` codec
uses. The memory adapter sits in front of ``multi_modal_projector``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.base import IGNORE_INDEX, EncodedExample
from radscribe.models.hf_common import HFBackboneVLM, pil_images
from radscribe.models.registry import register_family


@register_family
class PaliGemmaVLM(HFBackboneVLM):
    family = "paligemma2"
    hf_model_types = ("paligemma",)
    model_class_name = "PaliGemmaForConditionalGeneration"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        inputs = self.processor(images=pil_images(images), text="<image>" * len(images) + prompt, return_tensors="pt")
        prefix = inputs["input_ids"][0].tolist()
        vision = {"pixel_values": inputs["pixel_values"]}
        if target is None:
            return EncodedExample(prefix, token_types={"token_type_ids": [0] * len(prefix)}, vision=vision)
        answer = self.text_ids(target) + self.eos_token_ids
        return EncodedExample(
            prefix + answer,
            [IGNORE_INDEX] * len(prefix) + answer,
            token_types={"token_type_ids": [0] * len(prefix) + [1] * len(answer)},
            vision=vision,
        )

    def vision_tower(self) -> nn.Module:
        return self.base_model().model.vision_tower

    def _projector_slot(self) -> tuple[nn.Module, str]:
        return self.base_model().model, "multi_modal_projector"

    def _vision_width(self) -> int:
        return int(self.base_model().config.vision_config.hidden_size)

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        config = self.base_model().config.vision_config
        return int(vision["pixel_values"].shape[0]) * (config.image_size // config.patch_size) ** 2
