"""Training throughput of radscribe-tiny through the trainer's step: samples/s, tokens/s, achieved FLOP/s.

    python benchmarks/train_throughput.py [--data ../shared/data] [--steps 4] [--batch-size 8] [--model radscribe-tiny]

Data: real CADMA spine studies (imported and annotated into a temporary folder; structured-report
examples), or, without ../shared/data, synthetic batches of the same shape (random pixels, the same
token lengths); the JSON says which. Each timed step is what ``radscribe train`` does per step:
draw a global batch from the task mixture, collate (image decoding included), forward, backward,
gradient clipping, AdamW. FLOPs per step come from ``model.estimate_flops(batch)`` (6 N T plus
attention); the share is against this machine's fp32 matmul peak measured here with large torch.mm
on the same threads. The CPU is shared with other jobs: the JSON records threads and load average.
Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from provenance import write_result


REPO = Path(__file__).resolve().parents[1]


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """Best-of fp32 FLOP/s of a square torch.mm (2 n^3 FLOPs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def cadma_examples(data: Path, folder: Path, count: int) -> list:
    from radscribe.annotate import annotate_spine_manifest
    from radscribe.data import read_manifest, write_manifest
    from radscribe.data.importers.base import import_dataset
    from radscribe.tasks import build_examples

    import_dataset("cadma", data / "spine-cadma", folder / "all.jsonl")
    studies = [s for s in read_manifest(folder / "all.jsonl") if s.split == "train"][:count]
    write_manifest(studies, folder / "subset.jsonl")
    annotate_spine_manifest(folder / "subset.jsonl", folder / "spine.jsonl")
    return list(build_examples(read_manifest(folder / "spine.jsonl"), folder, ["structured_report"], "radscribe"))


def synthetic_examples(folder: Path, count: int) -> list:
    """Random 229x416 grayscale films with a structured-report-length target (same shapes as CADMA)."""
    import numpy as np
    from PIL import Image

    from radscribe.tasks import Example

    rng = np.random.default_rng(0)
    target = "\n".join(f"- **Field {i}:** value {i}" for i in range(40))
    examples = []
    for index in range(count):
        path = folder / f"synthetic-{index}.png"
        Image.fromarray(rng.integers(0, 255, (416, 229), dtype=np.uint8), mode="L").save(path)
        examples.append(Example("structured_report", f"s{index}", (path,), "Complete the structured report for this radiograph.", target))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="radscribe-tiny")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()

    from radscribe.models import create_model
    from radscribe.train.config import OptimSection
    from radscribe.train.data import MixtureSampler, count_loss_tokens
    from radscribe.train.optim import make_optimizer

    torch.manual_seed(0)
    peak = matmul_peak()
    with tempfile.TemporaryDirectory() as tmp:
        if (args.data / "spine-cadma").is_dir():
            examples, source = cadma_examples(args.data, Path(tmp), 64), "real CADMA spine studies (structured_report)"
        else:
            examples, source = synthetic_examples(Path(tmp), 64), "synthetic same-shape batches (CADMA data absent)"
        model = create_model(args.model, device="cpu").train()
        optimizer = make_optimizer(model, OptimSection(), lr=1e-4)
        mixture = MixtureSampler({"structured_report": examples}, {"structured_report": 1.0}, 1.0, seed=0)
        steps = []
        for index in range(args.warmup + args.steps):
            started = time.perf_counter()
            batch = model.collate(mixture.sample(args.batch_size))
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - started
            if index >= args.warmup:
                steps.append({
                    "seconds": seconds,
                    "tokens": int(batch["attention_mask"].sum()),
                    "target_tokens": count_loss_tokens(batch),
                    "sequence_length": int(batch["input_ids"].shape[1]),
                    "flops": model.estimate_flops(batch),
                })
            print(f"step {index + 1}: {seconds:.2f} s, loss {loss.item():.3f}", flush=True)

    seconds = sum(s["seconds"] for s in steps)
    flops = sum(s["flops"] for s in steps)
    result = {
        "model": args.model,
        "parameters": model.num_parameters(),
        "data": source,
        "batch_size": args.batch_size,
        "timed_steps": len(steps),
        "seconds_per_step_median": statistics.median(s["seconds"] for s in steps),
        "samples_per_s": args.batch_size * len(steps) / seconds,
        "tokens_per_s": sum(s["tokens"] for s in steps) / seconds,
        "target_tokens_per_s": sum(s["target_tokens"] for s in steps) / seconds,
        "mean_sequence_length": statistics.mean(s["sequence_length"] for s in steps),
        "achieved_flop_per_s": flops / seconds,
        "fp32_matmul_peak_flop_per_s": peak,
        "share_of_peak": flops / seconds / peak,
        "flop_estimate": "model.estimate_flops: 6 N T dense + attention, forward + backward",
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
        "torch": torch.__version__,
        "note": "CPU shared with other jobs while measured; precision fp32",
        "steps": steps,
    }
    write_result(args.out.stem, result, args.out.parent)


if __name__ == "__main__":
    main()
