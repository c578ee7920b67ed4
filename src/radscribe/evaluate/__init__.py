"""Evaluation: NLG, clinical efficacy, grounding, VQA and structured-report metrics, each tagged with its protocol."""

from __future__ import annotations

import importlib

from radscribe.evaluate.base import METRICS, MetricUnavailable, Score, Scorer, create_scorer, register_metric
from radscribe.evaluate.predictions import Prediction, PredictionError, read_predictions, write_predictions
from radscribe.evaluate.runner import EvaluationOptions, EvaluationResult, evaluate, write_result

# Modules that register metrics on import; each metric family adds its module name here.
METRIC_MODULES: tuple[str, ...] = ("nlg", "clinical", "structured", "grounding", "vqa")


def _load_metric_modules() -> None:
    for module in METRIC_MODULES:
        importlib.import_module(f"radscribe.evaluate.{module}")


def metric_names() -> list[str]:
    """Every registered metric name, for checking configs before any work starts."""
    _load_metric_modules()
    return sorted(METRICS)


__all__ = [
    "METRICS",
    "EvaluationOptions",
    "EvaluationResult",
    "MetricUnavailable",
    "Prediction",
    "PredictionError",
    "Score",
    "Scorer",
    "create_scorer",
    "evaluate",
    "metric_names",
    "read_predictions",
    "register_metric",
    "write_predictions",
    "write_result",
]
