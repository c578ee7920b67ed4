"""One training or evaluation example (prompt -> target on images) and a plain dataset of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload


@dataclass(frozen=True)
class Example:
    task: str
    study_id: str
    images: tuple[Any, ...]  # absolute paths (or decoded Radiographs, e.g. augmented in training)
    prompt: str
    target: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "study_id": self.study_id,
            "images": [str(path) for path in self.images],
            "prompt": self.prompt,
            "target": self.target,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        missing = [key for key in ("task", "study_id", "images", "prompt", "target") if key not in data]
        if missing:
            raise ValueError(f"example record lacks {', '.join(missing)}")
        return cls(
            task=data["task"],
            study_id=data["study_id"],
            images=tuple(Path(path) for path in data["images"]),
            prompt=data["prompt"],
            target=data["target"],
            metadata=dict(data.get("metadata") or {}),
        )


class ExampleDataset(Sequence[Example]):
    """A list of examples with ``len`` and indexing: what a map-style torch DataLoader needs."""

    def __init__(self, examples: Iterable[Example]):
        self._examples = list(examples)

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...
    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        return self._examples[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples)

    def counts(self) -> dict[str, int]:
        return dict(Counter(example.task for example in self._examples))

    def by_task(self) -> dict[str, list[Example]]:
        """The examples split per task: the input of :class:`~radscribe.tasks.TaskMixture`."""
        grouped: dict[str, list[Example]] = {}
        for example in self._examples:
            grouped.setdefault(example.task, []).append(example)
        return grouped
