"""The codec interface, its result type and the registry that finds a codec by name.

A codec converts between the canonical :class:`~radscribe.types.Box` (normalised xyxy on the
*original* image) and one backbone's native text. Encoding is for training data we control, so a
bad argument raises. Decoding reads model output, which can be anything: it never raises, it keeps
the boxes it can read and explains every one it had to drop in ``DecodedBoxes.errors``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from radscribe.types import Box, SchemaError

ImageSize = tuple[int, int]  # (width, height) of the original image, in pixels


@dataclass
class DecodedBoxes:
    """What a decode found: boxes (label = the phrase they belong to) and why others were dropped."""

    boxes: list[Box] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class BoxCodec(ABC):
    """One backbone's box text format.

    ``special_tokens`` lists the strings that must be single tokens for the format (empty when the
    backbone's own vocabulary already holds them).
    """

    name: ClassVar[str]
    special_tokens: ClassVar[tuple[str, ...]] = ()
    # Substrings that would make an encoded phrase ambiguous to decode.
    reserved: ClassVar[tuple[str, ...]] = ()

    def encode(self, box: Box, image_size: ImageSize) -> str:
        """One box with its label as phrase."""
        return self.encode_phrase(box.label, [box], image_size)

    def encode_phrase(self, phrase: str, boxes: Sequence[Box], image_size: ImageSize) -> str:
        """A phrase grounded to one or more boxes, in the native format."""
        check_image_size(image_size)
        if not boxes:
            raise ValueError(f"{self.name}: a grounded phrase needs at least one box ('{phrase}' has none)")
        for token in self.reserved:
            if token in phrase:
                raise ValueError(f"{self.name}: the phrase {phrase!r} contains {token!r}, which the format reserves")
        return self._encode_phrase(phrase, list(boxes), image_size)

    def decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        """Every box found in model output ``text``; unreadable ones are dropped into ``errors``."""
        check_image_size(image_size)
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: decode expects a string, got {type(text).__name__}")
        return self._decode(text, image_size)

    @abstractmethod
    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        """The largest ``|decode(encode(v)) - v|`` per axis (x, y), in normalised original-image units."""

    @abstractmethod
    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str: ...

    @abstractmethod
    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes: ...

    def _box(self, label: str, xyxy: Sequence[float], found: DecodedBoxes, where: str) -> None:
        """Append a decoded box, or the reason it cannot be one."""
        x0, y0, x1, y1 = xyxy
        for name, value in (("x_min", x0), ("y_min", y0), ("x_max", x1), ("y_max", y1)):
            if not math.isfinite(value) or not -1e-9 <= value <= 1 + 1e-9:
                found.errors.append(f"{where}: {name} {value:.4g} lies outside the image")
                return
        if x0 > x1 or y0 > y1:
            found.errors.append(f"{where}: min > max ({'x' if x0 > x1 else 'y'} axis)")
            return
        try:
            found.boxes.append(Box.from_xyxy(label.strip(), (x0, y0, x1, y1), source=self.name))
        except SchemaError as error:  # only reachable through odd labels; report, never raise
            found.errors.append(f"{where}: {error}")


def check_image_size(image_size: Any) -> None:
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise ValueError(f"image_size must be (width, height) in positive integer pixels, got {image_size!r}")


def quantise(value: float, bins: int) -> int:
    """The bin of ``value`` in [0, 1] among ``bins`` equal bins (floor; 1.0 falls in the last bin)."""
    return min(bins - 1, int(math.floor(value * bins)))


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


_CODECS: dict[str, Callable[..., BoxCodec]] = {}


def register_codec(name: str) -> Callable[[type[BoxCodec]], type[BoxCodec]]:
    def decorate(cls: type[BoxCodec]) -> type[BoxCodec]:
        cls.name = name
        _CODECS[name] = cls
        return cls

    return decorate


def create_codec(name: str, **options: Any) -> BoxCodec:
    """A codec by name; ``options`` go to its constructor (e.g. ``max_pixels`` for ``qwen2.5-vl``)."""
    if name not in _CODECS:
        raise KeyError(f"unknown box codec '{name}'; known: {', '.join(list_codecs())}")
    return _CODECS[name](**options)


def list_codecs() -> list[str]:
    return sorted(_CODECS)
