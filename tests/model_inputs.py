"""Synthetic model inputs shared by the model tests: radiographs of a given size and task examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radscribe.data.images import Radiograph
from radscribe.tasks import Example


def radiograph(width: int, height: int, seed: int) -> Radiograph:
    pixels = np.random.default_rng(seed).random((height, width), dtype=np.float32)
    return Radiograph(pixels=pixels, path=Path(f"synthetic-{seed}.png"))


def example(images: tuple, prompt: str, target: str, task: str = "report") -> Example:
    """A real task example; the models read its images (paths or in-memory radiographs), prompt, target and task."""
    return Example(task=task, study_id="s1", images=images, prompt=prompt, target=target)
