"""Bootstrap confidence intervals and paired system comparisons for corpus metrics.

Every resample recomputes the *corpus* statistic on the resampled test set (percentile bootstrap), which
is what makes it right for metrics that are not means of per-sample values (corpus BLEU pools n-gram
counts; CIDEr-D takes its idf from the scored references; micro-F1 pools TP/FP/FN).

Two ways to describe a statistic:

- any ``Callable[[np.ndarray], float]`` taking the resampled sample indices (length ``n``, with repeats):
  general, one Python call per resample;
- a :class:`WeightedStatistic` evaluating a whole batch of resamples from their multiplicities
  (``weights[b, i]`` = how often sample ``i`` is drawn in resample ``b``): :class:`SampleMean` for
  averaged metrics, :class:`SufficientStatistic` for anything computed from summed per-sample counts
  (BLEU, micro-F1...), and metric-specific ones (CIDEr-D's df-resampling statistic in ``nlg``).

Resample ``b`` of seed ``s`` draws its indices from ``numpy.random.default_rng((s, b))``, so results do not
depend on batching and two systems compared with the same seed see the same resamples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

IndexStatistic = Callable[[np.ndarray], float]


class WeightedStatistic(ABC):
    """A corpus statistic of ``size`` samples, evaluated for a batch of resample multiplicities at once."""

    size: int

    @abstractmethod
    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        """``weights`` (B, size) multiplicities summing to ``size`` per row -> (B,) statistic values."""

    def value(self) -> float:
        """The statistic on the original sample (every weight 1)."""
        return float(self.evaluate(np.ones((1, self.size)))[0])


class SampleMean(WeightedStatistic):
    """The mean of fixed per-sample values (ROUGE-L, per-sample accuracies...)."""

    def __init__(self, values: np.ndarray | list[float]) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.ndim != 1 or self.values.size == 0:
            raise ValueError(f"SampleMean needs a non-empty 1-D array of per-sample values, got shape {self.values.shape}")
        self.size = self.values.size

    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        return weights @ self.values / self.size


class SufficientStatistic(WeightedStatistic):
    """A statistic computed from column sums of per-sample statistics, e.g. BLEU's matches and lengths.

    ``aggregate`` maps summed statistics (B, k) to values (B,); a resample's sums are one matrix product.
    """

    def __init__(self, per_sample: np.ndarray, aggregate: Callable[[np.ndarray], np.ndarray]) -> None:
        self.per_sample = np.asarray(per_sample, dtype=np.float64)
        if self.per_sample.ndim != 2 or self.per_sample.shape[0] == 0:
            raise ValueError(f"per-sample statistics must be a non-empty (n, k) array, got shape {self.per_sample.shape}")
        self.aggregate = aggregate
        self.size = self.per_sample.shape[0]

    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        return np.asarray(self.aggregate(weights @ self.per_sample), dtype=np.float64)


def grouped(statistic: SufficientStatistic, groups: list[int] | np.ndarray) -> SufficientStatistic:
    """The same statistic with its per-sample rows summed per group (e.g. the questions of one image), so
    that resamples draw whole groups: samples that are not independent are resampled together."""
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (statistic.size,):
        raise ValueError(f"{len(groups)} group ids for {statistic.size} samples")
    _, index = np.unique(groups, return_inverse=True)
    sums = np.zeros((int(index.max()) + 1, statistic.per_sample.shape[1]))
    np.add.at(sums, index, statistic.per_sample)
    return SufficientStatistic(sums, statistic.aggregate)


def resample_indices(n: int, seed: int, start: int, stop: int) -> np.ndarray:
    """Indices of resamples ``start``..``stop - 1`` (rows) of ``n`` samples drawn with replacement."""
    return np.stack([np.random.default_rng((seed, b)).integers(0, n, n) for b in range(start, stop)])


def indices_to_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """Multiplicities (B, n) of each sample in each resample row of ``indices`` (B, n)."""
    rows = indices.shape[0]
    flat = (np.arange(rows)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def _size_of(statistic: WeightedStatistic | IndexStatistic, n: int | None) -> int:
    if isinstance(statistic, WeightedStatistic):
        if n is not None and n != statistic.size:
            raise ValueError(f"n={n} does not match the statistic's {statistic.size} samples")
        return statistic.size
    if n is None:
        raise ValueError("n (the number of samples) is required for an index-based statistic")
    return n


def _replicates(statistic: WeightedStatistic | IndexStatistic, n: int, n_resamples: int, seed: int, batch: int) -> np.ndarray:
    values = np.empty(n_resamples)
    for start in range(0, n_resamples, batch):
        stop = min(start + batch, n_resamples)
        indices = resample_indices(n, seed, start, stop)
        if isinstance(statistic, WeightedStatistic):
            values[start:stop] = statistic.evaluate(indices_to_weights(indices, n))
        else:
            values[start:stop] = [statistic(row) for row in indices]
    return values


def _point(statistic: WeightedStatistic | IndexStatistic, n: int) -> float:
    if isinstance(statistic, WeightedStatistic):
        return statistic.value()
    return float(statistic(np.arange(n)))


def _validate(n: int, n_resamples: int, alpha: float) -> None:
    if n < 1:
        raise ValueError(f"cannot bootstrap {n} samples")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate on the full sample and the percentile interval at level ``1 - alpha``."""

    estimate: float
    low: float
    high: float
    alpha: float
    n_resamples: int
    seed: int
    replicates: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """System A minus system B on the same resamples.

    ``p_value`` is the two-sided bootstrap share ``2 * min(P(d <= 0), P(d >= 0))`` capped at 1 (resolution
    ``1 / n_resamples``); ``share_a_better`` is the fraction of resamples where A beats B (Koehn, 2004).
    """

    difference: float
    low: float
    high: float
    p_value: float
    share_a_better: float
    estimate_a: float
    estimate_b: float
    alpha: float
    n_resamples: int
    seed: int
    replicates: np.ndarray = field(repr=False, compare=False)


def bootstrap(
    statistic: WeightedStatistic | IndexStatistic,
    n: int | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    batch: int = 64,
) -> BootstrapResult:
    """Percentile bootstrap of a corpus statistic (see the module docstring for the two statistic forms)."""
    size = _size_of(statistic, n)
    _validate(size, n_resamples, alpha)
    replicates = _replicates(statistic, size, n_resamples, seed, batch)
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(_point(statistic, size), float(low), float(high), alpha, n_resamples, seed, replicates)


def bootstrap_ci(
    statistic: WeightedStatistic | IndexStatistic,
    n: int | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """``(low, high)`` of the percentile bootstrap interval; :func:`bootstrap` returns everything."""
    result = bootstrap(statistic, n, n_resamples=n_resamples, seed=seed, alpha=alpha)
    return result.low, result.high


def paired_bootstrap(
    statistic_a: WeightedStatistic | IndexStatistic,
    statistic_b: WeightedStatistic | IndexStatistic,
    n: int | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    batch: int = 64,
) -> PairedBootstrapResult:
    """Compare two systems scored on the same samples: both statistics see identical resamples."""
    size = _size_of(statistic_a, n)
    size_b = statistic_b.size if isinstance(statistic_b, WeightedStatistic) else size
    if size_b != size:
        raise ValueError(f"both systems must be scored on the same samples, got {size} and {size_b}")
    _validate(size, n_resamples, alpha)
    a = _replicates(statistic_a, size, n_resamples, seed, batch)
    b = _replicates(statistic_b, size, n_resamples, seed, batch)
    differences = a - b
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, 2 * min(float(np.mean(differences <= 0)), float(np.mean(differences >= 0))))
    estimate_a, estimate_b = _point(statistic_a, size), _point(statistic_b, size)
    return PairedBootstrapResult(
        difference=estimate_a - estimate_b,
        low=float(low),
        high=float(high),
        p_value=p_value,
        share_a_better=float(np.mean(differences > 0)),
        estimate_a=estimate_a,
        estimate_b=estimate_b,
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
        replicates=differences,
    )
