"""Models: one interface (RadscribeVLM) for the embedded radscribe-tiny and Hugging Face VLM backbones."""

from radscribe.models.base import IGNORE_INDEX, Architecture, EncodedExample, RadscribeVLM, describe_size
from radscribe.models.config import ModelConfig, load_config
from radscribe.models.image import Letterbox, letterbox
from radscribe.models.memory import MemoryAdapter, PixelShuffleProjector, VisionBridge
from radscribe.models.registry import create_model, family_class, list_models, register_family
from radscribe.models.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer, tokenizer_corpus

__all__ = [
    "IGNORE_INDEX",
    "Architecture",
    "EncodedExample",
    "Letterbox",
    "MemoryAdapter",
    "ModelConfig",
    "PixelShuffleProjector",
    "RadscribeVLM",
    "VisionBridge",
    "build_tokenizer",
    "create_model",
    "describe_size",
    "family_class",
    "letterbox",
    "list_models",
    "load_config",
    "load_tokenizer",
    "register_family",
    "save_tokenizer",
    "tokenizer_corpus",
]
