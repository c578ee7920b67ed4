"""Inference speed and template conformance on real spine films (CADMA valid).

A full report as `radscribe report` makes it: the model folder loaded by Reporter.from_pretrained (its
detector and its release's ``boxes_from``), RFI off unless --rfi. With ``boxes_from: detector`` (the
embedded release) that is the detector plus the spine template computed from its boxes; with
``--boxes-from model`` the constrained vertebra grounding pass (up to 24 boxes, the detector's boxes in
the prompt) decoded by radscribe's own constrained loop (radscribe.infer.decoding: KV cache, fixed
template text fed in one pass per span, rows batched together).

- load_s: Reporter.from_pretrained (model and detector) until ready;
- report_batch1_p50_s / _p95_s: wall time for one image at batch 1 (read + RFI + both passes + parse),
  over --single images (after one warm-up image that fills the grammar caches, as a server would);
- batched_images_per_s at --batch-size over --batched images;
- tokens: ``written`` = every token of the outputs (fixed template text the decoder writes itself +
  the model's choices); ``model_choices`` = tokens the model picked from its logits; both per second
  of the batched run;
- conformance: share of outputs that parse and validate against the template, constrained (the
  timed batch-1 runs) and unconstrained (transformers generate, no grammar) on the same images.

    python benchmarks/inference.py --model runs/gpu-spine-850/final
    python benchmarks/inference.py --model radscribe-tiny     # a registered name = UNTRAINED random init

Writes benchmarks/results/inference.json (or --out). ``--threads`` sets torch's and numpy's BLAS
threads for everything (RFI features and SVD, the unconstrained transformers run; the decoding loop
itself runs small models on one thread); default 1: on a busy 2-core machine two threads made
transformers' generate 100x slower and RFI's SVD 50x slower. Recorded with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from provenance import write_result

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "spine-cadma" / "valid" / "images"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def conformance(results) -> dict[str, object]:
    ok = [r for r in results if r.ok]
    valid = sum(r.valid for r in ok)
    return {"valid": valid, "of": len(ok), "share": round(valid / len(ok), 4) if ok else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="saved folder or registered name (default: the embedded model)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--single", type=int, default=20, help="images timed one by one (batch 1)")
    parser.add_argument("--batched", type=int, default=16, help="images for the throughput run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--unconstrained", type=int, default=None, help="images for the unconstrained conformance run (default: --single)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's own choice)")
    parser.add_argument("--rfi", action="store_true", help="Region-Focused Inference on (off by default, as in `radscribe report`)")
    parser.add_argument("--boxes-from", choices=("model", "detector"), default=None, help="override the release's boxes_from")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()
    if args.threads:  # numpy's BLAS too (RFI's SVD): it reads these when first imported
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.threads)

    import torch

    from radscribe.infer import Reporter, RFIConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    images = sorted(args.images.iterdir())
    if len(images) < max(args.single, args.batched) + 1:
        sys.exit(f"need at least {max(args.single, args.batched) + 1} images in {args.images}")
    start = time.perf_counter()
    rfi = RFIConfig() if args.rfi else None
    options = {"boxes_from": args.boxes_from} if args.boxes_from else {}
    reporter = Reporter.from_pretrained(args.model, rfi=rfi, batch_size=args.batch_size, **options)
    model, description = reporter.model, reporter.description
    load_s = time.perf_counter() - start
    reporter.report(images[:1])  # warm-up: builds the grammar transition caches once, as a server would

    single, constrained_results = [], []
    for path in images[1 : 1 + args.single]:
        start = time.perf_counter()
        constrained_results += reporter.report([path])
        single.append(time.perf_counter() - start)

    batch = images[1 : 1 + args.batched]
    before = reporter.decode_stats.to_dict()
    start = time.perf_counter()
    results = reporter.report(batch)
    batched_s = time.perf_counter() - start
    stats = {key: value - before[key] for key, value in reporter.decode_stats.to_dict().items()}
    failed = [f"{r.image}: {r.reason}" for r in results + constrained_results if not r.ok]

    free = Reporter(model, rfi=rfi, constrained=False, ground=(), batch_size=args.batch_size)
    unconstrained = free.report(images[1 : 1 + (args.unconstrained or args.single)])

    result = {
        "model": description,
        "device": str(model.device),
        "cpu_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "template": reporter.template.name,
        "grounding": list(reporter.ground),
        "rfi": args.rfi,
        "detector": reporter.model_info.get("detector"),
        "boxes_from": reporter.boxes_from if reporter.detector is not None else "model",
        "decoder": "radscribe.infer.decoding.generate_constrained",
        "load_s": round(load_s, 3),
        "report_batch1_p50_s": round(statistics.median(single), 3),
        "report_batch1_p95_s": round(percentile(single, 0.95), 3),
        "report_batch1_n": len(single),
        "batch_size": args.batch_size,
        "batched_images": len(batch),
        "batched_images_per_s": round(len(batch) / batched_s, 3),
        "written_tokens_per_s": round(stats["written_tokens"] / batched_s, 1),
        "model_choice_tokens_per_s": round(stats["model_choices"] / batched_s, 1),
        "written_tokens_per_image": round(stats["written_tokens"] / len(batch), 1),
        "model_choices_per_image": round(stats["model_choices"] / len(batch), 1),
        "decode_stats_batched": stats,
        "conformance_constrained": conformance(constrained_results + results),
        "conformance_unconstrained": conformance(unconstrained),
        "failed_images": failed,
        "images": f"{args.images} (first {1 + max(args.single, args.batched)} files, sorted)",
    }
    write_result(args.out.stem, result, args.out.parent)


if __name__ == "__main__":
    main()
