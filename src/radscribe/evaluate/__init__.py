"""Evaluation: NLG, clinical efficacy, grounding, VQA and structured-report metrics, each tagged with its protocol."""

from __future__ import annotations

import importlib

from radscribe.evaluate.base import METRICS, MetricUnavailable, Score, Scorer, create_scorer, register_metric

# Modules that register metrics on import; each metric family adds its module name here.
METRIC_MODULES: tuple[str, ...] = ()


def _load_metric_modules() -> None:
    for module in METRIC_MODULES:
        importlib.import_module(f"radscribe.evaluate.{module}")


__all__ = ["METRICS", "MetricUnavailable", "Score", "Scorer", "create_scorer", "register_metric"]
