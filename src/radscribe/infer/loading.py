"""Finding the model to report with, and saying plainly what it is (trained weights or a fresh init)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


class ModelNotAvailable(RuntimeError):
    """No model was given and no embedded default model ships with this installation."""


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
