"""`radscribe plan`: what a training recipe will cost (memory per GPU, step time) before it starts."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radscribe.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("plan")(plan_command)


def plan_command(
    recipe: Path = typer.Argument(..., help="Training recipe (YAML), e.g. configs/medgemma-4b-spine.yaml."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs per node."),
    nodes: int = typer.Option(1, "--nodes", help="Nodes."),
    backbone: str = typer.Option(
        None, "--backbone",
        help="Architecture to plan for when model.name's folder is not on this machine: a checkpoint folder, a "
        "config.json, or a shipped architecture (medgemma-4b, qwen2.5-vl-7b).",
    ),
    gpu_memory: float = typer.Option(None, "--gpu-gib", help="Also say which strategies fit a GPU of this many GiB."),
    peak_tflops: float = typer.Option(None, "--peak-tflops", help="Dense bf16 peak of one GPU (default 989: H100/H200 SXM)."),
    utilisation: float = typer.Option(None, "--utilisation", help="Fraction of peak the step time assumes (default 0.40)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a recipe key, e.g. --set optim.batch_size=32 (repeatable)."),
) -> None:
    """Parameters, optimiser state, gradients, activations (with and without gradient checkpointing), memory per
    GPU for DDP / FSDP / LoRA / QLoRA and the step time, from configs alone: no weights are read."""
    from radscribe.train import ConfigError
    from radscribe.train.plan import DEFAULT_PEAK_TFLOPS, DEFAULT_UTILISATION, fits, format_plan, make_plan

    try:
        plan = make_plan(
            recipe, gpus, nodes, backbone, overrides or [],
            peak_tflops=peak_tflops or DEFAULT_PEAK_TFLOPS, utilisation=utilisation or DEFAULT_UTILISATION,
        )
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2))
        return
    typer.echo(format_plan(plan))
    if gpu_memory is not None:
        verdict = ", ".join(f"{name}: {'fits' if ok else 'does not fit'}" for name, ok in fits(plan, gpu_memory).items())
        console.print(f"on {gpu_memory:g} GiB GPUs: {verdict}")
