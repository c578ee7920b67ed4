"""One prepared GPU run (fits in 10 minutes on one H200): training steps of a MedGemma-4B-shaped and a
Qwen2.5-VL-7B-shaped model, and constrained decoding throughput; ``--smoke`` runs the same code on CPU
with the tiny test checkpoints' shapes (tests/test_gpu_check.py).

Models: the shipped architectures (radscribe/train/shapes/*.json: the real layer counts, widths and
vocabularies) with random weights built straight on the device, the adapters' processors and a small
BPE tokenizer from radscribe.models.checkpoints (token ids remapped into the shape); nothing is
downloaded. Each model trains as the recipes do: LoRA r=16 on the language model, frozen vision
tower, memory adapter, gradient checkpointing, bf16 weights and autocast, AdamW.

Reported per model: step time, tokens/s, MFU (``RadscribeVLM.estimate_flops`` per step over the
step time and the dense bf16 peak, 989 TFLOP/s for H100/H200 SXM), peak allocated memory
(``torch.cuda.max_memory_allocated``) against ``radscribe.train.plan`` for the same batch, and
greedy generation throughput unconstrained, through xgrammar (the grammar extra) and through
today's ConstrainedLogitsProcessor, on the phrase-grounding grammar.

    python benchmarks/gpu_check.py            # on the GPU machine
    python benchmarks/gpu_check.py --smoke    # anywhere, in about a minute
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from model_inputs import example, radiograph  # noqa: E402
from radscribe.infer import TokenConstraint, Vocabulary, constrained_generate_kwargs, grounding_grammar  # noqa: E402
from radscribe.models import family_class, load_config  # noqa: E402
from radscribe.models.checkpoints import write_tiny_checkpoint  # noqa: E402
from radscribe.train.config import OptimSection  # noqa: E402
from radscribe.train.optim import make_optimizer  # noqa: E402
from radscribe.train.plan import GIB, SHAPES_DIR, Workload, memory_lines, model_shape  # noqa: E402

PEAK_TFLOPS = 989.0
SHAPES = {"gemma3": "medgemma-4b", "qwen2.5-vl": "qwen2.5-vl-7b"}
TARGET_WORDS = "vertebra alignment normal curve apex lumbar thoracic level disc height preserved".split()


def checkpoint_folder(family: str, folder: Path, smoke: bool) -> Path:
    """The tiny checkpoint's processor and tokenizer; config.json of the full shape (unless smoke), no weights."""
    write_tiny_checkpoint(family, folder)
    (folder / "model.safetensors").unlink()
    if smoke:
        return folder
    tiny = json.loads((folder / "config.json").read_text())
    shape = {k: v for k, v in json.loads((SHAPES_DIR / f"{SHAPES[family]}.json").read_text()).items() if not k.startswith("_")}
    for key in ("boi_token_index", "eoi_token_index", "image_token_index", "image_token_id", "video_token_id",
                "vision_start_token_id", "vision_end_token_id"):
        if key in tiny:
            shape[key] = tiny[key]  # the tokenizer's own ids (inside the shape's vocabulary)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        shape["text_config"][key] = tiny["text_config"].get(key)
    (folder / "config.json").write_text(json.dumps(shape))
    if family == "gemma3":
        settings = json.loads((folder / "processor_config.json").read_text()) if (folder / "processor_config.json").exists() else {}
        settings["image_seq_length"] = shape["mm_tokens_per_image"]
        (folder / "processor_config.json").write_text(json.dumps(settings))
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        side = shape["vision_config"]["image_size"]
        pre["size"] = {"height": side, "width": side}
        (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    else:
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        pre["min_pixels"] = pre["max_pixels"] = 448 * 448  # 256 image tokens, as configs/lingshu-7b.yaml assumes
        pre.setdefault("size", {})
        pre["size"] = {"shortest_edge": 448 * 448, "longest_edge": 448 * 448}
        (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return folder


def build(family: str, folder: Path, device: torch.device, smoke: bool):
    config = load_config(family).replace(
        name=f"{SHAPES[family]}-random", pretrained_path=str(folder), memory_slots=16, gradient_checkpointing=True,
        device=device.type, precision="fp32" if device.type == "cpu" else "bf16", max_length=96 if smoke else 512,
    )
    torch.manual_seed(0)
    with torch.device(device):  # random init straight on the GPU: seconds, not minutes
        return family_class(family)._build_for_loading(config, folder)


def train_steps(model, batch_size: int, steps: int, device: torch.device) -> dict:
    words = TARGET_WORDS * 60
    examples = [example((radiograph(300 + 20 * i, 600, i),), "Describe the spine.", " ".join(words[: model.config.max_length]))
                for i in range(batch_size)]
    batch = {key: value.to(device) for key, value in model.collate(examples).items()}
    optimizer = make_optimizer(model, OptimSection(lr=1e-5), 1e-5)
    model.train()
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step = sum(times[1:]) / steps  # the first step warms kernels and allocates AdamW state
    flops = model.estimate_flops(batch)
    tokens = int(batch["input_ids"].numel())
    image_tokens = int((batch["input_ids"][0] == model.image_token_id).sum())
    shape = model_shape(model)
    import dataclasses

    shape = dataclasses.replace(shape, image_tokens=image_tokens)
    workload = Workload(batch_size, int(batch["input_ids"].shape[1]) - image_tokens, 1)
    element = 4 if device.type == "cpu" else 2
    planned = {line.strategy: line for line in memory_lines(shape, workload, 1, element=element)}["LoRA, DDP"]
    result = {
        "parameters": model.num_parameters(), "trainable": model.num_parameters(trainable_only=True),
        "batch": batch_size, "tokens_per_sequence": int(batch["input_ids"].shape[1]), "image_tokens": image_tokens,
        "step_s": round(step, 4), "tokens_per_s": round(tokens / step, 1), "loss": round(float(loss), 4),
        "mfu": float(f"{flops / step / (PEAK_TFLOPS * 1e12):.3g}"),  # significant digits: a CPU smoke run's is ~1e-5 "step_tflop": round(flops / 1e12, 3),
        "planned_gib": round(planned.total_checkpointed / GIB, 3),
    }
    if device.type == "cuda":
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
        result["planned_over_measured"] = round(planned.total_checkpointed / torch.cuda.max_memory_allocated(), 3)
    return result


def decoding(model, batch_size: int, new_tokens: int) -> dict:
    grammar = grounding_grammar("vertebra", max_boxes=24)
    images = [radiograph(300, 600, 100 + i) for i in range(batch_size)]
    prompts = ["Locate: vertebra"] * batch_size
    model.eval()
    results = {}

    def timed(name: str, **kwargs) -> None:
        start = time.perf_counter()
        texts = model.generate(images, prompts, **kwargs)
        seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 3), "rows": batch_size, "new_tokens_cap": new_tokens, "sample": texts[0][:80]}

    timed("unconstrained", max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    try:
        from radscribe.infer.xgrammar_decoding import XGrammarCompiler

        start = time.perf_counter()
        compiler = XGrammarCompiler.for_model(model)
        compiler.compile(grammar)
        results["xgrammar_compile_s"] = round(time.perf_counter() - start, 3)
        timed("xgrammar", **compiler.generate_kwargs(grammar, new_tokens))
    except ImportError as error:
        results["xgrammar"] = f"not installed ({error})"
    start = time.perf_counter()
    constraint = TokenConstraint(grammar, Vocabulary.from_model(model))
    results["radscribe_setup_s"] = round(time.perf_counter() - start, 3)
    timed("radscribe_processor", **constrained_generate_kwargs(constraint, new_tokens))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (a test of this script, not a measurement)")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if not args.smoke and device.type != "cuda":
        raise SystemExit("gpu_check needs a CUDA GPU; run with --smoke to exercise it on CPU")
    steps = args.steps or (1 if args.smoke else 5)
    batch_size = 2 if args.smoke else 8
    report = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "smoke": args.smoke, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for family in SHAPES:
            start = time.perf_counter()
            model = build(family, checkpoint_folder(family, Path(tmp) / family, args.smoke), device, args.smoke)
            entry = {"shape": SHAPES[family] if not args.smoke else f"tiny {family}", "build_s": round(time.perf_counter() - start, 2)}
            entry["training"] = train_steps(model, batch_size, steps, device)
            entry["decoding"] = decoding(model, batch_size, 48 if args.smoke else 128)
            report["models"][family] = entry
            print(family, json.dumps(entry), flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write_result("gpu_check_smoke" if args.smoke else "gpu_check", report)


if __name__ == "__main__":
    main()
