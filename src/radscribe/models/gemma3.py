"""Gemma 3 / MedGemma (``Gemma3ForConditionalGeneration``) from a local checkpoint.

Prompt: the checkpoint's chat template for one user turn (``<bos><start_of_turn>user\\n<start_of_image>
{prompt}<end_of_turn>\\n<start_of_turn>model\\n`` when it ships none); the processor expands each
``<start_of_image>`` into ``\\n\\n<start_of_image>`` + ``mm_tokens_per_image`` (256) image soft tokens +
``<end_of_image>\\n\\n``. Target: ``{target}<end_of_turn>``. ``token_type_ids`` marks the image soft
tokens (1), which Gemma 3 attends to bidirectionally within each image; the prompt and target are
causal. The memory adapter sits in front of ``multi_modal_projector`` (on the SigLIP patch features,
before the projector pools them to 256 tokens).

Images: each radiograph is padded symmetrically to a black square before the processor resizes it
to the vision tower's input (896 x 896 for MedGemma), as MedGemma's own chest X-ray notebooks do; a
spine film (about 229 x 416) would otherwise be squashed to half its width.

Boxes: the ``medgemma`` codec (:mod:`radscribe.grounding.medgemma`), MedGemma 1.5's own format,
``[{"box_2d": [y0, x0, y1, x1], "label": ...}]`` on a 0..1000 scale of that padded square. We chose
it over PaliGemma-style ``<locNNNN>`` tokens because it is what MedGemma 1.5 was trained to write for
chest X-ray anatomy (fine-tuning starts from the model's habit, and its zero-shot boxes decode), and
it needs no vocabulary change; the price is longer box text (about 25 tokens a box against 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.base import IGNORE_INDEX, EncodedExample
from radscribe.models.hf_common import HFBackboneVLM, pil_images
from radscribe.models.image import letterbox
from radscribe.models.registry import register_family

START_OF_IMAGE, END_OF_TURN = "<start_of_image>", "<end_of_turn>"


def pad_to_square(image: Radiograph) -> Radiograph:
    """The radiograph centred on a black square of side max(width, height) (no rescaling)."""
    pixels, _ = letterbox(image, max(image.width, image.height))
    return Radiograph(pixels[0].numpy(), image.path, image.is_color, image.source_format)


@register_family
class Gemma3VLM(HFBackboneVLM):
    family = "gemma3"
    hf_model_types = ("gemma3",)
    model_class_name = "Gemma3ForConditionalGeneration"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    @property
    def eos_token_ids(self) -> list[int]:
        ids = [self.tokenizer.convert_tokens_to_ids(END_OF_TURN), self.tokenizer.eos_token_id]
        return list(dict.fromkeys(int(i) for i in ids if i is not None and i != self.tokenizer.unk_token_id))

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        bos = self.tokenizer.bos_token or ""
        fallback = f"{bos}<start_of_turn>user\n" + START_OF_IMAGE * len(images) + f"{prompt}<end_of_turn>\n<start_of_turn>model\n"
        text = self.chat_prompt(len(images), prompt, fallback)
        squares = [pad_to_square(image) for image in images]
        # The chat template already holds <bos>: the tokenizer must not add another.
        inputs = self.processor(images=pil_images(squares), text=text, add_special_tokens=False, return_tensors="pt")
        prefix = inputs["input_ids"][0].tolist()
        image_id = self.image_token_id
        vision = {"pixel_values": inputs["pixel_values"]}
        if target is None:
            return EncodedExample(prefix, token_types={"token_type_ids": [int(t == image_id) for t in prefix]}, vision=vision)
        answer = self.text_ids(target) + [self.eos_token_ids[0]]
        ids = prefix + answer
        return EncodedExample(
            ids, [IGNORE_INDEX] * len(prefix) + answer,
            token_types={"token_type_ids": [int(t == image_id) for t in ids]}, vision=vision,
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
