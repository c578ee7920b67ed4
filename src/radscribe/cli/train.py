"""`radscribe train`, `ablate` and `export`: run a training recipe (configs/*.yaml), resume it, compare
stages, and turn a run into a release folder (what ships as the embedded model)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from radscribe.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train_command)
    app.command("ablate")(ablate_command)
    app.command("export")(export_command)


def train_command(
    config: Path = typer.Argument(None, help="Training recipe (YAML), e.g. configs/radscribe-tiny-spine.yaml."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run folder; default runs/<recipe name>."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder from its latest checkpoint."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a recipe key, e.g. --set optim.lr=1e-4 (repeatable)."),
) -> None:
    """Train a model by a recipe; checkpoints, metrics.jsonl and loss_curve.png go to the run folder.

    A recipe with ``kind: detector`` trains a box detector (configs/vertebra-detector.yaml); any other
    trains a vision-language model. Under torchrun every process runs this command and each global
    batch is split across them (the recipe's distributed.strategy: ddp replicas or fsdp shards).
    """
    from radscribe.train import ConfigError, load_config, train
    from radscribe.train.config import recipe_kind

    if (config is None) == (resume is None):
        fail("give either a recipe (radscribe train CONFIG.yaml) or --resume RUN_DIR")
    if resume is not None:
        if config is None and not (resume / "config.yaml").exists():
            fail(f"{resume} is not a run folder (no config.yaml in it)")
        config, run_dir = resume / "config.yaml", resume
    run_dir = run_dir or Path("runs") / config.stem
    try:
        if recipe_kind(config) == "detector":
            _train_detector(config, run_dir, resume is not None, overrides or [])
            return
        recipe = load_config(config, overrides or [])
        result = train(recipe, run_dir, resume=resume is not None)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        fail(str(error))
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank gets here; one summary is enough
        return
    best = f"{result.best_valid_loss:.4f}" if result.best_valid_loss is not None else "n/a"
    console.print(f"trained {result.steps} steps into {run_dir}: final model {result.final_model}, best validation loss {best}")


def _train_detector(config: Path, run_dir: Path, resume: bool, overrides: list[str]) -> None:
    from radscribe.train.detector import load_detector_recipe, train_detector

    result = train_detector(load_detector_recipe(config, overrides), run_dir, resume=resume)
    best = result["best"]
    summary = f"F1@0.5 {best['f1_iou50']:.4f}, F1@0.7 {best['f1_iou70']:.4f} at step {best['step']}" if best else "no validation"
    console.print(f"trained {result['steps']} steps into {run_dir}: final detector {run_dir / 'final'}, best {run_dir / 'best'} ({summary})")


def ablate_command(
    config: Path = typer.Argument(..., help="Training recipe (YAML) with stages."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Folder for one run per setting; default runs/<recipe name>-ablation."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a recipe key (repeatable)."),
    budget: int = typer.Option(None, "--budget", min=1, help="Optimiser steps per setting (default: the recipe's full curriculum)."),
) -> None:
    """Train each setting (stage subsets, memory on/off, recipe changes) on the same step budget; write ablation.md/json."""
    from radscribe.train import ConfigError, load_config, run_ablation
    from radscribe.train.ablation import ablation_table

    run_dir = run_dir or Path("runs") / f"{config.stem}-ablation"
    try:
        rows = run_ablation(load_config(config, overrides or []), run_dir, budget=budget)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        fail(str(error))
    console.print(ablation_table(rows))
    console.print(f"written: {run_dir / 'ablation.md'}, {run_dir / 'ablation.json'}")


def export_command(
    run: Path = typer.Argument(..., help="A training run folder (its final/ or best/ model) or a saved model folder."),
    destination: Path = typer.Argument(..., help="The release folder to write (replaced atomically)."),
    detector: Path = typer.Option(None, "--detector", help="A detector run or saved detector folder to ship beside the model."),
    abstain: Path = typer.Option(None, "--abstain", help='JSON {"fields": {template: [field ids]}}: fields written "not assessed".'),
    name: str = typer.Option(None, "--name", help="Release name recorded in release.json."),
    boxes_from: str = typer.Option("model", "--boxes-from", help="Whose boxes the release's reports carry for the detector's phrases: model or detector."),
) -> None:
    """Write a release folder: the model (loadable by radscribe and the Hugging Face Auto classes), its detector,
    abstentions and release.json."""
    import json

    from radscribe.models.embedded import export_release

    release: dict = {"release": name} if name else {}
    for key, path in (("recipe", run / "config.yaml"), ("training", run / "result.json")):
        if path.exists():
            release[key] = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else path.read_text(encoding="utf-8")
    try:
        folder = export_release(run, destination, detector=detector, abstain=abstain, release=release, boxes_from=boxes_from)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    console.print(f"exported {run} to {folder}")
