"""RadscribeVLM: the one interface every model family implements.

A family (one file each: radscribe_tiny.py, llava.py, qwen2_5_vl.py, paligemma.py, gemma3.py) wraps a
transformers ``*ForConditionalGeneration`` backbone, so all of them share transformers' generate()
and KV cache. A family supplies how one example is encoded (its own prompt layout or chat template)
and where its vision tower and projector live; this base class does the rest the same way for all:
batching and padding, loss masking, generation, pooled image embeddings, freezing, LoRA, the memory
adapter, gradient checkpointing, devices and precision, parameter and FLOP counts, and saving to / loading from a folder.

Saved folder layout (any family): ``radscribe.json`` (ModelConfig), ``config.json`` (the backbone's
transformers config), the tokenizer or processor files, and ``model.safetensors`` (the whole adapted
backbone: memory adapter and LoRA weights included, tied weights stored once).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from radscribe.data.images import Radiograph
from radscribe.models.config import ModelConfig, load_config
from radscribe.models.image import as_radiograph
from radscribe.models.memory import MemoryAdapter, VisionBridge

WEIGHTS_FILE = "model.safetensors"
IGNORE_INDEX = -100


@dataclass
class EncodedExample:
    """One example as token ids plus its image tensors (concatenated along dim 0 when batching)."""

    input_ids: list[int]
    labels: list[int] | None = None
    # Per-token integer side inputs a backbone needs (PaliGemma's token_type_ids, Qwen2.5-VL's
    # mm_token_type_ids); padded with 0.
    token_types: dict[str, list[int]] = field(default_factory=dict)
    vision: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Architecture:
    """The shapes the FLOP estimate needs."""

    text_layers: int
    text_attention_width: int
    vision_layers: int
    vision_attention_width: int


@dataclass(frozen=True)
class _Query:
    """A generation request in the shape collate() reads (images, prompt, task)."""

    images: tuple[Radiograph, ...]
    prompt: str
    task: str = ""
    target: str = ""


class RadscribeVLM(nn.Module):
    family: ClassVar[str]
    # transformers model_type values whose plain checkpoint folders this family reads (create_model(folder)).
    hf_model_types: ClassVar[tuple[str, ...]] = ()
    # Language-model linear layers LoRA adapts by default (a regex, so vision layers of the same name stay untouched).
    lora_target_modules: ClassVar[str]

    def __init__(self, config: ModelConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        if config.memory_slots:
            self._install_memory()
        if config.freeze_vision:
            self.freeze_vision()
        if config.lora is not None:
            self.add_lora(**config.lora)
        if config.gradient_checkpointing:
            self.enable_gradient_checkpointing()
        self.to(self.configured_device())

    # ----- what a family provides -------------------------------------------------------------
    def encode_example(self, images: Sequence[Radiograph], prompt: str, target: str | None, task: str) -> EncodedExample:
        raise NotImplementedError

    def vision_tower(self) -> nn.Module:
        raise NotImplementedError

    def _projector_slot(self) -> tuple[nn.Module, str]:
        """(parent module, attribute name) of the projector the memory adapter is placed before."""
        raise NotImplementedError

    def _vision_width(self) -> int:
        raise NotImplementedError

    def _pooled_vision_features(self, vision: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n_images, vision width): the vision tower's patch features averaged per image."""
        raise NotImplementedError

    def _vision_tokens(self, vision: dict[str, torch.Tensor]) -> int:
        """Patch tokens the vision tower processes for these inputs (all images together)."""
        raise NotImplementedError

    def architecture(self) -> Architecture:
        raise NotImplementedError

    @property
    def pad_token_id(self) -> int:
        raise NotImplementedError

    @property
    def eos_token_ids(self) -> list[int]:
        raise NotImplementedError

    def decode(self, token_ids: Sequence[int]) -> str:
        raise NotImplementedError

    def _save_tokenizer(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _build_for_loading(cls, config: ModelConfig, folder: Path) -> RadscribeVLM:
        """The family's structure from a saved folder, before its weights are loaded."""
        raise NotImplementedError

    # ----- identity -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def codec_name(self) -> str:
        return self.config.codec

    def configured_device(self) -> torch.device:
        """Where the config asks the model to be built ("auto": cuda when available, else cpu)."""
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    @property
    def device(self) -> torch.device:
        """Where the weights are now (inputs go there), whatever the config said when the model was built."""
        return next(self.parameters()).device

    def base_model(self) -> nn.Module:
        """The transformers model itself (under a peft wrapper when LoRA is on)."""
        from_peft = getattr(self.backbone, "get_base_model", None)
        return from_peft() if from_peft is not None else self.backbone

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on cuda (precision auto or bf16), bf16 on cpu only when asked; fp32 otherwise."""
        device = self.device.type
        wants_bf16 = self.config.precision == "bf16" or (self.config.precision == "auto" and device == "cuda")
        if wants_bf16:
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----- batching -----------------------------------------------------------------------------
    def collate(self, examples: Sequence[Any], with_targets: bool = True) -> dict[str, torch.Tensor]:
        """Examples (anything with ``images``, ``prompt``, ``target``, ``task``) -> a model batch.

        Training batches are right-padded with ``labels`` = -100 on image, prompt and pad tokens, so
        the loss covers only target tokens (and the closing end-of-sequence token). Generation
        batches (``with_targets=False``) are left-padded so every row ends where generation begins.
        """
        if not examples:
            raise ValueError("collate needs at least one example")
        encoded = []
        for index, example in enumerate(examples):
            paths = tuple(example.images)[: self.config.max_images]
            if not paths:
                raise ValueError(f"example {index} ({getattr(example, 'study_id', '?')}): has no image")
            images = [as_radiograph(image) for image in paths]
            target = example.target if with_targets else None
            item = self.encode_example(images, example.prompt, target, getattr(example, "task", "") or "")
            encoded.append(self._truncate(item))
        return self._pad(encoded, left=not with_targets)

    def _truncate(self, item: EncodedExample) -> EncodedExample:
        image_tokens = sum(1 for token in item.input_ids if token == self.image_token_id)
        limit = self.config.max_length + image_tokens
        if len(item.input_ids) <= limit:
            return item
        labels = None if item.labels is None else item.labels[:limit]
        types = {key: values[:limit] for key, values in item.token_types.items()}
        return EncodedExample(item.input_ids[:limit], labels, types, item.vision)

    @property
    def image_token_id(self) -> int:
        return int(self.base_model().config.image_token_id)

    def _pad(self, items: list[EncodedExample], left: bool) -> dict[str, torch.Tensor]:
        width = max(len(item.input_ids) for item in items)

        def pad(values: list[int], fill: int) -> list[int]:
            padding = [fill] * (width - len(values))
            return padding + values if left else values + padding

        batch = {
            "input_ids": torch.tensor([pad(item.input_ids, self.pad_token_id) for item in items]),
            "attention_mask": torch.tensor([pad([1] * len(item.input_ids), 0) for item in items]),
        }
        if items[0].labels is not None:
            batch["labels"] = torch.tensor([pad(item.labels, IGNORE_INDEX) for item in items])
        for key in items[0].token_types:
            batch[key] = torch.tensor([pad(item.token_types[key], 0) for item in items])
        for key in items[0].vision:
            batch[key] = torch.cat([item.vision[key] for item in items], dim=0)
        return batch

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device) for key, value in batch.items()}

    # ----- running ------------------------------------------------------------------------------
    def forward(self, **batch: torch.Tensor) -> Any:
        """The backbone's output (``.loss`` when ``labels`` are given, ``.logits``)."""
        with self.autocast():
            return self.backbone(**self._to_device(batch))

    @torch.no_grad()
    def generate(
        self,
        images: Sequence[Radiograph | Path | str | Sequence[Radiograph | Path | str]],
        prompts: Sequence[str],
        max_new_tokens: int = 256,
        tasks: Sequence[str] | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Greedy (unless told otherwise) decoding with the KV cache; one string per prompt.

        ``images[i]`` is one image or a sequence of images for prompt i.
        """
        if len(images) != len(prompts):
            raise ValueError(f"generate got {len(images)} images for {len(prompts)} prompts")
        tasks = list(tasks) if tasks is not None else [""] * len(prompts)
        queries = []
        for image, prompt, task in zip(images, prompts, tasks):
            group = image if isinstance(image, (list, tuple)) else (image,)
            queries.append(_Query(tuple(as_radiograph(item) for item in group), prompt, task))
        batch = self._to_device(self.collate(queries, with_targets=False))
        generate_kwargs.setdefault("do_sample", False)
        # one process generates alone, also with an FSDP-sharded model gathered whole (the trainer's
        # validation); transformers would otherwise wait for every other rank at each token
        generate_kwargs.setdefault("synced_gpus", False)
        was_training = self.training
        self.eval()
        try:
            with self.autocast():
                output = self.backbone.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=self.pad_token_id,
                    eos_token_id=self.eos_token_ids,
                    **generate_kwargs,
                )
        finally:
            self.train(was_training)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return [self.decode(row.tolist()) for row in new_tokens]

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[Radiograph | Path | str]) -> torch.Tensor:
        """(n_images, vision width) L2-normalised mean of the vision tower's patch features (for retrieval)."""
        queries = [_Query((as_radiograph(image),), "") for image in images]
        batch = self.collate(queries, with_targets=False)
        vision = {key: value.to(self.device) for key, value in batch.items() if key not in _TEXT_KEYS}
        was_training = self.training
        self.eval()  # batch norm and stochastic depth would make an image's embedding depend on its batch
        try:
            with self.autocast():
                pooled = self._pooled_vision_features(vision)
        finally:
            self.train(was_training)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    # ----- what trains --------------------------------------------------------------------------
    def freeze_vision(self) -> None:
        """Stop gradients into the vision tower (the projector and memory adapter keep training)."""
        for parameter in self.vision_parameters():
            parameter.requires_grad_(False)
        self.config.freeze_vision = True

    def vision_parameters(self) -> list[nn.Parameter]:
        """The vision encoder's own parameters (Qwen2.5-VL keeps its projector inside the tower: excluded)."""
        bridge = {id(p) for p in self._projector_module().parameters()}
        return [p for p in self.vision_tower().parameters() if id(p) not in bridge]

    def add_lora(self, **peft_kwargs: Any) -> None:
        """Wrap the backbone with peft LoRA on the language model; projector and memory stay trainable.

        Defaults: r=8, lora_alpha=16, lora_dropout=0.05, target_modules = the family's language-model
        linear layers. The kwargs are recorded in the config so a saved model rebuilds the same structure.
        """
        from peft import LoraConfig, get_peft_model

        if hasattr(self.backbone, "get_base_model"):
            raise RuntimeError(f"model '{self.name}' already has LoRA adapters")
        options = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": self.lora_target_modules, **peft_kwargs}
        bridge_trainable = {name for name, p in self._projector_module().named_parameters() if p.requires_grad}
        self.backbone = get_peft_model(self.backbone, LoraConfig(**options))
        for name, parameter in self._projector_module().named_parameters():
            parameter.requires_grad_(name in bridge_trainable)
        self.config.lora = dict(peft_kwargs)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each language-model layer's activations in the backward pass instead of keeping them.

        transformers' ``activation_checkpointing_enable`` on the language model, non-reentrant (so it
        works with frozen embeddings and LoRA, where no layer input requires grad). Activation memory
        falls from every layer's intermediates to one hidden state per layer, for one more forward.
        """
        language = next((m for name, m in self.base_model().named_modules() if name.split(".")[-1] == "language_model"), None)
        if language is None or not getattr(language, "supports_gradient_checkpointing", False):
            raise ValueError(f"model '{self.name}' ({self.family}): its language model does not support gradient checkpointing")
        language.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.config.gradient_checkpointing = True

    def _projector_module(self) -> nn.Module:
        parent, attribute = self._projector_slot()
        return getattr(parent, attribute)

    def _install_memory(self) -> None:
        parent, attribute = self._projector_slot()
        projector = getattr(parent, attribute)
        memory = MemoryAdapter(self._vision_width(), self.config.memory_slots, self.config.memory_heads)
        setattr(parent, attribute, VisionBridge(projector, memory))

    @property
    def memory(self) -> MemoryAdapter | None:
        projector = self._projector_module()
        return projector.memory if isinstance(projector, VisionBridge) else None

    # ----- sizes --------------------------------------------------------------------------------
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Distinct parameters (tied weights counted once)."""
        seen: set[int] = set()
        total = 0
        for parameter in self.parameters():
            if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
                continue
            seen.add(id(parameter))
            total += parameter.numel()
        return total

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters by part: vision tower, bridge (memory + projector), language model, output head."""
        model = self.base_model()
        vision = {id(p) for p in self.vision_parameters()}
        bridge = {id(p) for p in self._projector_module().parameters()}
        embedding = {id(p) for p in model.get_input_embeddings().parameters()}
        head = {id(p) for p in model.get_output_embeddings().parameters()} - embedding
        counts = {"vision": 0, "bridge": 0, "embedding": 0, "lm_head": 0, "language": 0}
        seen: set[int] = set()
        for parameter in self.parameters():
            key = id(parameter)
            if key in seen:
                continue
            seen.add(key)
            part = ("vision" if key in vision else "bridge" if key in bridge else "embedding" if key in embedding
                    else "lm_head" if key in head else "language")
            counts[part] += parameter.numel()
        return counts

    def estimate_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Approximate training FLOPs (forward + backward) for one step on ``batch``.

        Dense layers: 2 FLOPs per parameter per token forward, 2 more for gradients w.r.t. inputs
        and 2 more for gradients w.r.t. weights when those train (the 6 N T rule): language model
        (non-embedding + the output projection, tied or not) over every text position, bridge and
        vision tower over every patch; a frozen vision tower costs forward only (2 N T), since
        nothing upstream of it needs gradients. Attention: 4 L^2 d per layer per sequence forward
        (QK^T and AV), times 3 for forward + backward (masking not discounted). Padding positions
        are counted: they are computed.
        """
        arch = self.architecture()
        parts = self.parameter_breakdown()
        model = self.base_model()
        vocab, width = model.get_output_embeddings().weight.shape
        sequences, length = batch["input_ids"].shape
        text_tokens = sequences * length
        vision = {key: value for key, value in batch.items() if key not in _TEXT_KEYS}
        patches = self._vision_tokens(vision)
        images = max(1, self._num_images(vision))
        vision_trainable = any(p.requires_grad for p in self.vision_parameters())
        dense_text = 6 * (parts["language"] + vocab * width) * text_tokens
        dense_bridge = 6 * parts["bridge"] * patches
        dense_vision = (6 if vision_trainable else 2) * parts["vision"] * patches
        attention_text = 12 * arch.text_layers * arch.text_attention_width * length**2 * sequences
        per_image = patches / images
        attention_vision = (12 if vision_trainable else 4) * arch.vision_layers * arch.vision_attention_width * per_image**2 * images
        return float(dense_text + dense_bridge + dense_vision + attention_text + attention_vision)

    def _num_images(self, vision: dict[str, torch.Tensor]) -> int:
        return int(next(iter(vision.values())).shape[0]) if vision else 0

    # ----- saving -------------------------------------------------------------------------------
    def save_pretrained(self, folder: Path | str, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write radscribe.json, config.json, tokenizer/processor files and model.safetensors.

        ``state``: this model's full ``state_dict()`` to write instead of its own parameters, for a
        model whose parameters are sharded across processes (FSDP gathers them into one).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        self.base_model().config.to_json_file(str(folder / "config.json"))
        self._save_tokenizer(folder)
        dtype = torch.bfloat16 if self.config.save_dtype == "bfloat16" else torch.float32
        if state is None:
            weights = _unique_state(self.backbone)
        else:  # the backbone's entries, with tied names (one parameter, several names) kept once as _unique_state does
            names = {id(p): name for name, p in self.backbone.named_parameters()}  # the first name of each parameter
            tied = {name for name, p in self.backbone.named_parameters(remove_duplicate=False) if names[id(p)] != name}
            prefix = "backbone."
            weights = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix) and key[len(prefix):] not in tied}
        tensors = {name: value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
                   for name, value in weights.items()}
        save_weights(tensors, folder / WEIGHTS_FILE, {"format": "pt", "radscribe_family": self.family})
        return folder

    @classmethod
    def from_pretrained(cls, folder: Path | str, **overrides: Any) -> RadscribeVLM:
        """Load a folder written by save_pretrained of this family (``overrides`` e.g. device);
        ``radscribe.models.create_model(folder)`` picks the family for you."""
        folder = Path(folder)
        config = load_config(folder)
        if config.family != cls.family:
            raise ValueError(f"{folder}: a '{config.family}' model, not '{cls.family}' (load it with create_model)")
        if overrides:
            structural = {"family", "memory_slots", "memory_heads", "lora", "vision", "text", "image_size"}
            if structural & set(overrides):
                raise ValueError(f"{folder}: cannot override structural fields {sorted(structural & set(overrides))} when loading")
            config = config.replace(**overrides)
        model = cls._build_for_loading(config, folder)
        model.load_weights(folder / WEIGHTS_FILE)
        return model

    def load_weights(self, path: Path | str) -> None:
        """Load model.safetensors into this structure; every parameter must be covered (tied ones once)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no weights file")
        state = load_file(str(path), device=str(self.device))
        own = self.backbone.state_dict()
        unexpected = sorted(set(state) - set(own))
        if unexpected:
            raise ValueError(f"{path}: weights for parameters this model does not have: {unexpected[:5]}")
        for name, value in state.items():
            if value.shape != own[name].shape:
                raise ValueError(f"{path}: '{name}' has shape {tuple(value.shape)}, the model expects {tuple(own[name].shape)}")
            state[name] = value.to(own[name].dtype)
        self.backbone.load_state_dict(state, strict=False)
        loaded = {own[name].data_ptr() for name in state}
        missing = sorted(name for name, value in own.items() if name not in state and value.data_ptr() not in loaded)
        if missing:
            raise ValueError(f"{path}: no weights for {missing[:5]}{' ...' if len(missing) > 5 else ''}")


_TEXT_KEYS = frozenset({"input_ids", "attention_mask", "labels", "token_type_ids", "mm_token_type_ids"})


def _unique_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tensors that share storage (tied embeddings) kept once, under their first name."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    unique = {}
    for name, value in module.state_dict().items():
        key = (value.data_ptr(), tuple(value.shape))
        if key in seen:
            continue
        seen.add(key)
        unique[name] = value
    return unique


def describe_size(model: RadscribeVLM) -> dict[str, Any]:
    """Parameter counts and weight-file sizes, for reports and benchmarks."""
    total = model.num_parameters()
    return {
        "parameters": total,
        "trainable_parameters": model.num_parameters(trainable_only=True),
        "breakdown": model.parameter_breakdown(),
        "weights_mb_fp32": round(total * 4 / 1e6, 2),
        "weights_mb_bf16": round(total * 2 / 1e6, 2),
    }


def save_weights(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically: a temporary file beside ``path``, then a rename, so a crash
    never leaves a half-written weights file where a loader would find it."""
    from safetensors.torch import save_file

    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
