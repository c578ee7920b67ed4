"""`radscribe plan`: memory and step time from configs alone (meta device), on the shipped recipes and
shipped architectures; the numbers' agreement with measured memory is in benchmarks/plan_vs_measured.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.train.plan import GIB, make_plan, memory_lines, reference_shapes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def medgemma_plan():
    return make_plan(REPO / "configs" / "medgemma-4b-qlora.yaml", gpus=2, backbone="medgemma-4b")


def test_the_medgemma_recipe_is_priced_from_its_architecture_without_weights(medgemma_plan):
    plan = medgemma_plan
    assert 4.2e9 < plan.shape.total < 4.4e9  # Gemma 3 4B: 3.9 B language + 0.4 B SigLIP
    assert plan.recipe_strategy == "QLoRA, DDP" and plan.checkpointing
    lines = {line.strategy: line for line in plan.lines}
    lora, qlora, full, sharded = lines["LoRA, DDP"], lines["QLoRA, DDP"], lines["full, DDP"], lines["full, FSDP"]
    assert qlora.weights < lora.weights / 2  # the language model in 4 bits
    assert lora.optimizer < full.optimizer / 20  # AdamW moments of the adapters only
    assert sharded.weights + sharded.gradients + sharded.optimizer < 0.6 * (full.weights + full.gradients + full.optimizer)
    assert all(line.activations_checkpointed < line.activations for line in plan.lines)
    assert plan.seconds["LoRA, DDP"] > 0 and plan.flops["full, DDP"] > plan.flops["LoRA, DDP"]


def test_fewer_sequences_per_gpu_shrink_activations_not_weights(medgemma_plan):
    plan = medgemma_plan
    fewer = memory_lines(plan.shape, dataclasses.replace(plan.workload, sequences=1), world=16)
    for wide, narrow in zip(plan.lines, fewer):
        assert narrow.activations_checkpointed < wide.activations_checkpointed
    assert fewer[2].weights == plan.lines[2].weights
    with pytest.raises(ValueError, match="multiple of GPUs x optim.grad_accum"):
        make_plan(REPO / "configs" / "lingshu-7b.yaml", gpus=3, backbone="qwen2.5-vl-7b")


def test_the_command_prints_the_table_and_json_and_names_a_missing_backbone():
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "configs/smoke-spine.yaml", "--gpu-gib", "16"])
    assert result.exit_code == 0, result.output
    marked = [line for line in result.output.splitlines() if line.endswith("<- recipe")]
    assert len(marked) == 1 and marked[0].startswith("full, DDP") and "full, DDP: fits" in result.output
    result = runner.invoke(app, ["plan", "configs/smoke-spine.yaml", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["recipe_strategy"] == "full, DDP" and data["memory_gib"]["full, DDP"]["total"] * GIB > 0
    result = runner.invoke(app, ["plan", "configs/lingshu-7b.yaml"])
    assert result.exit_code == 1 and "/path/to/Lingshu-7B" in result.output and "qwen2.5-vl-7b" in result.output


def test_shipped_architectures_are_listed():
    assert {"medgemma-4b", "qwen2.5-vl-7b"} <= set(reference_shapes())


def test_the_recipes_distributed_strategy_picks_the_sharded_line():
    plan = make_plan(REPO / "configs" / "lingshu-7b.yaml", gpus=8, backbone="qwen2.5-vl-7b", overrides=["distributed.strategy=fsdp"])
    assert plan.recipe_strategy == "LoRA, FSDP"
    lines = {line.strategy: line for line in plan.lines}
    sharded, replicated = lines["LoRA, FSDP"], lines["LoRA, DDP"]
    assert sharded.trainable == replicated.trainable and sharded.activations == replicated.activations
    assert sharded.weights < replicated.weights / 3  # the frozen base is sharded too (8 GPUs, plus two gathered layers)
    assert make_plan(REPO / "configs" / "lingshu-7b.yaml", gpus=8, backbone="qwen2.5-vl-7b").recipe_strategy == "LoRA, DDP"


def test_fsdp_refuses_the_4bit_base_and_unknown_strategies():
    from radscribe.train import ConfigError, load_config

    with pytest.raises(ConfigError, match="distributed.strategy.*quantised"):
        load_config(REPO / "configs" / "lingshu-7b-qlora.yaml", ["distributed.strategy=fsdp"])
    with pytest.raises(ConfigError, match="distributed.strategy.*one of ddp, fsdp"):
        load_config(REPO / "configs" / "smoke-spine.yaml", ["distributed.strategy=zero3"])
