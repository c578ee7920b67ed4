"""The embedded default model: radscribe-tiny trained by ``configs/radscribe-tiny.yaml``, shipped in the package.

``radscribe report`` (and the server) load it when no ``--model`` is given. Its folder is an ordinary
saved model (``RadscribeVLM.save_pretrained``), plus ``embedded.json``: the release name, the recipe
and the run it came from. MODEL_CARD.md says what it was trained on and what it measures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from radscribe.models.base import RadscribeVLM
from radscribe.models.config import CONFIG_FILE

EMBEDDED_DIR = Path(__file__).parent / "assets" / "embedded"
RELEASE_FILE = "embedded.json"


def embedded_available() -> bool:
    return (EMBEDDED_DIR / CONFIG_FILE).exists()


def embedded_release() -> dict[str, Any]:
    """Where the shipped weights come from (release name, recipe, steps), as written at export."""
    path = EMBEDDED_DIR / RELEASE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def default_model(**overrides: Any) -> RadscribeVLM:
    """The shipped model, loaded from the package (offline, CPU unless ``device=`` says otherwise)."""
    if not embedded_available():
        raise FileNotFoundError(
            f"{EMBEDDED_DIR}: the embedded model's files are missing from this installation "
            "(reinstall radscribe, or pass a model folder with --model)"
        )
    return RadscribeVLM.from_pretrained(EMBEDDED_DIR, **overrides)
