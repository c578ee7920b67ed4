"""What the Hugging Face backbone families share: loading a local checkpoint with its processor.

Each family (llava.py, qwen2_5_vl.py, paligemma.py, gemma3.py) encodes examples with the checkpoint's own
processor and chat template; this base loads ``AutoProcessor`` + the family's model class from a
local folder (never a hub id), saves the processor next to the weights, and decodes with its tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from radscribe.models.base import Architecture, RadscribeVLM
from radscribe.models.config import ModelConfig
from radscribe.models.quantization import quantization_config


class HFBackboneVLM(RadscribeVLM):
    model_class_name: ClassVar[str]   # the transformers class, e.g. "LlavaForConditionalGeneration"

    def __init__(self, config: ModelConfig, backbone: nn.Module, processor: Any):
        super().__init__(config, backbone)
        self.processor = processor
        self.tokenizer = processor.tokenizer

    @classmethod
    def _model_class(cls) -> type:
        import transformers

        return getattr(transformers, cls.model_class_name)

    @classmethod
    def create(cls, config: ModelConfig) -> HFBackboneVLM:
        if not config.pretrained_path:
            raise ValueError(
                f"model '{config.name}' ({cls.family}) needs a local checkpoint folder: "
                f"create_model('{config.name}', pretrained_path='/path/to/checkpoint'); nothing is downloaded"
            )
        path = Path(config.pretrained_path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path}: not a Hugging Face checkpoint folder (no config.json)")
        quantized = quantization_config(config)  # fails on CPU before any weight is read
        processor = cls._load_processor(path)
        torch.manual_seed(config.seed)  # any newly initialised weights (memory adapter, LoRA) follow the seed
        placement = {"device_map": {"": torch.cuda.current_device()}} if quantized is not None else {}  # bitsandbytes quantises as it places
        backbone = cls._model_class().from_pretrained(
            str(path), local_files_only=True, dtype=_load_dtype(config), quantization_config=quantized, **placement
        )
        return cls(config, backbone, processor)

    @classmethod
    def _build_for_loading(cls, config: ModelConfig, folder: Path) -> HFBackboneVLM:
        from transformers import AutoConfig

        processor = cls._load_processor(folder)
        hf_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        torch.manual_seed(config.seed)
        backbone = cls._model_class()._from_config(hf_config, dtype=_load_dtype(config))
        return cls(config, backbone, processor)

    @classmethod
    def _load_processor(cls, folder: Path) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(folder), local_files_only=True)

    def _save_tokenizer(self, folder: Path) -> None:
        self.processor.save_pretrained(str(folder))

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    @property
    def eos_token_ids(self) -> list[int]:
        return [int(self.tokenizer.eos_token_id)]

    def decode(self, token_ids: Sequence[int]) -> str:
        ids = list(token_ids)
        for eos in self.eos_token_ids:
            if eos in ids:
                ids = ids[: ids.index(eos)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def chat_prompt(self, num_images: int, prompt: str, fallback: str) -> str:
        """The checkpoint's chat template applied to one user turn, or ``fallback`` when it has none."""
        processor_has_template = hasattr(self.processor, "apply_chat_template") and getattr(self.processor, "chat_template", None)
        template_owner = self.processor if processor_has_template else self.tokenizer
        if not getattr(template_owner, "chat_template", None):
            return fallback
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        return template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _pooled_vision_features(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of each image's tokens as the language model receives them (after projector and memory)."""
        output = self.base_model().model.get_image_features(**vision, return_dict=True)
        return torch.stack([features.reshape(-1, features.shape[-1]).mean(dim=0) for features in output.pooler_output])

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _text_architecture(self, text_config: Any) -> tuple[int, int]:
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
        return text_config.num_hidden_layers, text_config.num_attention_heads * head_dim

    def architecture(self) -> Architecture:
        config = self.base_model().config
        layers, width = self._text_architecture(config.text_config)
        vision = config.vision_config
        return Architecture(layers, width, vision.num_hidden_layers, vision.hidden_size)


def _load_dtype(config: ModelConfig) -> torch.dtype:
    """bf16 weights on cuda (the memory a 3-7 B backbone needs), fp32 on cpu where bf16 matmuls are slow."""
    wants_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return torch.bfloat16 if wants_cuda and config.precision != "fp32" else torch.float32


def pil_images(images: Sequence[Any]) -> list[Any]:
    """Radiographs as RGB PIL images, the input every HF image processor accepts."""
    return [image.to_pil().convert("RGB") for image in images]
