"""The task prompts, kept as data in ``prompts.yaml`` beside this module."""

from __future__ import annotations

import string
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

PROMPT_FIELDS: dict[str, frozenset[str]] = {
    "structured_report": frozenset(),
    "structured_report_skeleton": frozenset({"skeleton"}),
    "report": frozenset(),
    "report_indication": frozenset({"indication"}),
    "grounded_report": frozenset(),
    "phrase_grounding": frozenset({"phrase"}),
    "detected_grounding": frozenset({"phrase", "proposals"}),
    "vqa": frozenset({"question"}),
    "region": frozenset({"region"}),
}


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    source = resources.files("radscribe.tasks").joinpath("prompts.yaml")
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for key, fields in PROMPT_FIELDS.items():
        text = data.get(key)
        if not isinstance(text, str):
            raise ValueError(f"{source}: '{key}': expected a prompt string, got {text!r}")
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        if used != fields:
            raise ValueError(f"{source}: '{key}': expected the placeholders {sorted(fields)}, found {sorted(used)}")
    regions = data.get("regions") or {}
    for name, rule in regions.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("parts"), str) or not isinstance(rule.get("min_parts"), int):
            raise ValueError(f"{source}: regions.'{name}': expected {{parts: <label>, min_parts: <int>}}, got {rule!r}")
    return data


def prompt(key: str, **fields: str) -> str:
    """The prompt ``key`` with its placeholders filled."""
    if key not in PROMPT_FIELDS:
        raise KeyError(f"no prompt '{key}'; known: {', '.join(PROMPT_FIELDS)}")
    return _load()[key].format(**fields)


def region_rules() -> dict[str, tuple[str, int]]:
    """Region label -> (label of its parts, how many parts make a region)."""
    return {name: (rule["parts"], rule["min_parts"]) for name, rule in (_load().get("regions") or {}).items()}
