"""radscribe-tiny: the embedded VLM, small enough to train on two CPU cores and ship in the package.

A transformers model of its own (``model_type: radscribe``, registered with ``AutoConfig``,
``AutoModelForImageTextToText``, ``AutoImageProcessor`` and ``AutoTokenizer`` when radscribe is
imported), so ``from_pretrained``, ``generate`` and the KV cache work as for any Hugging Face VLM and
nothing masquerades as another architecture:

- **vision**: an EfficientNet-Lite0 (ImageNet-pretrained when training starts; grayscale stem) on a
  tall letterboxed input, 256 x 416 by default (a spine film at its native resolution). Its stride-16
  and stride-32 maps are merged at stride 16, average-pooled ``token_pool`` (columns, rows), and given
  a learned 2D position embedding: 8 x 26 = 208 image tokens, one token row per 16 px, i.e. more than
  one per vertebra;
- **projector**: a two-layer MLP into the text width (S2D-Align's memory adapter before it when
  ``memory_slots`` > 0);
- **text**: a Qwen2 decoder (256-d x 6 layers, grouped-query attention, tied embeddings) over our
  4,096-token byte-level BPE vocabulary with the ``radscribe`` box codec's location tokens.

Prompt layout: ``<bos> <image>*208 <task_X> prompt <answer> target <eos>``; loss on target + ``<eos>``.
The family wrapper (:class:`RadscribeTiny`) adapts it to radscribe's model interface; the Auto classes
read the same saved folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from tokenizers import Tokenizer
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageTextToText,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2Model,
)
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast

from radscribe.data.images import Radiograph
from radscribe.models.base import IGNORE_INDEX, Architecture, EncodedExample, RadscribeVLM
from radscribe.models.config import ModelConfig
from radscribe.models.efficientnet import EfficientNetLite, load_imagenet_weights
from radscribe.models.image import letterbox
from radscribe.models.memory import MemoryAdapter, VisionBridge
from radscribe.models.processing import RadscribeImageProcessor, save_hf_tokenizer
from radscribe.models.registry import register_family
from radscribe.models.tokenizer import ANSWER, BOS, EOS, IMAGE, PAD, load_tokenizer, save_tokenizer, task_token

DEFAULT_TOKENIZER = Path(__file__).parent / "assets" / "radscribe-tokenizer.json"
TOKEN_STRIDE = 16  # the encoder map image tokens come from


@strict
class RadscribeConfig(PreTrainedConfig):
    """The transformers config of radscribe-tiny (``config.json``): vision fields flat, ``text_config`` a Qwen2 config."""

    model_type = "radscribe"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2")}

    text_config: dict | PreTrainedConfig | None = None
    vision_backbone: str = "efficientnet-lite0"
    image_size: list[int] | None = None        # model input (width, height); radiographs are letterboxed into it
    vision_hidden_size: int = 256
    token_pool: list[int] | None = None        # (columns, rows) of stride-16 cells averaged into one image token
    frozen_vision_stages: int = 2              # encoder stem + stages kept as pretrained during training
    image_token_id: int = 3
    memory_slots: int = 0                      # S2D-Align memory adapter before the projector; 0 = none
    memory_heads: int = 4
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        self.image_size = list(self.image_size or (256, 416))
        self.token_pool = list(self.token_pool or (2, 1))
        super().__post_init__(**kwargs)
        width, height = self.image_size
        columns, rows = self.token_pool
        if width % (TOKEN_STRIDE * columns) or height % (TOKEN_STRIDE * rows):
            raise ValueError(
                f"radscribe config: image_size {self.image_size} must be a multiple of {TOKEN_STRIDE} x token_pool {self.token_pool}"
            )

    @property
    def token_grid(self) -> tuple[int, int]:
        """(columns, rows) of image tokens."""
        width, height = self.image_size
        return width // (TOKEN_STRIDE * self.token_pool[0]), height // (TOKEN_STRIDE * self.token_pool[1])

    @property
    def image_seq_length(self) -> int:
        columns, rows = self.token_grid
        return columns * rows


class RadscribeVisionModel(nn.Module):
    """Grayscale radiograph in [0, 1] -> (batch, image tokens, vision_hidden_size)."""

    def __init__(self, config: RadscribeConfig):
        super().__init__()
        self.encoder = EfficientNetLite(config.vision_backbone, in_channels=1, frozen_stages=config.frozen_vision_stages)
        channels16, channels32 = self.encoder.feature_channels[2:]
        self.lateral16 = nn.Conv2d(channels16, config.vision_hidden_size, 1)
        self.lateral32 = nn.Conv2d(channels32, config.vision_hidden_size, 1)
        self.norm = nn.LayerNorm(config.vision_hidden_size)
        self.pool = tuple(config.token_pool[::-1])  # (rows, columns) for avg_pool2d
        self.position = nn.Parameter(torch.zeros(config.image_seq_length, config.vision_hidden_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        *_, map16, map32 = self.encoder(pixel_values * 2.0 - 1.0)
        merged = self.lateral16(map16) + F.interpolate(self.lateral32(map32), size=map16.shape[-2:], mode="nearest")
        pooled = F.avg_pool2d(merged, self.pool) if self.pool != (1, 1) else merged
        tokens = pooled.flatten(2).transpose(1, 2)  # raster order: row by row, top to bottom
        return self.norm(tokens) + self.position

    def train(self, mode: bool = True) -> RadscribeVisionModel:
        super().train(mode)
        if not any(parameter.requires_grad for parameter in self.encoder.parameters()):
            self.encoder.eval()  # a frozen encoder keeps its batch-norm statistics
        return self


class RadscribeProjector(nn.Module):
    def __init__(self, vision_width: int, text_width: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_width, text_width)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(text_width, text_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(tokens)))


class RadscribePreTrainedModel(PreTrainedModel):
    config: RadscribeConfig
    config_class = RadscribeConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, RadscribeVisionModel):
            init.normal_(module.position, mean=0.0, std=0.02)
        elif isinstance(module, MemoryAdapter):
            init.normal_(module.memory, mean=0.0, std=module.memory.shape[-1] ** -0.5)
            init.zeros_(module.gate)  # a fresh adapter is the identity
        else:
            super()._init_weights(module)


class RadscribeForConditionalGeneration(RadscribePreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "language_model.embed_tokens.weight"}

    def __init__(self, config: RadscribeConfig):
        super().__init__(config)
        text = config.text_config
        self.vision_model = RadscribeVisionModel(config)
        self.multi_modal_projector: nn.Module = RadscribeProjector(config.vision_hidden_size, text.hidden_size)
        self.language_model = Qwen2Model(text)
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        self.post_init()
        if config.memory_slots:
            # Added after the seeded initialisation of everything else, so a model with the adapter starts
            # with exactly the weights of one without it (and, its gate at zero, computes the same).
            memory = MemoryAdapter(config.vision_hidden_size, config.memory_slots, config.memory_heads)
            self.multi_modal_projector = VisionBridge(self.multi_modal_projector, memory)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, image tokens, text width): what replaces the ``<image>`` placeholders."""
        return self.multi_modal_projector(self.vision_model(pixel_values))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            features = self.get_image_features(pixel_values).to(inputs_embeds.dtype)
            placeholders = (input_ids == self.config.image_token_id).unsqueeze(-1)
            if int(placeholders.sum()) != features.shape[0] * features.shape[1]:
                raise ValueError(
                    f"{int(placeholders.sum())} <image> tokens in the input for {features.shape[0]} images of "
                    f"{features.shape[1]} tokens each"
                )
            inputs_embeds = inputs_embeds.masked_scatter(placeholders, features)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, use_cache=use_cache, **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=outputs.past_key_values)


AutoConfig.register("radscribe", RadscribeConfig, exist_ok=True)
AutoModelForImageTextToText.register(RadscribeConfig, RadscribeForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(RadscribeConfig, RadscribeImageProcessor, exist_ok=True)


@register_family
class RadscribeTiny(RadscribeVLM):
    family = "radscribe"
    lora_target_modules = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

    def __init__(self, config: ModelConfig, backbone: RadscribeForConditionalGeneration, tokenizer: Tokenizer):
        super().__init__(config, backbone)
        self.tokenizer = tokenizer
        self._ids = {token: tokenizer.token_to_id(token) for token in (BOS, EOS, PAD, IMAGE, ANSWER)}

    @classmethod
    def create(cls, config: ModelConfig, tokenizer: Tokenizer | None = None, pretrained_vision: bool | None = None) -> RadscribeTiny:
        """A freshly initialised model (deterministic from ``config.seed``) with the shipped tokenizer by default.

        ``pretrained_vision`` (default: the config's ``vision.pretrained``) starts the encoder from the
        ImageNet weights of the ``train`` extra.
        """
        tokenizer = tokenizer or load_tokenizer(DEFAULT_TOKENIZER)
        torch.manual_seed(config.seed)
        backbone = RadscribeForConditionalGeneration(hf_config(config, tokenizer))
        if config.vision.get("pretrained", False) if pretrained_vision is None else pretrained_vision:
            load_imagenet_weights(backbone.vision_model.encoder)
        return cls(config, backbone, tokenizer)

    @classmethod
    def _build_for_loading(cls, config: ModelConfig, folder: Path) -> RadscribeTiny:
        tokenizer = load_tokenizer(folder)
        return cls(config, RadscribeForConditionalGeneration(RadscribeConfig.from_pretrained(str(folder))), tokenizer)

    def _save_tokenizer(self, folder: Path) -> None:
        save_hf_tokenizer(self.tokenizer, folder)
        save_tokenizer(self.tokenizer, folder)  # after: tokenizer.json stays byte-for-byte ours
        self.image_processor().save_pretrained(str(folder))
        self.backbone.generation_config.save_pretrained(str(folder))

    def image_processor(self) -> RadscribeImageProcessor:
        return RadscribeImageProcessor(image_size=list(self.base_model().config.image_size))

    def _install_memory(self) -> None:
        if not isinstance(self._projector_module(), VisionBridge):  # built into the backbone from its config
            super()._install_memory()

    # ----- encoding -----------------------------------------------------------------------------
    @property
    def image_tokens_per_image(self) -> int:
        return self.base_model().config.image_seq_length

    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        size = tuple(self.base_model().config.image_size)
        pixels = torch.stack([letterbox(image, size)[0] for image in images])
        prefix = [self._ids[BOS]] + [self._ids[IMAGE]] * (self.image_tokens_per_image * len(images))
        token = task_token(task) if task else None
        if token is not None:
            prefix.append(self.tokenizer.token_to_id(token))
        prefix += self.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []
        prefix.append(self._ids[ANSWER])
        vision = {"pixel_values": pixels}
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
        return self.base_model().vision_model

    def _projector_slot(self) -> tuple[nn.Module, str]:
        return self.base_model(), "multi_modal_projector"

    def _vision_width(self) -> int:
        return int(self.base_model().config.vision_hidden_size)

    def _pooled_vision_features(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.vision_tower()(vision["pixel_values"]).mean(dim=1)

    @torch.no_grad()
    def patch_features(self, image: Radiograph) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
        """The image tokens of one radiograph as an (rows, columns, width) grid, and the part of the image
        it covers (normalised xyxy; beyond [0, 1] where the grid reaches into the letterbox padding)."""
        config = self.base_model().config
        pixels, fitted = letterbox(image, tuple(config.image_size))
        was_training = self.training
        self.eval()
        try:
            tokens = self.vision_tower()(pixels[None].to(self.device))[0]
        finally:
            self.train(was_training)
        columns, rows = config.token_grid
        content_w, content_h = fitted.content_size
        input_w, input_h = fitted.input_size
        extent = (-fitted.pad_x / content_w, -fitted.pad_y / content_h,
                  (input_w - fitted.pad_x) / content_w, (input_h - fitted.pad_y) / content_h)
        return tokens.reshape(rows, columns, -1).float().cpu(), extent

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        return int(vision["pixel_values"].shape[0]) * self.image_tokens_per_image

    def architecture(self) -> Architecture:
        text = self.base_model().config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        # The vision tower is convolutional: no attention layers to count.
        return Architecture(text_layers=text.num_hidden_layers, text_attention_width=text.num_attention_heads * head_dim,
                            vision_layers=0, vision_attention_width=0)


def hf_config(config: ModelConfig, tokenizer: Tokenizer) -> RadscribeConfig:
    """The transformers config of a radscribe-tiny ModelConfig (its ``vision`` and ``text`` sections)."""
    ids = {token: tokenizer.token_to_id(token) for token in (BOS, EOS, PAD, IMAGE)}
    vision = {key: value for key, value in config.vision.items() if key != "pretrained"}
    known = {"backbone", "hidden_size", "token_pool", "frozen_stages"}
    unknown = sorted(set(vision) - known)
    if unknown:
        raise ValueError(f"model config '{config.name}': unknown vision field(s) {unknown}; known: {sorted(known | {'pretrained'})}")
    text = Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(), tie_word_embeddings=True,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], **config.text,
    )
    hf = RadscribeConfig(
        text_config=text, vision_backbone=vision.get("backbone", "efficientnet-lite0"),
        image_size=list(config.input_size), vision_hidden_size=vision.get("hidden_size", 256),
        token_pool=list(vision.get("token_pool", (2, 1))), frozen_vision_stages=vision.get("frozen_stages", 2),
        image_token_id=ids[IMAGE], memory_slots=config.memory_slots, memory_heads=config.memory_heads,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD],
    )
    return hf
