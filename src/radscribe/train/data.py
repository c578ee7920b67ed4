"""Training data: manifests -> task examples, and the seeded task mixture that draws each global batch.

The mixture lives here rather than as an iterator so that its whole state is one ``torch.Generator``
state: a checkpoint stores it, and a resumed run draws exactly the batches an uninterrupted run
would have drawn. Every rank draws the same global batch and keeps its own slice of it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from radscribe.types import Study


@dataclass
class SplitData:
    """One split: its studies (image paths made absolute) and their task examples."""

    studies: list[Study]
    examples: list[Any]  # radscribe.tasks.Example (frozen dataclass: task, study_id, images, prompt, target, metadata)

    def by_task(self) -> dict[str, list[Any]]:
        grouped: dict[str, list[Any]] = {}
        for example in self.examples:
            grouped.setdefault(example.task, []).append(example)
        return grouped


@dataclass
class Datasets:
    train: SplitData
    valid: SplitData | None = None


def load_split(
    manifest: Path | str | Sequence[Path | str],
    tasks: Sequence[str],
    codec: Any,
    split: str | None = None,
    max_studies: int | None = None,
) -> SplitData:
    """Read a manifest (keeping only ``split``'s studies if given) and build the tasks' examples with radscribe.tasks.

    A list of manifests (spine, chest, VQA...) is read manifest by manifest and concatenated;
    ``max_studies`` then applies to each manifest.
    """
    if not isinstance(manifest, (str, Path)):
        parts = [load_split(one, tasks, codec, split, max_studies) for one in manifest]
        return SplitData(
            studies=[study for part in parts for study in part.studies],
            examples=[example for part in parts for example in part.examples],
        )
    from radscribe.data.manifest import read_manifest, resolve_image_path
    from radscribe.tasks import build_examples

    manifest = Path(manifest)
    studies = read_manifest(manifest)
    if split is not None:
        present = sorted({str(study.split) for study in studies})
        studies = [study for study in studies if study.split == split]
        if not studies:
            raise ValueError(
                f"{manifest}: no study has split '{split}' (splits present: {', '.join(present)}); "
                "choose another split in data.train_split / data.valid_split, or null to use every study"
            )
    if max_studies is not None:
        studies = studies[:max_studies]
    studies = [
        dataclasses.replace(
            study,
            images=[dataclasses.replace(image, path=str(resolve_image_path(manifest, image.path))) for image in study.images],
        )
        for study in studies
    ]
    examples = build_examples(studies, manifest.resolve().parent, list(tasks), codec)
    return SplitData(studies=studies, examples=list(examples))


def mixture_probabilities(sizes: dict[str, int], weights: dict[str, float], temperature: float) -> dict[str, float]:
    """p(task) proportional to weight ** (1 / temperature) over the tasks that have examples.

    Temperature 1 samples by the recipe's weights; a large temperature flattens towards uniform,
    the usual way to keep small tasks from being drowned by large ones.
    """
    present = {task: weight for task, weight in weights.items() if sizes.get(task, 0) > 0}
    if not present:
        raise ValueError(f"none of the tasks {sorted(weights)} has any example (examples per task: {sizes})")
    scaled = {task: weight ** (1.0 / temperature) for task, weight in present.items()}
    total = sum(scaled.values())
    return {task: value / total for task, value in scaled.items()}


class MixtureSampler:
    """Draws global batches: a task per slot by the mixture probabilities, then an example of that task."""

    def __init__(self, datasets: dict[str, list[Any]], weights: dict[str, float], temperature: float, seed: int):
        self.datasets = datasets
        self.probabilities = mixture_probabilities({t: len(e) for t, e in datasets.items()}, weights, temperature)
        self.tasks = list(self.probabilities)
        self._weights = torch.tensor([self.probabilities[t] for t in self.tasks], dtype=torch.float64)
        self.generator = torch.Generator().manual_seed(seed)
        self.counts: Counter[str] = Counter()

    def sample(self, batch_size: int) -> list[Any]:
        choices = torch.multinomial(self._weights, batch_size, replacement=True, generator=self.generator).tolist()
        batch = []
        for choice in choices:
            task = self.tasks[choice]
            index = int(torch.randint(len(self.datasets[task]), (1,), generator=self.generator))
            batch.append(self.datasets[task][index])
            self.counts[task] += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.counts = Counter(state["counts"])


def rank_slice(batch: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """The contiguous share of a global batch that one rank trains on."""
    per_rank = len(batch) // world_size
    return list(batch[rank * per_rank : (rank + 1) * per_rank])


def micro_batches(examples: Sequence[Any], count: int) -> list[list[Any]]:
    """Split a rank's share into ``count`` micro-batches of similar length.

    Grouping by length keeps a 20-token VQA answer from being padded to a 500-token report. The loss
    is weighted by target tokens over the whole global batch, so the grouping changes the padding
    (and the speed), not the gradient.
    """
    ordered = sorted(examples, key=lambda example: len(example.prompt) + len(example.target))
    size = len(ordered) // count
    return [ordered[i * size : (i + 1) * size] for i in range(count)]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def count_loss_tokens(batch: dict[str, Any]) -> int:
    """Target tokens the model's loss averages over: labels other than -100 after the next-token shift."""
    labels = batch.get("labels")
    if labels is None:
        raise ValueError("the model's collate() gave no 'labels'; training needs targets (collate(..., with_targets=True))")
    return int((labels[..., 1:] != -100).sum())
