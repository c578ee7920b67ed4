"""Training data: manifests -> task examples, and how one global batch is split over ranks and micro-batches.

Each global batch is drawn by :class:`radscribe.tasks.TaskMixture` (RadGrounder's dynamic sampling,
seeded and resumable from its state dict); every rank draws the same global batch and keeps its own
slice of it.
"""

from __future__ import annotations

import dataclasses
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
    options: dict[str, dict[str, Any]] | None = None,
) -> SplitData:
    """Read a manifest (keeping only ``split``'s studies if given) and build the tasks' examples with radscribe.tasks
    (``options`` per task, as :func:`radscribe.tasks.build_examples` takes them).

    A list of manifests (spine, chest, VQA...) is read manifest by manifest and concatenated;
    ``max_studies`` then applies to each manifest.
    """
    if not isinstance(manifest, (str, Path)):
        parts = [load_split(one, tasks, codec, split, max_studies, options) for one in manifest]
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
    examples = build_examples(studies, manifest.resolve().parent, list(tasks), codec, options)
    return SplitData(studies=studies, examples=list(examples))


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
