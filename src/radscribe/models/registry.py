"""create_model: one factory for every model, by registered name or local folder.

Names are the architecture YAML files in ``architectures/``. A family registers itself when its
module is imported (``@register_family``, with the transformers ``model_type`` values whose plain
checkpoints it reads); ``radscribe.models`` imports every family module, so importing the package
completes the registry and this module imports none of them. A folder is either a radscribe save
(``radscribe.json``) or a Hugging Face checkpoint whose ``config.json`` ``model_type`` a family
reads. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radscribe.models.config import CONFIG_FILE, ModelConfig, load_config, named_configs

if TYPE_CHECKING:
    from radscribe.models.base import RadscribeVLM

_FAMILIES: dict[str, type[RadscribeVLM]] = {}
_HF_MODEL_TYPES: dict[str, str] = {}  # transformers model_type -> radscribe family, for plain checkpoint folders


def register_family(cls: type[RadscribeVLM]) -> type[RadscribeVLM]:
    """Class decorator: the family ``cls.family``, reading plain checkpoints of ``cls.hf_model_types``."""
    _FAMILIES[cls.family] = cls
    for model_type in cls.hf_model_types:
        _HF_MODEL_TYPES[model_type] = cls.family
    return cls


def family_class(family: str) -> type[RadscribeVLM]:
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family]


def list_families() -> list[str]:
    return sorted(_FAMILIES)


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
        return family_class(load_config(path).family).from_pretrained(path, **overrides)
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


def family_for_model_type(model_type: str | None, source: str) -> type[RadscribeVLM]:
    """The family that reads plain checkpoints of a transformers ``model_type`` (``source`` names the file in errors)."""
    if model_type not in _HF_MODEL_TYPES:
        raise ValueError(f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(sorted(_HF_MODEL_TYPES))}")
    return _FAMILIES[_HF_MODEL_TYPES[model_type]]


def _config_for_hf_folder(path: Path) -> ModelConfig:
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as error:
        raise ValueError(f"{path / 'config.json'}: not valid JSON ({error})") from None
    family = family_for_model_type(model_type, str(path / "config.json")).family
    named = load_config(family)
    return named.replace(name=path.name, pretrained_path=str(path.resolve()))

