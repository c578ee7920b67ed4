"""radscribe-tiny: the embedded VLM, small enough to train on two CPU cores and ship in 25 MB.

Built from transformers' own classes, so generation, the KV cache and saving work exactly as for
the big backbones: ``LlavaForConditionalGeneration`` with a grayscale SigLIP vision tower
(``num_channels=1``: radiographs are not replicated to RGB) and a Qwen2 decoder. The LLaVA MLP
projector is replaced by a 2x2 pixel-shuffle projector: 196 patches become 49 image tokens, which
keeps both training steps and per-token decoding cheap while no patch feature is dropped.

Sizes (configs/radscribe-tiny.yaml), chosen for the CPU budget: vision 192-d x 6 layers (SigLIP at
224 px / patch 16 resolves about one patch row per vertebra on a letterboxed spine film), decoder
256-d x 6 layers with grouped-query attention (2 KV heads halve the cache), vocabulary 4,096 with
tied input/output embeddings. About 10 M parameters: 20 MB as bf16 safetensors.

Prompt layout: ``<bos> <image>*49 <task_X> prompt <answer> target <eos>``; loss on target + <eos>.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.base import IGNORE_INDEX, Architecture, EncodedExample, RadscribeVLM
from radscribe.models.config import ModelConfig
from radscribe.models.image import letterbox
from radscribe.models.memory import PixelShuffleProjector, VisionBridge
from radscribe.models.registry import register_family
from radscribe.models.tokenizer import ANSWER, BOS, EOS, IMAGE, PAD, load_tokenizer, save_tokenizer, task_token

DEFAULT_TOKENIZER = Path(__file__).parent / "assets" / "radscribe-tokenizer.json"


@register_family
class RadscribeTiny(RadscribeVLM):
    family = "radscribe"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    def __init__(self, config: ModelConfig, backbone: nn.Module, tokenizer: Tokenizer):
        super().__init__(config, backbone)
        self.tokenizer = tokenizer
        self._ids = {token: tokenizer.token_to_id(token) for token in (BOS, EOS, PAD, IMAGE, ANSWER)}

    @classmethod
    def create(cls, config: ModelConfig, tokenizer: Tokenizer | None = None) -> RadscribeTiny:
        """A freshly initialised model (deterministic from ``config.seed``) with the shipped tokenizer by default."""
        tokenizer = tokenizer or load_tokenizer(DEFAULT_TOKENIZER)
        return cls(config, _build_backbone(config, tokenizer, None), tokenizer)

    @classmethod
    def _build_for_loading(cls, config: ModelConfig, folder: Path) -> RadscribeTiny:
        from transformers import LlavaConfig

        tokenizer = load_tokenizer(folder)
        return cls(config, _build_backbone(config, tokenizer, LlavaConfig.from_pretrained(str(folder))), tokenizer)

    def _save_tokenizer(self, folder: Path) -> None:
        save_tokenizer(self.tokenizer, folder)

    # ----- encoding -----------------------------------------------------------------------------
    @property
    def image_tokens_per_image(self) -> int:
        return self._pixel_shuffle().tokens_per_image

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        pixels = torch.stack([letterbox(image, self.config.image_size)[0] for image in images])
        prefix = [self._ids[BOS]] + [self._ids[IMAGE]] * (self.image_tokens_per_image * len(images))
        token = task_token(task) if task else None
        if token is not None:
            prefix.append(self.tokenizer.token_to_id(token))
        prefix += self.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []
        prefix.append(self._ids[ANSWER])
        vision = {"pixel_values": (pixels - 0.5) / 0.5}  # SigLIP expects [-1, 1]
        if target is None:
            return EncodedExample(prefix, vision=vision)
        answer = self.tokenizer.encode(target, add_special_tokens=False).ids + [self._ids[EOS]]
        return EncodedExample(prefix + answer, [IGNORE_INDEX] * len(prefix) + answer, vision=vision)

    @property
    def pad_token_id(self) -> int:
        return self._ids[PAD]

    @property
    def eos_token_ids(self) -> list[int]:
        return [self._ids[EOS]]

    def decode(self, token_ids: Sequence[int]) -> str:
        ids = list(token_ids)
        if self._ids[EOS] in ids:
            ids = ids[: ids.index(self._ids[EOS])]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # ----- structure ----------------------------------------------------------------------------
    def vision_tower(self) -> nn.Module:
        return self.base_model().model.vision_tower

    def _projector_slot(self) -> tuple[nn.Module, str]:
        return self.base_model().model, "multi_modal_projector"

    def _pixel_shuffle(self) -> PixelShuffleProjector:
        projector = self._projector_module()
        return projector.projector if isinstance(projector, VisionBridge) else projector

    def _vision_width(self) -> int:
        return int(self.base_model().config.vision_config.hidden_size)

    def _pooled_vision_features(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.vision_tower()(vision["pixel_values"]).last_hidden_state.mean(dim=1)

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        return int(vision["pixel_values"].shape[0]) * self._pixel_shuffle().grid ** 2

    def architecture(self) -> Architecture:
        config = self.base_model().config
        text = config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return Architecture(
            text_layers=text.num_hidden_layers,
            text_attention_width=text.num_attention_heads * head_dim,
            vision_layers=config.vision_config.num_hidden_layers,
            vision_attention_width=config.vision_config.hidden_size,
        )


def _build_backbone(config: ModelConfig, tokenizer: Tokenizer, llava_config) -> nn.Module:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, Qwen2Config, SiglipVisionConfig

    patch = int(config.vision.get("patch_size", 16))
    if config.image_size % patch:
        raise ValueError(f"model '{config.name}': image_size {config.image_size} is not a multiple of patch_size {patch}")
    grid = config.image_size // patch
    if llava_config is None:
        ids = {token: tokenizer.token_to_id(token) for token in (BOS, EOS, PAD, IMAGE)}
        vision = SiglipVisionConfig(num_channels=1, image_size=config.image_size, **config.vision)
        text = Qwen2Config(
            vocab_size=tokenizer.get_vocab_size(), tie_word_embeddings=True,
            bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], **config.text,
        )
        llava_config = LlavaConfig(
            vision_config=vision, text_config=text, image_token_id=ids[IMAGE],
            vision_feature_layer=-1, vision_feature_select_strategy="full",
            image_seq_length=(grid // config.pixel_shuffle) ** 2, tie_word_embeddings=True,
        )
    torch.manual_seed(config.seed)
    model = LlavaForConditionalGeneration(llava_config)
    model.model.multi_modal_projector = PixelShuffleProjector(
        llava_config.vision_config.hidden_size, llava_config.text_config.hidden_size, grid, config.pixel_shuffle
    )
    text = llava_config.text_config
    model.generation_config.bos_token_id = text.bos_token_id
    model.generation_config.eos_token_id = text.eos_token_id
    model.generation_config.pad_token_id = text.pad_token_id
    return model
