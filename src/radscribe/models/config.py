"""ModelConfig: one plain dataclass describing any radscribe model, stored as JSON next to its weights.

Named configs are data (``architectures/<name>.yaml`` in this package; the repository's ``configs/``
holds training recipes, which name an architecture); ``load_config`` reads one by name,
from a YAML file, or from a saved model folder (``radscribe.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE = "radscribe.json"
# Named architectures (like timm / open_clip model configs); training recipes live in the repository's configs/.
NAMED_CONFIG_DIR = Path(__file__).parent / "architectures"
QUANTIZATIONS: tuple[str | None, ...] = (None, "nf4")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's structure; weights live in ``model.safetensors``.

    ``family`` picks the implementation (one file per family). ``vision`` and ``text`` hold the
    transformers sub-config fields for families built from scratch (radscribe-tiny); for Hugging
    Face backbones the structure comes from ``pretrained_path`` (a local checkpoint folder).
    """

    name: str
    family: str
    codec: str = "radscribe"
    pretrained_path: str | None = None
    seed: int = 0
    image_size: int | list[int] = 224      # model input: a square side or [width, height]; radiographs are letterboxed into it
    max_images: int = 1                    # images per example fed to the model (the first ones)
    memory_slots: int = 0                  # S2D-Align memory adapter; 0 = off
    memory_heads: int = 4
    freeze_vision: bool = False            # RadGrounder trains with a frozen vision encoder
    lora: dict[str, Any] | None = None     # peft LoraConfig kwargs; target_modules default per family
    device: str = "auto"                   # "auto": cuda when available, else cpu
    precision: str = "auto"                # "auto": bf16 autocast on cuda, fp32 on cpu; or "fp32" / "bf16"
    save_dtype: str = "float32"            # weights dtype on disk ("bfloat16" halves the file)
    max_length: int = 512                  # prompt + target tokens (image tokens not counted)
    gradient_checkpointing: bool = False   # recompute the language model's layer activations in backward (less memory, ~1/3 more compute)
    quantization: str | None = None        # "nf4": QLoRA's 4-bit NormalFloat base weights (bitsandbytes, CUDA only, the qlora extra)
    vision: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family:
            raise ValueError(f"model config '{self.name}': family must name a model family, got {self.family!r}")
        if self.memory_slots < 0:
            raise ValueError(f"model config '{self.name}': memory_slots must be >= 0, got {self.memory_slots}")
        if self.save_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model config '{self.name}': save_dtype must be float32 or bfloat16, got {self.save_dtype!r}")
        if not (isinstance(self.image_size, int) or (isinstance(self.image_size, list) and len(self.image_size) == 2)):
            raise ValueError(f"model config '{self.name}': image_size must be an integer or [width, height], got {self.image_size!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"model config '{self.name}': precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"model config '{self.name}': quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        width, height = self.image_size
        return (int(width), int(height))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown model config field(s) {unknown}; known: {sorted(known)}")
        for required in ("name", "family"):
            if required not in data:
                raise ValueError(f"{source}: model config needs field '{required}'")
        return cls(**data)

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with ``overrides``; the ``vision`` and ``text`` sections are merged key by key, so
        ``vision={"pretrained": False}`` changes one key and keeps the architecture."""
        merged = self.to_dict()
        for key, value in overrides.items():
            merged[key] = {**merged[key], **value} if key in ("vision", "text") and isinstance(value, dict) else value
        return ModelConfig.from_dict(merged, source=f"overrides for '{self.name}'")

    def save(self, folder: Path | str) -> Path:
        from radscribe.data.manifest import atomic_write

        path = Path(folder) / CONFIG_FILE
        with atomic_write(path) as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
        return path


def named_configs() -> dict[str, Path]:
    return {path.stem: path for path in sorted(NAMED_CONFIG_DIR.glob("*.yaml"))}


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A named config, a YAML/JSON config file, or a saved model folder's ``radscribe.json``."""
    configs = named_configs()
    if isinstance(name_or_path, str) and name_or_path in configs:
        path = configs[name_or_path]
    else:
        path = Path(name_or_path)
        if path.is_dir():
            path = path / CONFIG_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{name_or_path}: not a named model ({', '.join(configs)}) nor a config file or saved model folder"
            )
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot parse model config ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a model config must be a mapping, got {type(data).__name__}")
    return ModelConfig.from_dict(data, source=str(path))
