"""create_model: one factory for every model, by registered name or local folder.

Names are the YAML files in ``configs/``; families are registered by their modules. A folder is
either a radscribe save (``radscribe.json``) or a Hugging Face checkpoint whose ``config.json``
``model_type`` names a supported family. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from radscribe.models.base import RadscribeVLM
from radscribe.models.config import CONFIG_FILE, ModelConfig, load_config, named_configs

_FAMILIES: dict[str, type[RadscribeVLM]] = {}
# transformers model_type -> radscribe family, for plain Hugging Face checkpoint folders.
HF_MODEL_TYPES = {"llava": "llava", "qwen2_5_vl": "qwen2.5-vl", "paligemma": "paligemma2"}


def register_family(cls: type[RadscribeVLM]) -> type[RadscribeVLM]:
    _FAMILIES[cls.family] = cls
    return cls


def family_class(family: str) -> type[RadscribeVLM]:
    _import_families()
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family]


def list_models() -> list[str]:
    return sorted(named_configs())


def create_model(name_or_path: str | Path, **overrides: Any) -> RadscribeVLM:
    """A model by registered name (fresh init, or from ``pretrained_path``), saved folder, or HF checkpoint folder.

    ``overrides`` replace config fields (``memory_slots=16``, ``lora={"r": 4}``, ``device="cpu"``...).
    """
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in named_configs():
        config = load_config(name_or_path)
    elif (path / CONFIG_FILE).exists():
        return RadscribeVLM.from_pretrained(path, **overrides)
    elif (path / "config.json").exists():
        config = _config_for_hf_folder(path)
    elif path.suffix in (".yaml", ".yml", ".json") and path.exists():
        config = load_config(path)
    else:
        raise FileNotFoundError(
            f"{name_or_path}: not a registered model ({', '.join(list_models())}), a saved radscribe model folder "
            "or a local Hugging Face checkpoint folder (nothing is downloaded)"
        )
    if overrides:
        config = config.replace(**overrides)
    return family_class(config.family).create(config)


def _config_for_hf_folder(path: Path) -> ModelConfig:
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as error:
        raise ValueError(f"{path / 'config.json'}: not valid JSON ({error})") from None
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(
            f"{path / 'config.json'}: model_type {model_type!r} is not supported; supported: {', '.join(HF_MODEL_TYPES)}"
        )
    family = HF_MODEL_TYPES[model_type]
    named = load_config(family)
    return named.replace(name=path.name, pretrained_path=str(path.resolve()))


def _import_families() -> None:
    # Each family module registers itself on import; importing here keeps the registry complete
    # whichever entry point is used first.
    from radscribe.models import llava, paligemma, qwen2_5_vl, radscribe_tiny  # noqa: F401
