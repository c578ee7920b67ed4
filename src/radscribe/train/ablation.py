"""`radscribe ablate`: train each setting with the same step budget and tabulate validation results.

Settings come from the recipe's ``ablation`` list, or by default: the first stage alone, each longer
prefix of the stages, and all stages without the memory adapter (``memory_slots: 0``). A setting may
also change any recipe key (``set: ["model.overrides.vision.pretrained=false", "augment=null"]``), to
measure one lever at a time. Every setting gets the budget of the full curriculum (the sum of its
stages' steps), shared among its own stages in proportion to their configured steps. Each setting is
a normal run folder, so an interrupted ablation picks up where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from radscribe.data.manifest import atomic_write
from radscribe.train.config import StageSection, TrainConfig, apply_override, config_from_dict
from radscribe.train.loop import RESULT_FILE, train


def ablation_settings(config: TrainConfig) -> list[dict[str, Any]]:
    if config.ablation:
        return [dict(setting) for setting in config.ablation]
    names = [stage.name for stage in config.resolved_stages()]
    settings = [{"name": "+".join(names[: n + 1]), "stages": names[: n + 1]} for n in range(len(names))]
    if config.model.memory_slots != 0:
        settings.append({"name": "+".join(names) + " no-memory", "stages": names, "memory_slots": 0})
    return settings


def setting_config(config: TrainConfig, setting: dict[str, Any], budget: int | None = None) -> TrainConfig:
    """The recipe for one setting: its stages, rescaled to the budget (default: the full curriculum's
    steps); its memory choice and recipe changes."""
    derived = copy.deepcopy(config)
    stages = config.resolved_stages()
    budget = budget or sum(stage.steps for stage in stages)
    chosen: list[StageSection] = [s for s in stages if s.name in (setting.get("stages") or [s.name for s in stages])]
    configured = sum(stage.steps for stage in chosen)
    steps = [max(1, round(budget * stage.steps / configured)) for stage in chosen]
    steps[-1] += budget - sum(steps)  # rounding leftovers go to the last stage
    derived.stages = [dataclasses.replace(stage, steps=n) for stage, n in zip(chosen, steps)]
    if "memory_slots" in setting:
        derived.model.memory_slots = setting["memory_slots"]
    derived.ablation = None
    if setting.get("set"):
        raw = derived.to_dict()
        for override in setting["set"]:
            apply_override(raw, override, f"ablation setting '{setting['name']}'")
        derived = config_from_dict(raw, f"ablation setting '{setting['name']}'")
    return derived


def run_ablation(config: TrainConfig, out_dir: Path | str, budget: int | None = None, **train_kwargs: Any) -> list[dict[str, Any]]:
    """Train every setting into ``out_dir/<setting>`` and write ``ablation.json`` and ``ablation.md``.

    ``budget``: optimiser steps per setting (a reduced budget for a quick comparison); default the recipe's.
    """
    out_dir = Path(out_dir)
    rows = []
    for setting in ablation_settings(config):
        run_dir = out_dir / _folder_name(setting["name"])
        derived = setting_config(config, setting, budget)
        result_path = run_dir / RESULT_FILE
        if not result_path.exists():  # finished settings are read back, not retrained
            train(derived, run_dir, resume=run_dir.exists(), **train_kwargs)
        result = json.loads(result_path.read_text(encoding="utf-8"))
        rows.append({
            "setting": setting["name"],
            "stages": [f"{s.name}:{s.steps}" for s in derived.stages],
            "memory_slots": derived.model.memory_slots,
            "set": list(setting.get("set") or []),
            "steps": result["steps"],
            "valid": result["last_valid"],
            "run_dir": str(run_dir),
        })
    with atomic_write(out_dir / "ablation.json") as handle:
        json.dump(rows, handle, indent=2)
    with atomic_write(out_dir / "ablation.md") as handle:
        handle.write(ablation_table(rows))
    return rows


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one row per setting; validation loss overall, per task, and generation metrics."""
    tasks = sorted({t for r in rows if r["valid"] for t in r["valid"].get("task_loss", {})})
    metrics = sorted({m for r in rows if r["valid"] for m in r["valid"].get("generation", {}) if m != "examples"})
    header = ["setting", "stages (steps)", "memory", "changes", "valid loss", *(f"loss {t}" for t in tasks), *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        valid = row["valid"] or {}
        memory = "default" if row["memory_slots"] is None else str(row["memory_slots"])
        changes = ", ".join(f"`{change}`" for change in row.get("set", [])) or "-"
        cells = [row["setting"], ", ".join(row["stages"]), memory, changes, _fmt(valid.get("loss"))]
        cells += [_fmt(valid.get("task_loss", {}).get(t)) for t in tasks]
        cells += [_fmt(valid.get("generation", {}).get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nValidation loss is the token mean on the validation examples of each setting's last stage; settings "
        "with a reference stage are scored with the retrieved reference report in their prompts.\n"
    )
    return "\n".join(lines) + "\n" + note


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_+" else "_" for c in name)
