"""What a training recipe will cost before it starts: memory per GPU and step time, from configs alone.

``radscribe plan RECIPE --gpus N [--nodes M]`` builds the recipe's model on PyTorch's *meta* device
(shapes, no storage, nothing read but ``config.json``) with the recipe's freezing, memory adapter and
LoRA, counts its parameters by part, and prices five ways to train it on ``N x M`` GPUs:

- **full, DDP**: every parameter trains; each GPU holds the weights, gradients, AdamW's two moments
  and DDP's gradient buckets (one more copy of the gradients);
- **full, FSDP**: the same, fully sharded (FSDP ``FULL_SHARD`` / ``fully_shard``): weights, gradients
  and moments divided by the number of GPUs, plus two gathered layers (the one computing and the one
  being prefetched);
- **LoRA, DDP**: the recipe's LoRA adapters (rank from the recipe, default 8), projector and memory
  adapter train; the rest is frozen;
- **LoRA, FSDP**: the same, fully sharded: the frozen base is divided by the number of GPUs too
  (``fully_shard`` shards frozen parameters; they get no gradient or optimiser state);
- **QLoRA, DDP**: LoRA over a base whose language-model linear weights are 4-bit NF4 with double
  quantisation (4.127 bits a weight, :mod:`radscribe.models.quantization`).

Byte counts follow what radscribe does on CUDA: weights load in bf16 (``hf_common._load_dtype``);
parameters created by radscribe or peft (LoRA, memory adapter) are fp32; gradients and AdamW moments
take their parameter's dtype (``torch.optim.AdamW``, as ``train.optim`` builds it).

Activations (what autograd keeps for the backward pass), per token, from the tensors transformers'
decoder layers save (pre-norm, grouped-query attention through SDPA without a stored score matrix,
gated MLP, RMSNorm computed in fp32), checked against the saved tensors of real models in
``benchmarks/plan_vs_measured.py``:

- a layer without checkpointing keeps its normalised inputs, q/k/v/attention output, the MLP's gate,
  up and activation and, where weights train, the inputs of each linear layer (LoRA with dropout
  keeps a dropped-out copy and its mask per adapted layer);
- with gradient checkpointing a layer keeps only its input hidden state, and one layer's full set
  lives again while it is recomputed in the backward pass;
- the output head keeps the fp32 log-softmax over the whole vocabulary for every position, and the
  bf16 logits plus their fp32 copy exist together at the loss: for MedGemma's 262k vocabulary that is
  2.6 MB a token, more than all 34 checkpointed layers together.

The frozen vision tower keeps nothing (no gradient flows into it); a trainable one is priced like a
layer stack of its own width.

Step time: the training FLOPs of one optimiser step (6 per parameter per token for trained dense
layers, 4 for frozen ones that still pass gradients back, 2 for the frozen vision tower; attention
12 L s^2 d; the rule of :meth:`radscribe.models.RadscribeVLM.estimate_flops`), times 4/3 with
checkpointing (one more forward), divided by the GPUs' dense bf16 peak times a utilisation. The
default utilisation, 0.40, is what bf16 fine-tuning of 4-8B transformers with SDPA attention
typically sustains on H100/H200-class GPUs (30-45 % model FLOP utilisation in published runs);
``benchmarks/gpu_check.py`` measures it. The peak defaults to 989 TFLOP/s (H100/H200 SXM, dense bf16).

Not modelled: the CUDA context and allocator fragmentation (budget 1-3 GB a GPU), the
data loader, and evaluation-time generation (the KV cache).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from radscribe.train.config import TrainConfig

SHAPES_DIR = Path(__file__).parent / "shapes"
GIB = 1024**3
DEFAULT_PEAK_TFLOPS = 989.0
DEFAULT_UTILISATION = 0.40
NF4_BYTES = 4.127 / 8  # 4-bit weights + one fp8 absmax per 64 weights + one fp32 per 256 of those (double quantisation)
STRATEGIES = ("full, DDP", "full, FSDP", "LoRA, DDP", "LoRA, FSDP", "QLoRA, DDP")


# ----------------------------------------------------------------------------------------------- shapes


def reference_shapes() -> dict[str, Path]:
    """The backbone architectures shipped for planning without weights (``--backbone NAME``)."""
    return {path.stem: path for path in sorted(SHAPES_DIR.glob("*.json"))}


def backbone_config(source: str | Path) -> Any:
    """A transformers config from a shipped shape name, a ``config.json`` or a checkpoint folder."""
    from transformers import AutoConfig

    shapes = reference_shapes()
    if isinstance(source, str) and source in shapes:
        path = shapes[source]
    else:
        path = Path(source)
        path = path / "config.json" if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(
                f"{source}: no config.json there; give a checkpoint folder, a config.json or one of the shipped "
                f"architectures ({', '.join(shapes)})"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if "model_type" not in data:
        raise ValueError(f"{path}: a transformers config needs 'model_type'")
    data = {key: value for key, value in data.items() if not key.startswith("_")}
    return AutoConfig.for_model(**data)


@dataclass(frozen=True)
class ModelShape:
    """What the plan reads off the model built on the meta device."""

    family: str
    parts: dict[str, int]           # parameters by part (RadscribeVLM.parameter_breakdown)
    trainable: int                  # parameters the recipe trains as written
    lora_rank: int
    lora_dropout: float
    lora_per_layer: int             # LoRA parameters per decoder layer at lora_rank
    lora_present: int               # LoRA parameters the model as built already holds (counted in parts)
    adapted_inputs: int             # summed input widths of the LoRA-adapted linears in one layer
    quantizable: int                # language-model linear weights (what NF4 stores in 4 bits)
    layers: int
    hidden: int
    q_width: int
    kv_width: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_head: bool
    norms_per_layer: int
    image_tokens: int               # language-model positions per image
    vision_patches: int             # vision-tower positions per image
    vision_layers: int
    vision_hidden: int
    vision_trainable: bool

    @property
    def total(self) -> int:
        return sum(self.parts.values())


class _NoTokenizer(SimpleNamespace):
    """Stands in for a processor: a model built only to be measured never encodes text."""

    tokenizer = None


def model_on_meta(recipe: TrainConfig, backbone: str | Path | None = None) -> Any:
    """The recipe's model (freezing, memory adapter, LoRA applied) with meta tensors: shapes, no storage.

    ``backbone``: the transformers config to build from (a shipped shape name, a config.json or a
    checkpoint folder); default the recipe's ``model.name``.
    """
    from radscribe.models import create_model, load_config
    from radscribe.models.config import named_configs
    from radscribe.models.registry import family_for_model_type
    from radscribe.train.loop import build_model

    section = recipe.model
    source = backbone if backbone is not None else section.name

    def factory(name: str, **overrides: Any) -> Any:
        overrides = {**overrides, "device": "meta", "quantization": None}
        if isinstance(source, str) and source in named_configs():
            with torch.device("meta"):
                return create_model(source, **overrides)
        if backbone is None and not Path(str(source)).exists():
            raise FileNotFoundError(
                f"model.name {str(source)!r} is not on this machine: point it at the checkpoint folder or plan for an "
                f"architecture with --backbone (a checkpoint folder, a config.json or one of {', '.join(reference_shapes())})"
            )
        hf_config = backbone_config(source)
        family = family_for_model_type(hf_config.model_type, str(source))
        config = load_config(family.family).replace(name=Path(str(source)).name, **overrides)
        with torch.device("meta"):
            return family(config, family._model_class()._from_config(hf_config), _NoTokenizer())

    with torch.device("meta"):
        return build_model(section, factory)


def model_shape(model: Any) -> ModelShape:
    """Parameter counts and layer widths of a (meta) RadscribeVLM."""
    base = model.base_model()
    text = base.config.get_text_config()
    vision = getattr(base.config, "vision_config", None)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    lora = [m for name, m in model.named_modules() if hasattr(m, "lora_A") and "language_model" in name]
    rank, dropout = 8, 0.05
    per_layer = inputs = 0
    layers = text.num_hidden_layers
    if lora:
        adapters = [adapter for module in lora for adapter in module.lora_A.values()]
        rank = adapters[0].out_features
        dropout = float(next(iter(lora[0].lora_dropout.values())).p) if hasattr(next(iter(lora[0].lora_dropout.values())), "p") else 0.0
        per_layer = sum(p.numel() for module in lora for name, p in module.named_parameters() if "lora_" in name) // layers
        inputs = sum(adapter.in_features for adapter in adapters) // layers
    else:
        per_layer, inputs = _lora_estimate(model, rank)
    quantizable = sum(
        m.weight.numel() for name, m in base.named_modules()
        if isinstance(m, torch.nn.Linear) and "language_model" in name and "lora_" not in name
    )
    norms = sum(1 for name, m in base.named_modules() if re.search(r"language_model\.layers\.0\.[a-z_]*layernorm$", name))
    parts = model.parameter_breakdown()
    image_tokens, patches, vision_layers, vision_hidden = _vision_positions(model.family, base.config, model.config)
    return ModelShape(
        family=model.family, parts=parts, trainable=model.num_parameters(trainable_only=True),
        lora_rank=rank, lora_dropout=dropout, lora_per_layer=per_layer, adapted_inputs=inputs, quantizable=quantizable,
        lora_present=sum(p.numel() for name, p in model.named_parameters() if "lora_" in name),
        layers=layers, hidden=text.hidden_size, q_width=text.num_attention_heads * head_dim, head_dim=head_dim,
        kv_width=getattr(text, "num_key_value_heads", text.num_attention_heads) * head_dim,
        intermediate=text.intermediate_size, vocab=text.vocab_size, tied_head=parts["lm_head"] == 0,
        norms_per_layer=max(norms, 2), image_tokens=image_tokens, vision_patches=patches,
        vision_layers=vision_layers, vision_hidden=vision_hidden,
        vision_trainable=any(p.requires_grad for p in model.vision_parameters()) if vision is not None else True,
    )


def _lora_estimate(model: Any, rank: int) -> tuple[int, int]:
    """(LoRA parameters per layer, adapted input widths per layer) for the family's default targets."""
    pattern = re.compile(model.lora_target_modules)
    layers = model.base_model().config.get_text_config().num_hidden_layers
    linears = [m for name, m in model.base_model().named_modules() if isinstance(m, torch.nn.Linear) and pattern.fullmatch(name)]
    return (
        sum(rank * (m.in_features + m.out_features) for m in linears) // layers,
        sum(m.in_features for m in linears) // layers,
    )


def _vision_positions(family: str, hf_config: Any, config: Any) -> tuple[int, int, int, int]:
    """(language-model tokens per image, vision-tower patches per image, vision layers, vision width)."""
    vision = getattr(hf_config, "vision_config", None)
    if family == "qwen2.5-vl":
        width, height = config.input_size  # the adapter's processor decides; the plan assumes model.image_size
        side = vision.patch_size * vision.spatial_merge_size
        patches = (max(1, round(width / side)) * side // vision.patch_size) * (max(1, round(height / side)) * side // vision.patch_size)
        return patches // vision.spatial_merge_size**2, patches, vision.depth, vision.hidden_size
    if family == "gemma3":
        return hf_config.mm_tokens_per_image, (vision.image_size // vision.patch_size) ** 2, vision.num_hidden_layers, vision.hidden_size
    if vision is not None and hasattr(vision, "image_size"):
        patches = (vision.image_size // vision.patch_size) ** 2
        return patches, patches, vision.num_hidden_layers, vision.hidden_size
    tokens = int(getattr(hf_config, "image_tokens", 0) or 0)
    return tokens, tokens, 0, 0


# ----------------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Workload:
    """What one GPU processes per micro-step."""

    sequences: int         # per GPU per micro-step (global batch / GPUs / grad_accum)
    text_tokens: int       # prompt + target tokens per sequence (the model's max_length: padded, worst case)
    images: int            # images per sequence

    def tokens(self, shape: ModelShape) -> int:
        return self.sequences * (self.text_tokens + self.images * shape.image_tokens)


def layer_activation_bytes(shape: ModelShape, element: int, trained: str) -> float:
    """Bytes one decoder layer keeps per token for the backward pass, without checkpointing.

    ``trained``: ``full`` (every weight trains: linear inputs kept) or ``lora`` (frozen linears
    keep nothing for their weights; LoRA keeps its inputs, plus a dropped-out copy and a one-byte
    mask per adapted layer when dropout is on).
    """
    h, q, kv, f = shape.hidden, shape.q_width, shape.kv_width, shape.intermediate
    norms = shape.norms_per_layer * 4 * h                 # each RMSNorm keeps its fp32 input
    attention = element * (2 * q + 2 * kv + q)              # q, k (after RoPE), v, attention output (+ k/v before repeat)
    mlp = element * 3 * f                                   # gate (for the activation), activation, up
    if trained == "full":
        linear_inputs = element * (shape.norms_per_layer * h + q + f)  # normalised inputs (norm weights train), o_proj and down_proj inputs
    else:
        linear_inputs = element * (2 * h + q + f)           # LoRA's inputs: the two normalised states, o_proj's and down_proj's
        if shape.lora_dropout > 0:
            linear_inputs += (element + 1) * shape.adapted_inputs
    return float(norms + attention + mlp + linear_inputs)


def head_activation_bytes(shape: ModelShape, element: int) -> float:
    """Per token at the loss: the logits, their fp32 copy and the fp32 log-softmax kept for backward."""
    return float(shape.vocab * (element + 4 + 4))


@dataclass(frozen=True)
class MemoryLine:
    strategy: str
    weights: float
    gradients: float
    optimizer: float
    activations: float
    activations_checkpointed: float
    trainable: int

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def total_checkpointed(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations_checkpointed


def memory_lines(
    shape: ModelShape, workload: Workload, world: int, element: int = 2, master: int = 4, stored_scores: bool = False
) -> list[MemoryLine]:
    """Bytes per GPU for each strategy. ``element``: bytes of a loaded weight (2: bf16 on CUDA; 4: fp32 on CPU);
    ``master``: bytes of a parameter radscribe or peft creates (fp32). ``stored_scores``: attention keeps its
    softmax probabilities (PyTorch's math SDPA path, what CPUs run with a mask) instead of a fused kernel's
    per-row statistics (CUDA flash / memory-efficient attention)."""
    tokens = workload.tokens(shape)
    positions = workload.text_tokens + workload.images * shape.image_tokens
    scores = shape.layers * (shape.q_width // shape.head_dim) * positions**2 * element * workload.sequences if stored_scores else 0.0
    head = head_activation_bytes(shape, element) * tokens
    bridge = shape.parts["bridge"]
    vision = shape.parts["vision"]
    language = shape.total - vision - bridge - shape.lora_present  # the base model's own language weights
    lora = shape.lora_per_layer * shape.layers

    def activations(trained: str) -> tuple[float, float]:
        per_layer = layer_activation_bytes(shape, element, trained)
        full = shape.layers * per_layer * tokens + head + scores
        checkpointed = shape.layers * element * shape.hidden * tokens + per_layer * tokens + head + scores / max(1, shape.layers)
        return full, checkpointed

    def line(strategy: str, weights: float, trained_bytes: float, trainable: int, trained: str, shard: int = 1, gather: float = 0.0) -> MemoryLine:
        full, checkpointed = activations(trained)
        gradients = trained_bytes / shard + (trained_bytes if shard == 1 and world > 1 else 0.0)  # DDP's buckets
        return MemoryLine(strategy, weights / shard + gather, gradients, 2 * trained_bytes / shard, full, checkpointed, trainable)

    everything = element * (language + vision) + master * bridge if bridge else element * (language + vision)
    bridge_bytes = element * bridge
    full_trainable = language + bridge + (vision if shape.vision_trainable else 0)
    full_trained_bytes = element * full_trainable
    layer_bytes = element * (language - shape.parts["embedding"] - shape.parts["lm_head"]) / max(1, shape.layers)
    lora_trained = master * lora + bridge_bytes
    quantized = shape.quantizable
    qlora_weights = element * (language + vision + bridge - quantized) + NF4_BYTES * quantized + master * lora
    return [
        line("full, DDP", everything, full_trained_bytes, full_trainable, "full"),
        line("full, FSDP", everything, full_trained_bytes, full_trainable, "full", shard=world, gather=2 * layer_bytes if world > 1 else 0.0),
        line("LoRA, DDP", everything + master * lora, lora_trained, lora + bridge, "lora"),
        line("LoRA, FSDP", everything + master * lora, lora_trained, lora + bridge, "lora", shard=world,
             gather=2 * layer_bytes if world > 1 else 0.0),
        line("QLoRA, DDP", qlora_weights, lora_trained, lora + bridge, "lora"),
    ]


# ----------------------------------------------------------------------------------------------- time


def step_flops(shape: ModelShape, workload: Workload, global_sequences: int, trained: str) -> float:
    """Model FLOPs of one optimiser step (forward + backward over the global batch)."""
    text_positions = workload.text_tokens + workload.images * shape.image_tokens
    tokens = global_sequences * text_positions
    dense_language = shape.total - shape.parts["vision"] - shape.parts["bridge"] - shape.parts["embedding"]
    head = 0 if not shape.tied_head else shape.vocab * shape.hidden  # a tied head is counted in embedding
    per_token = (6 if trained == "full" else 4) * (dense_language + head)
    if trained != "full":
        per_token += 6 * shape.lora_per_layer * shape.layers
    patches = global_sequences * workload.images * shape.vision_patches
    vision = (6 if shape.vision_trainable and trained == "full" else 2) * shape.parts["vision"] * patches
    bridge = 6 * shape.parts["bridge"] * patches
    attention = 12 * shape.layers * shape.q_width * text_positions**2 * global_sequences
    vision_attention = 4 * shape.vision_layers * shape.vision_hidden * shape.vision_patches**2 * global_sequences * workload.images
    return float(per_token * tokens + vision + bridge + attention + vision_attention)


# ----------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    recipe: str
    backbone: str
    gpus: int
    nodes: int
    shape: ModelShape
    workload: Workload
    global_batch: int
    grad_accum: int
    recipe_strategy: str
    checkpointing: bool
    lines: list[MemoryLine]
    flops: dict[str, float]
    seconds: dict[str, float]
    peak_tflops: float
    utilisation: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "backbone": self.backbone, "gpus_per_node": self.gpus, "nodes": self.nodes,
            "parameters": self.shape.parts, "parameters_total": self.shape.total, "trainable_as_written": self.shape.trainable,
            "recipe_strategy": self.recipe_strategy, "gradient_checkpointing": self.checkpointing,
            "per_gpu_sequences": self.workload.sequences, "tokens_per_sequence": self.workload.text_tokens + self.workload.images * self.shape.image_tokens,
            "global_batch": self.global_batch, "grad_accum": self.grad_accum,
            "memory_gib": {
                line.strategy: {
                    "weights": line.weights / GIB, "gradients": line.gradients / GIB, "optimizer": line.optimizer / GIB,
                    "activations": line.activations / GIB, "activations_checkpointed": line.activations_checkpointed / GIB,
                    "total": line.total / GIB, "total_checkpointed": line.total_checkpointed / GIB, "trainable": line.trainable,
                }
                for line in self.lines
            },
            "step_tflop": {k: v / 1e12 for k, v in self.flops.items()},
            "step_seconds": self.seconds, "peak_tflops": self.peak_tflops, "utilisation": self.utilisation,
        }


def make_plan(
    recipe_path: str | Path,
    gpus: int = 1,
    nodes: int = 1,
    backbone: str | Path | None = None,
    overrides: list[str] | None = None,
    peak_tflops: float = DEFAULT_PEAK_TFLOPS,
    utilisation: float = DEFAULT_UTILISATION,
    weight_bytes: int = 2,
) -> Plan:
    """The plan of a recipe file on ``gpus`` x ``nodes`` GPUs (nothing is loaded but configs).

    ``weight_bytes``: 2 for bf16 weights on CUDA (what radscribe loads there), 4 for fp32 (on CPU).
    """
    from radscribe.train.config import load_config

    if gpus < 1 or nodes < 1:
        raise ValueError(f"need at least one GPU and one node, got --gpus {gpus} --nodes {nodes}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    recipe = load_config(recipe_path, overrides)
    model = model_on_meta(recipe, backbone)
    shape = model_shape(model)
    world = gpus * nodes
    optim = recipe.optim
    per_gpu, remainder = divmod(optim.batch_size, world * optim.grad_accum)
    if per_gpu == 0 or remainder:
        raise ValueError(
            f"{recipe_path}: optim.batch_size ({optim.batch_size}) must be a multiple of GPUs x optim.grad_accum "
            f"({world} x {optim.grad_accum})"
        )
    workload = Workload(per_gpu, model.config.max_length, model.config.max_images)
    quantized = recipe.model.overrides.get("quantization") is not None  # the meta model is built unquantised
    trained = ("QLoRA" if quantized else "LoRA") if recipe.model.lora is not None or model.config.lora is not None else "full"
    strategy = f"{trained}, {recipe.distributed.strategy.upper()}"  # the recipe's distributed.strategy: ddp or fsdp
    checkpointing = bool(model.config.gradient_checkpointing)
    recompute = 4 / 3 if checkpointing else 1.0
    flops = {name: step_flops(shape, workload, optim.batch_size, "full" if name.startswith("full") else "lora") for name in STRATEGIES}
    seconds = {name: value * recompute / (world * peak_tflops * 1e12 * utilisation) for name, value in flops.items()}
    return Plan(
        str(recipe_path), str(backbone or recipe.model.name), gpus, nodes, shape, workload, optim.batch_size, optim.grad_accum,
        strategy, checkpointing, memory_lines(shape, workload, world, weight_bytes), flops, seconds, peak_tflops, utilisation,
    )


def format_plan(plan: Plan) -> str:
    """A plain-text table of the plan (what ``radscribe plan`` prints)."""
    shape = plan.shape
    parts = ", ".join(f"{name} {count / 1e6:,.1f} M" for name, count in shape.parts.items() if count)
    tokens = plan.workload.text_tokens + plan.workload.images * shape.image_tokens
    rows = [
        f"recipe {plan.recipe}  backbone {plan.backbone} ({shape.family})",
        f"parameters {shape.total / 1e9:.2f} B ({parts}); trains as written: {shape.trainable / 1e6:,.1f} M ({plan.recipe_strategy})",
        f"{plan.nodes} node(s) x {plan.gpus} GPU(s); per GPU {plan.workload.sequences} sequence(s) x {tokens} tokens a micro-step "
        f"(max_length {plan.workload.text_tokens} + {plan.workload.images} x {shape.image_tokens} image tokens), "
        f"global batch {plan.global_batch}, grad_accum {plan.grad_accum}",
        "",
        f"{'GiB per GPU':<12}{'weights':>9}{'grads':>8}{'AdamW':>8}{'activ.':>9}{'total':>9}{'activ.ckpt':>12}{'total ckpt':>12}{'step s':>9}",
    ]
    for line in plan.lines:
        mark = " <- recipe" if line.strategy == plan.recipe_strategy else ""
        rows.append(
            f"{line.strategy:<12}{line.weights / GIB:>9.2f}{line.gradients / GIB:>8.2f}{line.optimizer / GIB:>8.2f}"
            f"{line.activations / GIB:>9.2f}{line.total / GIB:>9.2f}{line.activations_checkpointed / GIB:>12.2f}"
            f"{line.total_checkpointed / GIB:>12.2f}{plan.seconds[line.strategy]:>9.2f}{mark}"
        )
    rows += [
        "",
        f"step time: model FLOPs x {'4/3 (checkpointing recomputes a forward)' if plan.checkpointing else '1'} / "
        f"({plan.nodes * plan.gpus} GPUs x {plan.peak_tflops:g} TFLOP/s x utilisation {plan.utilisation:g}); "
        "add 1-3 GiB a GPU for the CUDA context and allocator.",
    ]
    return "\n".join(rows)


def fits(plan: Plan, gpu_gib: float) -> dict[str, bool]:
    """Which strategies fit a GPU of ``gpu_gib`` (with checkpointing when the recipe uses it)."""
    return {
        line.strategy: (line.total_checkpointed if plan.checkpointing else line.total) / GIB <= gpu_gib
        for line in plan.lines
    }


__all__ = [
    "DEFAULT_PEAK_TFLOPS",
    "DEFAULT_UTILISATION",
    "STRATEGIES",
    "MemoryLine",
    "ModelShape",
    "Plan",
    "Workload",
    "backbone_config",
    "format_plan",
    "make_plan",
    "memory_lines",
    "model_on_meta",
    "model_shape",
    "reference_shapes",
]

