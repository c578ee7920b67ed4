"""Inference speed on real spine films: model load, one full grounded structured report, batched throughput.

A full report = the constrained spine-ap-alignment report plus the constrained vertebra grounding pass
(up to 24 boxes), RFI on, KV cache on (transformers generate). Measured on CADMA valid images:

- load_s: create_model (or the embedded default) until ready;
- report_p50_s / report_p95_s: wall time for one image at batch 1 (read + RFI + both generations + parse);
- batched images/s at --batch-size, and generated tokens/s (tokens counted by re-tokenising the outputs).

    python benchmarks/inference.py --model radscribe-tiny        # a registered name = UNTRAINED random init
    python benchmarks/inference.py --model /path/to/saved/model

Writes benchmarks/results/inference.json (or --out). The model line says whether it is trained.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "spine-cadma" / "valid" / "images"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def token_count(model, texts: list[str]) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    return sum(len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts) if tokenizer is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="saved folder or registered name (default: the embedded model)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--single", type=int, default=8, help="images timed one by one (batch 1)")
    parser.add_argument("--batched", type=int, default=8, help="images for the throughput run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-rfi", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()

    import torch

    from radscribe.infer import Reporter, RFIConfig, load_model

    images = sorted(args.images.iterdir())
    if len(images) < max(args.single, args.batched) + 1:
        sys.exit(f"need at least {max(args.single, args.batched) + 1} images in {args.images}")
    start = time.perf_counter()
    model, description = load_model(args.model)
    load_s = time.perf_counter() - start
    reporter = Reporter(model, rfi=None if args.no_rfi else RFIConfig(), batch_size=args.batch_size)
    reporter.report(images[:1])  # warm-up: builds the grammar transition caches once, as a server would

    single, valid = [], 0
    for path in images[1 : 1 + args.single]:
        start = time.perf_counter()
        result = reporter.report([path])[0]
        single.append(time.perf_counter() - start)
        valid += bool(getattr(result, "valid", False))

    batch = images[1 : 1 + args.batched]
    start = time.perf_counter()
    results = reporter.report(batch)
    batched_s = time.perf_counter() - start
    texts = [r.text for r in results if r.ok] + [t for r in results if r.ok for t in r.grounding.values()]
    tokens = token_count(model, texts)
    result = {
        "model": description,
        "device": str(model.device),
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "template": reporter.template.name,
        "grounding": list(reporter.ground),
        "rfi": not args.no_rfi,
        "constrained": True,
        "load_s": round(load_s, 3),
        "report_batch1_p50_s": round(statistics.median(single), 3),
        "report_batch1_p95_s": round(percentile(single, 0.95), 3),
        "valid_reports_batch1": f"{valid}/{len(single)}",
        "batch_size": args.batch_size,
        "batched_images_per_s": round(len(batch) / batched_s, 4),
        "generated_tokens_per_s": round(tokens / batched_s, 2),
        "generated_tokens_per_image": round(tokens / len(batch), 1),
        "images": f"{args.images} (first {1 + max(args.single, args.batched)} files)",
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    from radscribe.data.manifest import atomic_write

    with atomic_write(args.out) as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
