"""Small real samples shipped with radscribe, so the first commands work on a fresh install.

``sample_path("cadma")`` is a YOLO folder (``valid/{images,labels}``) with three CADMA spine
radiographs and their vertebra boxes (CC BY 4.0; see README.md in this folder for attribution)::

    radscribe data import cadma "$(python -c 'from radscribe.samples import sample_path; print(sample_path("cadma"))')" --out cadma.jsonl
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent


def list_samples() -> list[str]:
    return sorted(path.name for path in SAMPLES_DIR.iterdir() if path.is_dir() and not path.name.startswith(("_", ".")))


def sample_path(name: str) -> Path:
    """The folder of the bundled sample ``name`` (e.g. ``"cadma"``)."""
    path = SAMPLES_DIR / name
    if not path.is_dir() or name.startswith(("_", ".")):
        raise KeyError(f"no bundled sample '{name}'; available: {', '.join(list_samples())}")
    return path
