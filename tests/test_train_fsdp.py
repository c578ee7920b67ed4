"""Two FSDP processes (fully_shard, gloo on CPU) train radscribe-tiny-test as one process does, and resume exactly.

The model is the real radscribe family (Qwen2 decoder, EfficientNet vision tower) with the vision
tower frozen, LoRA on the language model (dropout off, so both runs draw no random masks) and the
S2D-Align memory adapter training: sharded units mix frozen and trainable parameters. The recipe
has a pairing stage and a reference stage, so retrieval (and validation generation) run with the
sharded model gathered whole on rank 0.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from radscribe.train import config_from_dict, train
from radscribe.train.checkpoint import latest_checkpoint, load_checkpoint
from test_train_ddp import free_port, records
from train_standin import make_datasets


def recipe(strategy: str = "fsdp"):
    # grad_accum 2 on 2 ranks: each rank runs two micro-batches of one example (target lengths differ),
    # so FSDP's accumulation without gradient sync and the token weighting across ranks are exercised
    return config_from_dict({
        "model": {"name": "radscribe-tiny-test", "overrides": {"device": "cpu"}, "memory_slots": 2,
                  "freeze_vision": True, "lora": {"r": 4, "lora_dropout": 0.0}},
        "data": {"tasks": {"report": 1.0, "region": 1.0}},
        "optim": {"lr": 1e-2, "batch_size": 4, "grad_accum": 2, "warmup_steps": 0},
        "stages": [{"name": "pairing", "kind": "pairing", "steps": 2}, {"name": "reference", "kind": "reference", "steps": 2}],
        "eval": {"every": 2, "max_examples_per_task": 3, "batch_size": 2,
                 "generation": {"metrics": ["bleu"], "max_examples": 2, "max_new_tokens": 6}},
        "checkpoint": {"every": 1, "keep_last": 5},
        "logging": {"tensorboard": "off"},
        "distributed": {"strategy": strategy},
        "device": "cpu",
    })


def _rank(rank: int, world_size: int, port: int, root: str, datasets) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # one process group for the three runs (train() joins a group it finds and leaves it open): torchrun
    # starts fresh processes for each run, and re-creating a group on one port in one process can hang
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        train(recipe(), f"{root}/sharded", datasets=datasets)
        # the same run killed after step 3 (inside the reference stage) and resumed
        train(recipe(), f"{root}/cut", datasets=datasets, stop_at_step=3)
        train(recipe(), f"{root}/cut", resume=True, datasets=datasets)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_sharded_ranks_match_one_process_and_resume_exactly(tmp_path, one_torch_thread):
    datasets = make_datasets(tmp_path / "data", train=8, valid=3)
    single = train(recipe(), tmp_path / "single", datasets=datasets)
    mp.spawn(_rank, args=(2, free_port(), str(tmp_path), datasets), nprocs=2, join=True)

    expected = load_file(str(single.final_model / "model.safetensors"))
    for run in ("sharded", "cut"):
        got = load_file(str(tmp_path / run / "final" / "model.safetensors"))
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=f"{run}: {name}")
    # the comparison means something: LoRA's B matrices start at zero, and training moved them
    assert any(float(expected[name].abs().max()) > 1e-3 for name in expected if "lora_B" in name)

    one, two = records(tmp_path / "single"), records(tmp_path / "sharded")
    assert [r["kind"] for r in one] == [r["kind"] for r in two]
    assert sum(r["kind"] == "valid" for r in two) == 2
    for a, b in zip(one, two, strict=True):
        if a["kind"] in ("train", "valid"):
            assert abs(a["loss"] - b["loss"]) < 1e-5
            assert a["task_loss"].keys() == b["task_loss"].keys()
        if a["kind"] == "valid":  # greedy generation by the gathered sharded model on rank 0
            assert a["generation"]["examples"] == b["generation"]["examples"] == 2
            assert a["generation"] == pytest.approx(b["generation"], abs=1e-6)
    # the resumed run's records after the cut equal the uninterrupted run's
    straight, resumed = records(tmp_path / "sharded"), records(tmp_path / "cut")
    assert [(r["kind"], r.get("step")) for r in resumed] == [(r["kind"], r.get("step")) for r in straight]
    for a, b in zip(straight, resumed, strict=True):
        if a["kind"] in ("train", "valid"):
            assert abs(a["loss"] - b["loss"]) < 1e-6
    # reference retrieval ran on the gathered sharded model and chose what one process chose
    assert json.loads((tmp_path / "sharded" / "references.json").read_text()) == json.loads((tmp_path / "single" / "references.json").read_text())
    # one process resumes the sharded run from its step-3 checkpoint and ends where one process ends
    cross = tmp_path / "cross"
    shutil.copytree(tmp_path / "sharded", cross)
    shutil.rmtree(cross / "checkpoints" / "step-00000004")
    shutil.rmtree(cross / "final")
    train(recipe(), cross, resume=True, datasets=datasets)
    got = load_file(str(cross / "final" / "model.safetensors"))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=f"cross: {name}")
    # the checkpoint layout is one process's: gathered weights and position-numbered optimiser state
    state = load_checkpoint(latest_checkpoint(tmp_path / "sharded"))
    plain = load_checkpoint(latest_checkpoint(tmp_path / "single"))
    assert state["model"].keys() == plain["model"].keys()
    assert state["optimizer"]["state"].keys() == plain["optimizer"]["state"].keys()
    for index, moments in plain["optimizer"]["state"].items():
        torch.testing.assert_close(state["optimizer"]["state"][index]["exp_avg"], moments["exp_avg"], rtol=0, atol=1e-6)


def test_sharded_checkpoint_state_has_the_single_process_layout(tmp_path):
    """fully_shard in a one-process group: gathered weights and position-numbered AdamW state equal an
    unsharded twin's after the same step, and they load back into the sharded optimiser."""
    from radscribe.train.distributed import is_sharded, load_optimizer_state, model_state, optimizer_state
    from train_standin import TinyVLM

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        plain = TinyVLM(memory_slots=2)
        plain.vision.requires_grad_(False)  # a frozen part inside the sharded unit
        sharded = TinyVLM(memory_slots=2)
        sharded.load_state_dict(plain.state_dict())
        sharded.vision.requires_grad_(False)
        from torch.distributed.fsdp import fully_shard

        fully_shard(sharded)
        assert is_sharded(sharded) and not is_sharded(plain)
        ids = torch.tensor([[5, 7, 9, 11]])
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.rand(1, 16), "labels": ids}
        optimizers = []
        for model in (plain, sharded):
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
            model(**batch).loss.backward()
            optimizer.step()
            optimizers.append(optimizer)
        expected, got = optimizers[0].state_dict(), optimizer_state(sharded, optimizers[1])
        assert got["param_groups"] == expected["param_groups"] and got["state"].keys() == expected["state"].keys()
        for index, moments in expected["state"].items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(got["state"][index][key], moments[key])
        weights = model_state(sharded)
        for name, value in plain.state_dict().items():
            torch.testing.assert_close(weights[name], value)
        optimizers[1].zero_grad(set_to_none=True)
        optimizers[1].state.clear()  # as a resumed run's fresh optimiser
        load_optimizer_state(sharded, optimizers[1], expected)
        reloaded = optimizer_state(sharded, optimizers[1])
        for index, moments in expected["state"].items():
            torch.testing.assert_close(reloaded["state"][index]["exp_avg_sq"], moments["exp_avg_sq"])
    finally:
        dist.destroy_process_group()
