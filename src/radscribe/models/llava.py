"""LLaVA (``LlavaForConditionalGeneration``) from a local checkpoint, prompted with its chat template.

Prompt: the checkpoint's chat template for one user turn (``USER: <image>\\n{prompt} ASSISTANT:`` when
it ships none); the processor expands ``<image>`` into the vision tower's patch count. Target:
`` {target}</s>``. The memory adapter sits in front of ``multi_modal_projector``.
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
class LlavaVLM(HFBackboneVLM):
    family = "llava"
    hf_model_types = ("llava",)
    model_class_name = "LlavaForConditionalGeneration"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        text = self.chat_prompt(len(images), prompt, fallback="USER: " + "<image>\n" * len(images) + f"{prompt} ASSISTANT:")
        inputs = self.processor(images=pil_images(images), text=text, return_tensors="pt")
        prefix = inputs["input_ids"][0].tolist()
        vision = {"pixel_values": inputs["pixel_values"]}
        if target is None:
            return EncodedExample(prefix, vision=vision)
        answer = self.text_ids(" " + target) + self.eos_token_ids
        return EncodedExample(prefix + answer, [IGNORE_INDEX] * len(prefix) + answer, vision=vision)

    def vision_tower(self) -> nn.Module:
        return self.base_model().model.vision_tower

    def _projector_slot(self) -> tuple[nn.Module, str]:
        return self.base_model().model, "multi_modal_projector"

    def _vision_width(self) -> int:
        config = self.base_model().config
        layers = config.vision_feature_layer
        return config.vision_config.hidden_size * (1 if isinstance(layers, int) else len(layers))

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        config = self.base_model().config.vision_config
        return int(vision["pixel_values"].shape[0]) * ((config.image_size // config.patch_size) ** 2 + 1)
