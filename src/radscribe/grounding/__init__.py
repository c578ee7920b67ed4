"""Grounding: one canonical box (:class:`radscribe.types.Box`) and codecs to each backbone's box text.

``create_codec("paligemma" | "radgrounder" | "qwen2-vl" | "qwen2.5-vl" | "maira2" | "medgemma" | "radscribe")``
returns a :class:`BoxCodec` with ``encode(box, image_size)``, ``encode_phrase(phrase, boxes,
image_size)`` and ``decode(text, image_size) -> DecodedBoxes``; ``image_size`` is the original
image's (width, height) in pixels. ``LOCATION_TOKENS`` are radscribe's own special tokens.
"""

from radscribe.grounding.base import (
    BoxCodec,
    DecodedBoxes,
    ImageSize,
    create_codec,
    list_codecs,
    register_codec,
)
from radscribe.grounding.location_tokens import LOCATION_TOKENS, RadscribeCodec
from radscribe.grounding.maira2 import Maira2Codec, centre_crop
from radscribe.grounding.medgemma import MedGemmaCodec, square_padding
from radscribe.grounding.paligemma import PaliGemmaCodec
from radscribe.grounding.qwen import Qwen2VLCodec, Qwen25VLCodec, smart_resize
from radscribe.grounding.radgrounder import RadGrounderCodec

__all__ = [
    "LOCATION_TOKENS",
    "BoxCodec",
    "DecodedBoxes",
    "ImageSize",
    "Maira2Codec",
    "MedGemmaCodec",
    "PaliGemmaCodec",
    "Qwen25VLCodec",
    "Qwen2VLCodec",
    "RadGrounderCodec",
    "RadscribeCodec",
    "centre_crop",
    "create_codec",
    "list_codecs",
    "register_codec",
    "smart_resize",
    "square_padding",
]
