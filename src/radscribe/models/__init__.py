"""Models: one interface (RadscribeVLM) for the embedded radscribe-tiny and Hugging Face VLM backbones."""

from radscribe.models.base import IGNORE_INDEX, Architecture, EncodedExample, RadscribeVLM, describe_size
from radscribe.models.config import ModelConfig, load_config
from radscribe.models.embedded import EMBEDDED_DIR, default_model, embedded_available, embedded_release
from radscribe.models.image import Letterbox, letterbox
from radscribe.models.memory import MemoryAdapter, VisionBridge
from radscribe.models.registry import create_model, family_class, list_families, list_models, register_family
from radscribe.models.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer, tokenizer_corpus

# Each family registers itself with the registry when imported; importing them here completes it.
from radscribe.models import gemma3, llava, paligemma, qwen2_5_vl, radscribe_tiny  # noqa: E402, F401

__all__ = [
    "EMBEDDED_DIR",
    "IGNORE_INDEX",
    "Architecture",
    "EncodedExample",
    "Letterbox",
    "MemoryAdapter",
    "ModelConfig",
    "RadscribeVLM",
    "VisionBridge",
    "build_tokenizer",
    "create_model",
    "default_model",
    "describe_size",
    "embedded_available",
    "embedded_release",
    "family_class",
    "letterbox",
    "list_families",
    "list_models",
    "load_config",
    "load_tokenizer",
    "register_family",
    "save_tokenizer",
    "tokenizer_corpus",
]
