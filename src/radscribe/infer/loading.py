"""Finding the model to report with, and saying plainly what it is (trained weights or a fresh init).

A saved model folder may carry companions the Reporter uses: ``detector/`` (a BoxDetector whose boxes
go into the grounding prompt) and ``abstain.json`` (per template, the fields the model showed no skill
on in validation, written "not assessed"). The embedded model ships with both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


class ModelNotAvailable(RuntimeError):
    """No model was given and no embedded default model ships with this installation."""


BOXES_FROM = ("model", "detector")  # whose boxes a report carries for the detector's phrases (Reporter)


def load_model(name_or_path: str | Path | None = None, **overrides: Any) -> tuple[Any, str]:
    """(model, description). ``None``: the embedded default model (``radscribe.models.default_model()``),
    else a registered name or a local folder."""
    from radscribe import models

    if name_or_path is None:
        if models.embedded_available():
            model = models.default_model(**overrides)
            release = models.embedded_release().get("release", "embedded")
            return model, describe_model(model, f"the embedded default model ({release})")
        raise ModelNotAvailable(
            "no embedded default model ships with this radscribe installation; pass a model with --model "
            f"(a saved model folder, a local Hugging Face checkpoint, or a registered name: {', '.join(models.list_models())})"
        )
    model = models.create_model(name_or_path, **overrides)
    return model, describe_model(model, name_or_path)


def model_folder(name_or_path: str | Path | None) -> Path | None:
    """The folder a model loads from (the embedded one for ``None``), or None for a registered name."""
    from radscribe import models

    if name_or_path is None:
        return models.EMBEDDED_DIR if models.embedded_available() else None
    path = Path(name_or_path)
    return path if path.is_dir() else None


def load_detector(name_or_path: str | Path | None) -> Any:
    """The detector saved beside a model (``<folder>/detector``), or None when it has none."""
    from radscribe.models.embedded import DETECTOR_DIR

    folder = model_folder(name_or_path)
    if folder is None or not (folder / DETECTOR_DIR).is_dir():
        return None
    from radscribe.models.detector import BoxDetector

    return BoxDetector.from_pretrained(folder / DETECTOR_DIR)


def load_abstentions(name_or_path: str | Path | None) -> dict[str, list[str]]:
    """Per template, the fields a model folder's ``abstain.json`` says to write "not assessed"."""
    from radscribe.models.embedded import ABSTAIN_FILE, read_abstentions

    folder = model_folder(name_or_path)
    if folder is None or not (folder / ABSTAIN_FILE).exists():
        return {}
    return read_abstentions(folder / ABSTAIN_FILE)


def load_release(name_or_path: str | Path | None) -> dict[str, Any]:
    """A model folder's ``release.json`` (what :func:`radscribe.models.embedded.export_release` recorded), or {}."""
    from radscribe.models.embedded import RELEASE_FILE, read_release

    folder = model_folder(name_or_path)
    release = {} if folder is None else read_release(folder)
    if release.get("boxes_from", "model") not in BOXES_FROM:
        raise ValueError(f"{folder / RELEASE_FILE}: field 'boxes_from': expected one of {', '.join(BOXES_FROM)}, got {release['boxes_from']!r}")
    return release


def describe_model(model: Any, source: str | Path | None = None) -> str:
    """One line: name, family, and whether its weights were trained or are a random initialisation."""
    from radscribe.models import list_models

    trained = not (isinstance(source, str) and source in list_models() and not model.config.pretrained_path)
    state = "trained weights" if trained else "UNTRAINED (random initialisation from the registered config)"
    where = f" from {source}" if source is not None else ""
    return f"{model.name} ({model.config.family}){where}: {state}"


def model_version(model: Any) -> str:
    """A short fingerprint of the weights (sha256 over every parameter), so reports name exactly what wrote them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:16]
