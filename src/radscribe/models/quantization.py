"""QLoRA's quantised base: the language model's linear layers in 4-bit NormalFloat (bitsandbytes).

``quantization: nf4`` in a model config (``model.overrides.quantization: nf4`` in a recipe) loads a
Hugging Face checkpoint with its language-model weights in NF4 with double quantisation and bf16
compute (Dettmers et al. 2023, QLoRA), so a 7B backbone's weights take about 4.5 GB instead of 15.
The vision tower, projector and output head stay in bf16: they are small, and the projector trains.
LoRA adapters (the model's ``lora``) train in bf16 on top of the frozen 4-bit weights.

bitsandbytes' 4-bit kernels need CUDA: on a machine without a GPU this fails at once with a message
saying so, before any weight is read. Install with ``pip install 'radscribe[qlora]'``.
"""

from __future__ import annotations

from typing import Any

import torch

from radscribe.models.config import ModelConfig

# Module names kept out of quantisation (any family): the vision side and the output head.
UNQUANTISED_MODULES = ["vision_tower", "visual", "multi_modal_projector", "lm_head"]


def quantization_config(config: ModelConfig) -> Any | None:
    """transformers' ``BitsAndBytesConfig`` for ``config.quantization``, or None for full-precision weights."""
    if config.quantization is None:
        return None
    if config.device == "cpu" or not torch.cuda.is_available():
        raise RuntimeError(
            f"model '{config.name}': quantization '{config.quantization}' (QLoRA) needs a CUDA GPU; bitsandbytes' "
            "4-bit kernels do not run on CPU. Set quantization to null (model.overrides.quantization=null) to train "
            "the full-precision base with LoRA instead."
        )
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ImportError(
            f"model '{config.name}': quantization '{config.quantization}' needs bitsandbytes: pip install 'radscribe[qlora]'"
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=UNQUANTISED_MODULES,
    )
