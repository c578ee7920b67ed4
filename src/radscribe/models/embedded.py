"""The embedded default model, and how a training run becomes a release folder like it.

``radscribe report`` (and the server) load the embedded model when no ``--model`` is given. Its folder
is what :func:`export_release` writes from any training run: an ordinary saved model (the Hugging
Face Auto classes read it too), plus

- ``detector/``: the BoxDetector whose boxes go into the grounding prompt (optional);
- ``abstain.json``: per template, the fields validation showed no skill on, written "not assessed";
- ``release.json``: the release name, the recipe, steps and data it came from, and ``boxes_from``
  (``model`` or ``detector``: whose boxes its reports carry, see :class:`radscribe.infer.Reporter`).

MODEL_CARD.md says what the embedded release was trained on and what it measures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from radscribe.models.base import RadscribeVLM
from radscribe.models.config import CONFIG_FILE
from radscribe.models.detector import BoxDetector
from radscribe.models.registry import create_model

EMBEDDED_DIR = Path(__file__).parent / "assets" / "embedded"
RELEASE_FILE = "release.json"
DETECTOR_DIR = "detector"
ABSTAIN_FILE = "abstain.json"


def embedded_available() -> bool:
    return (EMBEDDED_DIR / CONFIG_FILE).exists()


def read_release(folder: Path | str) -> dict[str, Any]:
    """A release folder's ``release.json`` ({} when it has none)."""
    path = Path(folder) / RELEASE_FILE
    if not path.exists():
        return {}
    try:
        release = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(release, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return release


def embedded_release() -> dict[str, Any]:
    """Where the shipped weights come from (release name, recipe, steps), as written at export."""
    return read_release(EMBEDDED_DIR)


def default_model(**overrides: Any) -> RadscribeVLM:
    """The shipped model, loaded from the package (offline, CPU unless ``device=`` says otherwise)."""
    if not embedded_available():
        raise FileNotFoundError(
            f"{EMBEDDED_DIR}: the embedded model's files are missing from this installation "
            "(reinstall radscribe, or pass a model folder with --model)"
        )
    return create_model(EMBEDDED_DIR, **overrides)


def read_abstentions(path: Path | str) -> dict[str, list[str]]:
    """``abstain.json``: per template, the field ids to write "not assessed" (``{"fields": {...}}``); the
    key ``vqa`` lists answer types (``closed``, ``open``) that radscribe.infer.Reporter.ask abstains on."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    fields = data.get("fields") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not all(isinstance(v, list) and all(isinstance(f, str) for f in v) for v in fields.values()):
        raise ValueError(f"{path}: field 'fields': expected {{template name: [field ids]}}")
    unknown = sorted(set(fields.get("vqa", [])) - {"closed", "open"})
    if unknown:
        raise ValueError(f"{path}: field 'fields.vqa': expected answer types 'closed' and/or 'open', got {unknown}")
    return {template: list(values) for template, values in fields.items()}


def run_model_folder(run_or_model: Path | str) -> Path:
    """A saved model folder: the folder itself, or a training run's ``final/`` (else ``best/``)."""
    path = Path(run_or_model)
    for candidate in (path, path / "final", path / "best"):
        if (candidate / CONFIG_FILE).exists():
            return candidate
    raise FileNotFoundError(f"{path}: neither a saved model folder nor a training run with final/ or best/ (no {CONFIG_FILE})")


def export_release(
    run_or_model: Path | str,
    destination: Path | str,
    *,
    detector: Path | str | None = None,
    abstain: Path | str | None = None,
    release: dict[str, Any] | None = None,
    boxes_from: str = "model",
) -> Path:
    """Write a release folder (see the module docstring) at ``destination``, atomically.

    ``detector``: a saved detector folder (a detector training run's ``best/`` or ``final/``);
    ``abstain``: a JSON file ``{"fields": {template: [field ids]}, ...}`` (e.g. written by the model
    card's evaluation); ``release``: what ``release.json`` records (name, recipe, steps, data, ...);
    ``boxes_from``: whose boxes the release's reports carry (``detector`` needs ``detector``).
    """
    if boxes_from == "detector" and detector is None:
        raise ValueError("boxes_from='detector' needs a detector folder")
    from radscribe.data.manifest import atomic_folder, atomic_write

    source = run_model_folder(run_or_model)
    model = create_model(source, device="cpu")
    with atomic_folder(destination) as folder:
        model.save_pretrained(folder)
        if detector is not None:
            detector_folder = Path(detector)
            for candidate in (detector_folder, detector_folder / "best", detector_folder / "final"):
                if candidate.is_dir() and (candidate / "detector.json").exists():
                    BoxDetector.from_pretrained(candidate).save_pretrained(folder / DETECTOR_DIR)
                    break
            else:
                raise FileNotFoundError(f"{detector_folder}: not a saved detector (no detector.json here or in best/, final/)")
        if abstain is not None:
            read_abstentions(abstain)  # refuse a malformed file before it ships
            shutil.copyfile(abstain, folder / ABSTAIN_FILE)
        with atomic_write(folder / RELEASE_FILE) as handle:
            json.dump({"source": str(source), **(release or {}), "boxes_from": boxes_from}, handle, indent=2)
    return Path(destination)
