"""radscribe-tiny cost on this machine: size, one training step, and decoding speed.

    python benchmarks/model_forward.py [--data ../shared/data] [--steps 3] [--generate-runs 3]

Measures the default config (random init: speed does not depend on training): parameter count,
safetensors size as saved (bf16) and in fp32, forward+backward time for a batch of 8 real CADMA
spine films with ~200-token targets built from real IU X-ray report text, and greedy generation
of 300 new tokens with the KV cache (eos disabled so every run decodes the full length). The CPU is
shared with other jobs: numbers vary run to run; the JSON records the thread count and load average.
Writes benchmarks/results/model_forward.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from provenance import write_result

from radscribe.models import create_model, describe_size

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Example:
    images: tuple
    prompt: str
    target: str
    task: str = "report"


def report_targets(reports: Path, tokenizer, count: int, tokens: int) -> list[str]:
    """``count`` targets of about ``tokens`` tokens each, made by joining consecutive real reports."""
    texts = []
    for line in reports.open(encoding="utf-8"):
        record = json.loads(line)
        texts.append(" ".join(part for part in (record.get("findings"), record.get("impression")) if part))
    targets, current = [], ""
    for text in texts:
        current = f"{current} {text}".strip()
        ids = tokenizer.encode(current).ids
        if len(ids) >= tokens:
            targets.append(tokenizer.decode(ids[:tokens]))
            current = ""
            if len(targets) == count:
                return targets
    raise SystemExit(f"{reports}: not enough report text for {count} targets of {tokens} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="radscribe-tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--target-tokens", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--generate-tokens", type=int, default=300)
    parser.add_argument("--generate-runs", type=int, default=3)
    args = parser.parse_args()

    images = sorted((args.data / "spine-cadma" / "train" / "images").glob("*.jpg"))[: args.batch]
    if len(images) < args.batch:
        raise SystemExit(f"{args.data / 'spine-cadma'}: need {args.batch} spine images (see ../shared/data/README.md)")
    model = create_model(args.model, device="cpu")
    size = describe_size(model)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        saved_mb = (Path(folder) / "model.safetensors").stat().st_size / 1e6

    targets = report_targets(args.data / "iu-xray-reports" / "reports.jsonl", model.tokenizer, args.batch, args.target_tokens)
    batch = model.collate([Example((path,), "Describe the spine radiograph.", target) for path, target in zip(images, targets)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step_times = []
    for _ in range(args.steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_times.append(time.perf_counter() - start)
    step = statistics.median(step_times[1:])
    flops = model.estimate_flops(batch)

    model.eval()
    training_threads = torch.get_num_threads()
    generation = {}
    # Batch-1 decoding is a chain of tiny matmuls: thread hand-offs cost more than they save, so
    # both settings are measured.
    for threads in sorted({1, training_threads}):
        torch.set_num_threads(threads)
        times = []
        for run in range(args.generate_runs + 1):
            start = time.perf_counter()
            model.generate([images[run % len(images)]], ["Describe the spine radiograph."],
                           max_new_tokens=args.generate_tokens, min_new_tokens=args.generate_tokens)
            times.append(time.perf_counter() - start)
        median = statistics.median(times[1:])
        generation[f"threads_{threads}"] = {
            "new_tokens": args.generate_tokens,
            "seconds_median": round(median, 3),
            "tokens_per_second": round(args.generate_tokens / median, 1),
            "seconds_all": [round(t, 3) for t in times],
        }
    torch.set_num_threads(training_threads)

    result = {
        "model": args.model,
        "config": model.config.to_dict(),
        **size,
        "safetensors_mb_as_saved": round(saved_mb, 2),
        "image_tokens_per_image": model.image_tokens_per_image,
        "train_step": {
            "batch": args.batch,
            "sequence_length": int(batch["input_ids"].shape[1]),
            "target_tokens": args.target_tokens,
            "seconds_median": round(step, 3),
            "seconds_all": [round(t, 3) for t in step_times],
            "estimated_flops": flops,
            "achieved_gflops_per_s": round(flops / step / 1e9, 1),
        },
        "generate": generation,
        "machine": {
            "torch_threads_training": training_threads,
            "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
            "note": "CPU shared with other jobs; rerun for variance",
        },
    }
    write_result("model_forward", result)


if __name__ == "__main__":
    main()
