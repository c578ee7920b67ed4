"""The one interface every metric implements, and the registry that finds metrics by name.

Like pycocoevalcap: ``compute_score(refs, hyps)`` takes parallel lists (one entry per sample; a
reference entry may be a list of references) and returns the corpus value plus per-sample values.
Every :class:`Score` carries its ``protocol`` tag (tokenisation, label mapping, averaging...), so no
number ever leaves radscribe without saying how it was produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Score:
    """A corpus value, its per-sample values (``None`` where a metric has no per-sample form) and its protocol."""

    name: str
    value: float
    per_sample: list[float] | None = None
    protocol: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The metric's name with its protocol, e.g. ``bleu4@r2gen``."""
        return f"{self.name}@{self.protocol}" if self.protocol else self.name


class MetricUnavailable(RuntimeError):
    """A metric that cannot run here (e.g. METEOR without Java); never silently substituted."""


class Scorer(Protocol):
    name: str

    def compute_score(self, refs: Sequence[Any], hyps: Sequence[Any]) -> list[Score]: ...


METRICS: dict[str, Callable[..., Scorer]] = {}


def register_metric(name: str) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    def decorate(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        METRICS[name] = factory
        return factory

    return decorate


def create_scorer(name: str, **options: Any) -> Scorer:
    """Build a registered scorer by name (``bleu``, ``rouge-l``, ``cider-d``, ``ce``, ``iou``, ``vqa``...)."""
    from radscribe.evaluate import _load_metric_modules

    _load_metric_modules()
    if name not in METRICS:
        raise KeyError(f"unknown metric '{name}'; known: {', '.join(sorted(METRICS))}")
    return METRICS[name](**options)
