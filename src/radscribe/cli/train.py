"""`radscribe train` and `radscribe ablate`: run a training recipe (configs/*.yaml), resume it, compare stages."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from radscribe.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("train")(train_command)
    app.command("ablate")(ablate_command)


def train_command(
    config: Path = typer.Argument(None, help="Training recipe (YAML), e.g. configs/radscribe-tiny-spine.yaml."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run folder; default runs/<recipe name>."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder from its latest checkpoint."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a recipe key, e.g. --set optim.lr=1e-4 (repeatable)."),
) -> None:
    """Train a model by a recipe; checkpoints, metrics.jsonl and loss_curve.png go to the run folder.

    Under torchrun (or accelerate launch) every process runs this command and DDP splits each batch.
    """
    from radscribe.train import ConfigError, load_config, train

    if (config is None) == (resume is None):
        fail("give either a recipe (radscribe train CONFIG.yaml) or --resume RUN_DIR")
    if resume is not None:
        if config is None and not (resume / "config.yaml").exists():
            fail(f"{resume} is not a run folder (no config.yaml in it)")
        config, run_dir = resume / "config.yaml", resume
    run_dir = run_dir or Path("runs") / config.stem
    try:
        recipe = load_config(config, overrides or [])
        result = train(recipe, run_dir, resume=resume is not None)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        fail(str(error))
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank gets here; one summary is enough
        return
    best = f"{result.best_valid_loss:.4f}" if result.best_valid_loss is not None else "n/a"
    console.print(f"trained {result.steps} steps into {run_dir}: final model {result.final_model}, best validation loss {best}")


def ablate_command(
    config: Path = typer.Argument(..., help="Training recipe (YAML) with stages."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Folder for one run per setting; default runs/<recipe name>-ablation."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a recipe key (repeatable)."),
) -> None:
    """Train each curriculum setting (stage subsets, memory on/off) on the same step budget; write ablation.md/json."""
    from radscribe.train import ConfigError, load_config, run_ablation
    from radscribe.train.ablation import ablation_table

    run_dir = run_dir or Path("runs") / f"{config.stem}-ablation"
    try:
        rows = run_ablation(load_config(config, overrides or []), run_dir)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
        fail(str(error))
    console.print(ablation_table(rows))
    console.print(f"written: {run_dir / 'ablation.md'}, {run_dir / 'ablation.json'}")
