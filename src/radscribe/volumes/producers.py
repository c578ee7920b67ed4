"""Segmentation models as optional producers of label maps. Nothing here downloads anything.

:func:`run_totalsegmentator` runs TotalSegmentator (installed by the user, Apache-2.0; its weights
are under their own licences) only when its weights are already on disk, and writes one multi-label
``<id>.nii.gz`` per volume, which ``totalsegmentator`` schema reads. Masks made by any other tool are
read by :func:`radscribe.volumes.pipeline.read_label_map`: a multi-label NIfTI or PNG with a schema
for its ids, or a folder of one binary mask per class named ``<class>.nii.gz`` / ``<class>.png``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from radscribe.volumes.volume import volume_id


class ProducerError(RuntimeError):
    """A segmentation producer that cannot run here; the message says what is missing and where."""


def totalsegmentator_weights_dir() -> Path:
    """Where TotalSegmentator keeps its nnU-Net weights (its own rule: ``TOTALSEG_HOME_DIR`` or ~/.totalsegmentator)."""
    home = Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))
    return home / "nnunet" / "results"


def check_totalsegmentator() -> Path:
    """The weights folder, or a :class:`ProducerError` saying whether the package or the weights are missing."""
    if importlib.util.find_spec("totalsegmentator") is None:
        raise ProducerError(
            "TotalSegmentator is not installed (pip install TotalSegmentator, with its weights); "
            "or run it yourself and pass its masks with --masks"
        )
    weights = totalsegmentator_weights_dir()
    datasets = sorted(weights.glob("Dataset*")) if weights.is_dir() else []
    if not datasets:
        raise ProducerError(
            f"TotalSegmentator's weights are not on disk (no Dataset* folder in {weights}); radscribe never downloads "
            "them: fetch them with TotalSegmentator's own tools (totalseg_download_weights), or set TOTALSEG_HOME_DIR"
        )
    return weights


def run_totalsegmentator(volume: Path, out_dir: Path, *, task: str = "total", fast: bool = False, device: str = "cpu") -> Path:
    """Segment one NIfTI volume into ``out_dir/<id>.nii.gz`` (multi-label); an existing output is kept."""
    check_totalsegmentator()
    target = Path(out_dir) / f"{volume_id(Path(volume))}.nii.gz"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from totalsegmentator.python_api import totalsegmentator

    temporary = target.with_name(f".{target.name}.tmp.nii.gz")
    # ml=True: one multi-label file whose ids are the class ids of schemas/totalsegmentator.yaml.
    totalsegmentator(str(volume), str(temporary), ml=True, task=task, fast=fast, device=device, quiet=True)
    os.replace(temporary, target)
    return target
