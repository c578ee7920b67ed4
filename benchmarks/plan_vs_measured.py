"""`radscribe plan` against memory measured on real (tiny) models on this CPU.

For the tiny random Gemma 3 and Qwen2.5-VL checkpoints (radscribe.models.checkpoints, the adapters'
real code path) under a LoRA recipe, with and without gradient checkpointing, one training step is
run and its memory measured term by term, then compared with the plan of the same recipe
(``make_plan(..., weight_bytes=4)``: weights are fp32 on CPU; ``stored_scores``: the CPU runs attention on
PyTorch's math path, which keeps the softmax probabilities a CUDA fused kernel does not):

- weights, gradients, AdamW state: the bytes of the tensors themselves (tied storage counted once);
- activations kept for backward: every tensor autograd saves during the forward pass, through
  ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage (what the plan's
  ``activations`` models, except the loss's transient bf16/fp32 logits which are not saved);
- peak: the highest total of live CPU allocations during forward + backward above what was live
  before it, from ``torch.profiler`` memory events (``profile_memory=True``).

    python benchmarks/plan_vs_measured.py     # about 2 minutes on 2 cores
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from model_inputs import example, radiograph  # noqa: E402
from radscribe.models.checkpoints import write_tiny_checkpoint  # noqa: E402
from radscribe.train.config import load_config  # noqa: E402
from radscribe.train.loop import build_model  # noqa: E402
from radscribe.train.optim import make_optimizer  # noqa: E402
from radscribe.train.plan import GIB, Workload, head_activation_bytes, layer_activation_bytes, make_plan, memory_lines  # noqa: E402

SEQUENCES = 4
TARGET = "Sixteen vertebrae are visible from the upper thoracic to the lumbar spine. " * 6


def recipe(folder: Path, checkpointing: bool, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "model": {"name": str(folder), "memory_slots": 4, "overrides": {"gradient_checkpointing": checkpointing, "device": "cpu", "max_length": 256}},
        "optim": {"batch_size": SEQUENCES, "grad_accum": 1},
        "device": "cpu",
    }))
    return path


def tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for tensor in tensors:
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
    return total


def measure(recipe_path: Path) -> dict:
    config = load_config(recipe_path)
    torch.manual_seed(0)
    model = build_model(config.model)
    model.train()
    examples = [example((radiograph(120 + 10 * i, 200, i),), "Describe the spine.", TARGET) for i in range(SEQUENCES)]
    batch = model.collate(examples)
    image_tokens = int((batch["input_ids"][0] == model.image_token_id).sum())
    saved: list[torch.Tensor] = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    weights = tensor_bytes(model.parameters())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model(**batch).loss
        kept = tensor_bytes([t for t in saved if t.device.type == "cpu" and t.numel() > 0 and not isinstance(t, torch.nn.Parameter)])
        del saved[:]
        loss.backward()
    # Each op's own allocations net of its frees (children excluded), and frees outside any op ("[memory]").
    events = sorted(
        (event.time_range.start, event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage)
        for event in profiler.events()
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    grads = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    optimizer = make_optimizer(model, config.optim, 1e-4)
    optimizer.step()
    state = tensor_bytes(value for values in optimizer.state.values() for value in values.values() if torch.is_tensor(value) and value.dim() > 0)
    return {
        "tokens_per_sequence": int(batch["input_ids"].shape[1]), "image_tokens": image_tokens,
        "weights": weights, "gradients": grads, "optimizer": state, "activations_saved": kept, "peak_forward_backward": peak,
    }


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in ("gemma3", "qwen2.5-vl"):
            folder = write_tiny_checkpoint(family, Path(tmp) / family)
            for checkpointing in (False, True):
                path = recipe(folder, checkpointing, Path(tmp) / f"{family}-{checkpointing}.yaml")
                measured = measure(path)
                plan = make_plan(path, weight_bytes=4)
                # The plan's own sizes, at the sequence length this batch has (the plan assumes max_length).
                shape = dataclasses.replace(plan.shape, image_tokens=measured["image_tokens"])
                workload = Workload(SEQUENCES, measured["tokens_per_sequence"] - measured["image_tokens"], 1)
                line = {each.strategy: each for each in memory_lines(shape, workload, 1, element=4, stored_scores=True)}["LoRA, DDP"]
                head_transient = (head_activation_bytes(shape, 4) - 4 * shape.vocab) * workload.tokens(shape)
                planned_activations = line.activations_checkpointed if checkpointing else line.activations
                # Saved during the forward pass: with checkpointing, the recomputed layer (and its scores) come only in backward.
                recomputed = layer_activation_bytes(shape, 4, "lora") * workload.tokens(shape)
                saved = planned_activations - head_transient
                if checkpointing:
                    positions = workload.text_tokens + shape.image_tokens
                    saved -= recomputed + (shape.q_width // shape.head_dim) * positions**2 * 4 * SEQUENCES
                planned = {
                    "weights": line.weights, "gradients": line.gradients, "optimizer": line.optimizer,
                    "activations_saved": saved, "peak_forward_backward": planned_activations,
                }
                row = {"family": family, "gradient_checkpointing": checkpointing, "tokens_per_sequence": measured["tokens_per_sequence"]}
                for key, value in planned.items():
                    row[key] = {"planned_mb": round(value / 2**20, 3), "measured_mb": round(measured[key] / 2**20, 3),
                                "planned_over_measured": round(value / measured[key], 3) if measured[key] else None}
                rows.append(row)
                print(family, "checkpointing" if checkpointing else "no checkpointing",
                      {k: v["planned_over_measured"] for k, v in row.items() if isinstance(v, dict)}, flush=True)
    write_result("plan_vs_measured", {
        "what": "plan (make_plan, weight_bytes=4) over measured bytes, tiny random checkpoints, LoRA recipe, 4 sequences, CPU fp32",
        "measurement": "tensor bytes for weights/gradients/AdamW; saved_tensors_hooks for activations kept; torch.profiler memory events for the forward+backward peak above the weights",
        "gib_unit": GIB,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
