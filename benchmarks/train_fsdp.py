"""Two FSDP processes (fully_shard, gloo, CPU) against one process on the same global batches: losses,
parameters, and a sharded run killed midway and resumed.

    nice -n 10 python benchmarks/train_fsdp.py [--data ../shared/data] [--model radscribe-tiny-test] [--steps 4]

For each setting every run goes through ``radscribe.train.train`` with the same recipe (global batch
4, grad_accum 2, a pairing and a reference stage of steps/2 each, checkpoints every step):

- ``lora``: frozen vision tower, LoRA r=8 (dropout off) on the language model, memory adapter;
- ``full_language``: frozen vision tower; the whole language model (tied embeddings included),
  projector and memory adapter train;
- ``full``: every parameter trains. radscribe-tiny's EfficientNet then runs in training mode:
  batch-norm statistics of each micro-batch and stochastic depth drawn from each rank's random
  stream, so its output depends on how the batch is split and on the rank, with or without
  sharding. The control ``single_process_split_like_the_ranks`` is one process run with micro-batches of
  one example (grad_accum 4, as each sharded rank runs): its distance from the plain one-process run
  is that effect alone. Its parameter difference of 8.0 is batch norm's ``num_batches_tracked``
  counter (one per micro-batch: 8 more in 4 steps); every ``final/`` tensor is compared, buffers too.

The two-process runs are started like torchrun would (RANK / WORLD_SIZE / MASTER_ADDR environment)
with torch.multiprocessing. Data: real CADMA spine studies (structured_report + phrase_grounding +
region) or synthetic images when ../shared/data is absent (see train_ddp.py). Reports the largest
per-step training loss difference, validation loss difference and final parameter difference
(fp32 weights of ``final/``) of sharded vs one process, and of the resumed sharded run vs the
uninterrupted one, plus wall times. Writes benchmarks/results/train_fsdp.json.
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
from train_ddp import prepare_manifest

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "lora": {"freeze_vision": True, "lora": {"r": 8, "lora_dropout": 0.0}},
    "full_language": {"freeze_vision": True},
    "full": {},
}


def recipe(manifest: Path, model: str, steps: int, setting: str):
    """Validation reads ``valid.jsonl`` next to ``manifest`` (four of its studies: a loss to compare, not a held-out score)."""
    from radscribe.train import config_from_dict

    half = max(1, steps // 2)
    return config_from_dict({
        "model": {"name": model, "memory_slots": 4, "overrides": {"max_length": 256, "device": "cpu"}, **SETTINGS[setting]},
        "data": {"train": str(manifest), "valid": str(manifest.parent / "valid.jsonl"), "train_split": None, "valid_split": None,
                 "max_train_studies": 8, "max_valid_studies": 4,
                 "tasks": {"structured_report": 1.0, "phrase_grounding": 1.0, "region": 1.0}},
        "optim": {"lr": 1e-3, "batch_size": 4, "grad_accum": 2, "warmup_steps": 0},
        "stages": [{"name": "pairing", "kind": "pairing", "steps": half},
                   {"name": "reference", "kind": "reference", "steps": steps - half}],
        "eval": {"every": steps, "max_examples_per_task": 3, "batch_size": 2},
        "checkpoint": {"every": 1, "keep_last": steps},
        "logging": {"tensorboard": "off"},
        "distributed": {"strategy": "fsdp"},
        "device": "cpu",
    })


def _rank(rank: int, port: int, manifest: str, model: str, steps: int, setting: str, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from radscribe.train import train

    config = recipe(Path(manifest), model, steps, setting)
    # one process group for the three runs (train() joins a group it finds and leaves it open): torchrun
    # starts fresh processes for each run, and re-creating a group on one port in one process can hang
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        train(config, f"{root}/sharded")
        train(config, f"{root}/cut", stop_at_step=steps // 2 + 1)  # killed inside the reference stage
        train(config, f"{root}/cut", resume=True)
    finally:
        torch.distributed.destroy_process_group()


def records(run_dir: Path, kind: str) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def max_parameter_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    first, second = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    if first.keys() != second.keys():
        raise RuntimeError(f"{a} and {b} saved different parameters")
    return max(float((first[k].float() - second[k].float()).abs().max()) for k in first)


def max_difference(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise RuntimeError(f"the runs logged {len(a)} and {len(b)} losses")
    return max(abs(x - y) for x, y in zip(a, b))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="radscribe-tiny-test")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from radscribe.data import read_manifest, write_manifest
    from radscribe.train import train

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, source = prepare_manifest(args.data, tmp)
        write_manifest(read_manifest(manifest)[:4], tmp / "valid.jsonl")
        for setting in args.settings:
            folder = tmp / setting
            started = time.perf_counter()
            train(recipe(manifest, args.model, args.steps, setting), folder / "single")
            single_seconds = time.perf_counter() - started
            started = time.perf_counter()
            mp.spawn(_rank, args=(free_port(), str(manifest), args.model, args.steps, setting, str(folder)), nprocs=2, join=True)
            sharded_seconds = time.perf_counter() - started
            one, two, resumed = folder / "single", folder / "sharded", folder / "cut"
            control = {}
            if setting == "full":
                split = recipe(manifest, args.model, args.steps, setting)
                split.optim.grad_accum = 4
                train(split, folder / "split")
                control = {"single_process_split_like_the_ranks_vs_single": {
                    "max_train_loss_difference": max_difference(records(one, "train"), records(folder / "split", "train")),
                    "max_valid_loss_difference": max_difference(records(one, "valid"), records(folder / "split", "valid")),
                    "max_parameter_difference": max_parameter_difference(one, folder / "split"),
                }}
            results[setting] = {
                "recipe": SETTINGS[setting] or "every parameter trains",
                "single_process_losses": records(one, "train"),
                "sharded_losses": records(two, "train"),
                "sharded_vs_single": {
                    "max_train_loss_difference": max_difference(records(one, "train"), records(two, "train")),
                    "max_valid_loss_difference": max_difference(records(one, "valid"), records(two, "valid")),
                    "max_parameter_difference": max_parameter_difference(one, two),
                },
                "resumed_vs_uninterrupted_sharded": {
                    "killed_after_step": args.steps // 2 + 1,
                    "max_train_loss_difference": max_difference(records(two, "train"), records(resumed, "train")),
                    "max_parameter_difference": max_parameter_difference(two, resumed),
                },
                **control,
                "single_process_seconds": round(single_seconds, 1),
                "sharded_seconds_three_runs": round(sharded_seconds, 1),
            }
    write_result("train_fsdp", {
        "model": args.model,
        "data": source,
        "global_batch": 4,
        "grad_accum": 2,
        "steps": args.steps,
        "settings": results,
        "note": ("CPU (gloo) shared with other jobs while measured; each rank uses 1 thread; the sharded wall time covers "
                 "three runs (uninterrupted, killed, resumed) including process start-up"),
    })


if __name__ == "__main__":
    main()
