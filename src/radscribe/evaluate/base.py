"""The one interface every metric implements, and the registries that find metrics and families by name.

Two tables, one dispatch: :data:`METRICS` holds per-metric scorers (text pairs in, scores out; the
trainer's in-training metrics use them), :data:`FAMILY_FUNCTIONS` holds the metric families of
``radscribe evaluate`` (reference studies and a predictions file in, scores with bootstrap statistics
out). Each family module registers itself on import; :mod:`radscribe.evaluate` imports them all.

Like pycocoevalcap: ``compute_score(refs, hyps)`` takes parallel lists (one entry per sample; a
reference entry may be a list of references) and returns the corpus value plus per-sample values.
Every :class:`Score` carries its ``protocol`` tag (tokenisation, label mapping, averaging...), so no
number ever leaves radscribe without saying how it was produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: the registry imports nothing at run time
    from radscribe.evaluate.bootstrap import WeightedStatistic


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


@dataclass
class FamilyOutput:
    """Scores of one family, the ids of the samples they were computed over, and bootstrap statistics
    (a statistic may resample groups of samples, e.g. images with all their questions)."""

    scores: list[Score]
    sample_ids: list[str]
    statistics: dict[str, WeightedStatistic] = field(default_factory=dict)


# family name -> function(reference studies, predictions by study id, EvaluationOptions) -> FamilyOutput
FAMILY_FUNCTIONS: dict[str, Callable[..., FamilyOutput]] = {}


def register_family(name: str) -> Callable[[Callable[..., FamilyOutput]], Callable[..., FamilyOutput]]:
    def decorate(function: Callable[..., FamilyOutput]) -> Callable[..., FamilyOutput]:
        FAMILY_FUNCTIONS[name] = function
        return function

    return decorate


def scores_of(statistics: dict[str, WeightedStatistic], details: dict[str, dict[str, Any]] | None = None) -> list[Score]:
    """One :class:`Score` per statistic (its value on the full sample); keys are metric names."""
    details = details or {}
    return [Score(name, statistic.value(), details=details.get(name, {})) for name, statistic in statistics.items()]
