"""RadGrounder-style dynamic sampling over several task datasets.

Each draw first picks a task, then that task's next example. Task ``i`` with ``n_i`` examples and
weight ``w_i`` (default 1) is picked with probability

    p_i = (w_i * n_i) ** (1 / T) / sum_j (w_j * n_j) ** (1 / T)

``T = 1`` samples in proportion to (weighted) dataset size, as concatenating and shuffling the
datasets would; larger ``T`` flattens towards uniform over tasks, so small tasks (region, VQA) are not
drowned by large ones; ``T < 1`` sharpens towards the largest. Within a task, examples come in a
shuffled order without replacement, reshuffled each time the task runs out.

Everything is derived from ``seed``: the task draws from one generator, and each task's order for
its k-th pass from ``(seed, task index, k)``. So :meth:`state_dict` is small (generator state and
counters) and :meth:`load_state_dict` resumes mid-epoch with exactly the sequence an uninterrupted
run would have drawn.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from radscribe.tasks.example import Example


class TaskMixture:
    def __init__(
        self,
        datasets: Mapping[str, Sequence[Example]],
        weights: Mapping[str, float] | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        epoch_length: int | None = None,
    ):
        """``epoch_length=None`` iterates forever; otherwise each ``iter()`` yields one epoch of that
        many examples, and the next ``iter()`` continues with the next epoch."""
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(datasets))
        if unknown:
            raise ValueError(f"weights name unknown task(s) {', '.join(unknown)}; tasks: {', '.join(datasets)}")
        if any(not np.isfinite(w) or w < 0 for w in weights.values()):
            raise ValueError(f"task weights must be finite and >= 0, got {weights}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if epoch_length is not None and epoch_length <= 0:
            raise ValueError(f"epoch_length must be positive or None, got {epoch_length}")
        self.tasks = list(datasets)
        self.datasets = {task: list(datasets[task]) for task in self.tasks}
        self.weights = {task: float(weights.get(task, 1.0)) for task in self.tasks}
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.epoch_length = epoch_length
        mass = np.array([(self.weights[t] * len(self.datasets[t])) ** (1.0 / self.temperature) for t in self.tasks])
        if not mass.sum() > 0:
            raise ValueError("every task is empty or has weight 0: nothing to sample")
        self.probabilities = dict(zip(self.tasks, (mass / mass.sum()).tolist(), strict=True))
        self._cumulative = np.cumsum(mass / mass.sum())
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._orders: dict[str, np.ndarray] = {}
        self._passes = dict.fromkeys(self.tasks, 0)
        self._cursors = dict.fromkeys(self.tasks, 0)
        self.counts = dict.fromkeys(self.tasks, 0)  # examples drawn per task, for logging
        self.drawn = 0
        self.epoch = 0
        self._in_epoch = 0

    def __len__(self) -> int:
        if self.epoch_length is None:
            raise TypeError("an infinite TaskMixture has no length; pass epoch_length")
        return self.epoch_length

    def __iter__(self) -> Iterator[Example]:
        if self.epoch_length is not None and self._in_epoch >= self.epoch_length:
            # The last epoch was consumed to its end but not past it (e.g. by zip): start the next.
            self.epoch += 1
            self._in_epoch = 0
        while self.epoch_length is None or self._in_epoch < self.epoch_length:
            yield self.sample()
        self.epoch += 1
        self._in_epoch = 0

    def sample(self) -> Example:
        """The next example of the sequence."""
        index = int(np.searchsorted(self._cumulative, self._rng.random(), side="right"))
        task = self.tasks[min(index, len(self.tasks) - 1)]
        example = self.datasets[task][self._order(task)[self._cursors[task]]]
        self._cursors[task] += 1
        if self._cursors[task] == len(self.datasets[task]):
            self._passes[task] += 1
            self._cursors[task] = 0
            self._orders.pop(task, None)
        self.counts[task] += 1
        self.drawn += 1
        self._in_epoch += 1
        return example

    def _order(self, task: str) -> np.ndarray:
        if task not in self._orders:
            key = [self.seed, self.tasks.index(task), self._passes[task]]
            self._orders[task] = np.random.Generator(np.random.PCG64(key)).permutation(len(self.datasets[task]))
        return self._orders[task]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the sequence; JSON-serialisable."""
        return {
            "seed": self.seed,
            "sizes": {task: len(self.datasets[task]) for task in self.tasks},
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "passes": dict(self._passes),
            "cursors": dict(self._cursors),
            "counts": dict(self.counts),
            "drawn": self.drawn,
            "epoch": self.epoch,
            "in_epoch": self._in_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        sizes = {task: len(self.datasets[task]) for task in self.tasks}
        if dict(state["sizes"]) != sizes or state["seed"] != self.seed:
            raise ValueError(
                f"this mixture state belongs to other data (seed {state['seed']}, sizes {dict(state['sizes'])}); "
                f"this mixture has seed {self.seed}, sizes {sizes}"
            )
        self._rng.bit_generator.state = copy.deepcopy(dict(state["rng"]))
        self._passes = {task: int(state["passes"][task]) for task in self.tasks}
        self._cursors = {task: int(state["cursors"][task]) for task in self.tasks}
        self.counts = {task: int(state["counts"][task]) for task in self.tasks}
        self._orders = {}
        self.drawn = int(state["drawn"])
        self.epoch = int(state["epoch"])
        self._in_epoch = int(state["in_epoch"])
