"""Checkpoints: everything needed to continue a run bit-for-bit, written atomically.

A checkpoint is a folder ``checkpoints/step-00000120`` holding ``state.pt``: model weights,
optimiser, scheduler, the mixture's generator, every rank's RNG states, the curriculum position and
the early-stopping record. It is written into a hidden temporary folder and renamed into place, so
a run killed mid-write leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radscribe.data.manifest import atomic_folder

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.pt"
_STEP_NAME = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    parent = Path(run_dir) / CHECKPOINT_DIR
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / f"step-{step:08d}"
    with atomic_folder(target) as temporary:
        torch.save(state, temporary / STATE_FILE)
    for stale in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(stale)
    return target


def list_checkpoints(run_dir: Path | str) -> list[Path]:
    """Complete checkpoints, oldest first."""
    parent = Path(run_dir) / CHECKPOINT_DIR
    if not parent.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in parent.iterdir() if (m := _STEP_NAME.match(p.name)) and (p / STATE_FILE).exists()]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)


def save_model_dir(model: Any, target: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """``model.save_pretrained`` into ``target``, atomically (``state``: the gathered weights of a sharded model)."""
    with atomic_folder(target) as temporary:
        if state is None:
            model.save_pretrained(temporary)
        else:
            model.save_pretrained(temporary, state=state)
