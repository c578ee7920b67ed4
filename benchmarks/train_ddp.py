"""Two DDP processes (gloo, CPU) against one process on the same global batches: losses and parameters.

    python benchmarks/train_ddp.py [--data ../shared/data] [--model radscribe-tiny-test] [--steps 3]

Both runs go through ``radscribe.train.train`` with the same recipe (global batch 4, one stage);
the two-process run is started like torchrun would (RANK / WORLD_SIZE / MASTER_ADDR environment)
with torch.multiprocessing. Data: real CADMA spine studies (structured_report + phrase_grounding +
region, so target lengths differ across ranks) or synthetic images when ../shared/data is absent.
Reports the largest per-step loss difference and the largest parameter difference after the last
step (fp32 checkpoint weights), plus wall time of each run. Writes benchmarks/results/train_ddp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from provenance import write_result


REPO = Path(__file__).resolve().parents[1]


def recipe(manifest: Path, model: str, steps: int):
    from radscribe.train import config_from_dict

    return config_from_dict({
        "model": {"name": model, "memory_slots": 4, "overrides": {"max_length": 256}},
        "data": {"train": str(manifest), "train_split": None, "max_train_studies": 8,
                 "tasks": {"structured_report": 1.0, "phrase_grounding": 1.0, "region": 1.0}},
        "optim": {"lr": 1e-3, "batch_size": 4, "grad_accum": 1, "max_steps": steps, "warmup_steps": 0},
        "checkpoint": {"every": steps},
        "logging": {"tensorboard": "off"},
        "device": "cpu",
    })


def _rank(rank: int, port: int, manifest: str, model: str, steps: int, run_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from radscribe.train import train

    train(recipe(Path(manifest), model, steps), run_dir)


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from radscribe.train.checkpoint import latest_checkpoint, load_checkpoint

    return load_checkpoint(latest_checkpoint(run_dir))["model"]


def prepare_manifest(data: Path, folder: Path) -> tuple[Path, str]:
    from radscribe.data import read_manifest, write_manifest

    if (data / "spine-cadma").is_dir():
        from radscribe.annotate import annotate_spine_manifest
        from radscribe.data.importers.base import import_dataset

        import_dataset("cadma", data / "spine-cadma", folder / "all.jsonl")
        write_manifest([s for s in read_manifest(folder / "all.jsonl") if s.split == "train"][:8], folder / "subset.jsonl")
        annotate_spine_manifest(folder / "subset.jsonl", folder / "spine.jsonl")
        return folder / "spine.jsonl", "real CADMA spine studies"
    import numpy as np
    from PIL import Image

    from radscribe.types import Box, ImageRef, Study

    rng = np.random.default_rng(0)
    studies = []
    for index in range(8):
        Image.fromarray(rng.integers(0, 255, (416, 229), dtype=np.uint8), mode="L").save(folder / f"{index}.png")
        top = 0.1 + 0.05 * index
        studies.append(Study(id=f"s{index}", images=[ImageRef(f"{index}.png", 229, 416)], structured=f"# Report\n- **Finding:** {index}",
                             boxes=[Box("vertebra", 0.4, top, 0.6, top + 0.05 * (1 + index % 3))]))
    write_manifest(studies, folder / "synthetic.jsonl")
    return folder / "synthetic.jsonl", "synthetic images (CADMA data absent)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="radscribe-tiny-test")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_ddp.json")
    args = parser.parse_args()
    from radscribe.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = prepare_manifest(args.data, tmp)
        started = time.perf_counter()
        train(recipe(manifest, args.model, args.steps), tmp / "single")
        single_seconds = time.perf_counter() - started
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        started = time.perf_counter()
        mp.spawn(_rank, args=(port, str(manifest), args.model, args.steps, str(tmp / "ddp")), nprocs=2, join=True)
        ddp_seconds = time.perf_counter() - started
        one, two = losses(tmp / "single"), losses(tmp / "ddp")
        a, b = final_weights(tmp / "single"), final_weights(tmp / "ddp")
        parameter_diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    result = {
        "model": args.model,
        "data": source,
        "global_batch": 4,
        "steps": args.steps,
        "single_process_losses": one,
        "two_process_losses": two,
        "max_loss_difference": max(abs(x - y) for x, y in zip(one, two)),
        "max_parameter_difference": parameter_diff,
        "single_process_seconds": single_seconds,
        "two_process_seconds": ddp_seconds,
        "note": "CPU shared with other jobs while measured; each DDP rank uses 1 thread; wall times include start-up",
    }
    write_result(args.out.stem, result, args.out.parent)


if __name__ == "__main__":
    main()
