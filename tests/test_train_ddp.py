"""Two processes (DDP, gloo on CPU) take the same optimiser steps as one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from radscribe.train import config_from_dict, train
from train_standin import make_datasets, tiny_factory


def recipe():
    # grad_accum 2 on 2 ranks: each rank runs two micro-batches of one example, with different
    # target lengths, so the token weighting across ranks and micro-batches is exercised
    return config_from_dict({
        "model": {"name": "stand-in"},
        "data": {"tasks": {"report": 1.0, "region": 1.0}},
        "optim": {"lr": 0.05, "batch_size": 4, "grad_accum": 2, "max_steps": 3, "warmup_steps": 0},
        "eval": {"every": 3, "max_examples_per_task": 3, "batch_size": 2},
        "checkpoint": {"every": 100},
        "logging": {"tensorboard": "off"},
        "device": "cpu",
    })


def _rank(rank: int, world_size: int, port: int, run_dir: str, datasets) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(recipe(), run_dir, model_factory=tiny_factory, datasets=datasets)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    datasets = make_datasets(tmp_path / "data", train=8, valid=3)
    single = train(recipe(), tmp_path / "single", model_factory=tiny_factory, datasets=datasets)
    mp.spawn(_rank, args=(2, free_port(), str(tmp_path / "ddp"), datasets), nprocs=2, join=True)

    expected = torch.load(single.final_model / "weights.pt", weights_only=True)
    got = torch.load(tmp_path / "ddp" / "final" / "weights.pt", weights_only=True)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5)
    one, two = records(tmp_path / "single"), records(tmp_path / "ddp")
    for a, b in zip(one, two, strict=True):
        assert a["kind"] == b["kind"]
        if a["kind"] in ("train", "valid"):
            assert abs(a["loss"] - b["loss"]) < 1e-5
            assert a["task_loss"].keys() == b["task_loss"].keys()
