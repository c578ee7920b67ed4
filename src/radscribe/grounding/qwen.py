"""Qwen2-VL and Qwen2.5-VL box text.

Qwen2-VL: ``<|object_ref_start|>phrase<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``, one
``<|box_start|>..<|box_end|>`` per box, integers on a [0, 1000) scale of the image, top-left then
bottom-right. Encoding truncates (``int(coord * 1000)``, as the common fine-tuning tool ms-swift does)
and caps at 999 to stay inside the paper's half-open range; decoding divides by 1000 and accepts 1000.

Qwen2.5-VL: JSON ``{"bbox_2d": [x1, y1, x2, y2], "label": phrase}`` (a JSON list for several), in
absolute pixels of the *resized* model input, i.e. after :func:`smart_resize` (QwenLM/Qwen3-VL #676).
The model's output may wrap the JSON in a markdown fence; decoding reads every ``{..}`` object in the
text, so it also recovers boxes from a list cut short by the generation limit.
"""

from __future__ import annotations

import json
import math
import re

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, register_codec
from radscribe.types import Box

QWEN2_SCALE = 1000
REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
_QWEN2_PARTS = re.compile(
    re.escape(REF_START) + r"(.*?)" + re.escape(REF_END) + "|" + re.escape(BOX_START) + r"(.*?)" + re.escape(BOX_END),
    re.DOTALL,
)
_QWEN2_POINTS = re.compile(r"\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*")
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")

# Qwen2.5-VL's released preprocessor_config.json: patch 14 x merge 2 = 28, pixels in [4*28*28, 16384*28*28].
QWEN25_FACTOR = 28
QWEN25_MIN_PIXELS = 4 * 28 * 28
QWEN25_MAX_PIXELS = 16384 * 28 * 28
MAX_ASPECT_RATIO = 200


@register_codec("qwen2-vl")
class Qwen2VLCodec(BoxCodec):
    reserved = (REF_START, REF_END, BOX_START, BOX_END)

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        return (1 / QWEN2_SCALE, 1 / QWEN2_SCALE)  # truncation, decoded at the bin's lower edge

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        def scaled(value: float) -> int:
            return min(QWEN2_SCALE - 1, int(value * QWEN2_SCALE))

        return f"{REF_START}{phrase}{REF_END}" + "".join(
            f"{BOX_START}({scaled(b.x_min)},{scaled(b.y_min)}),({scaled(b.x_max)},{scaled(b.y_max)}){BOX_END}"
            for b in boxes
        )

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        phrase = ""
        count = 0
        for part in _QWEN2_PARTS.finditer(text):
            if part.group(1) is not None:
                phrase = part.group(1)
                continue
            count += 1
            where = f"box {count} ({part.group(2)[:60]!r})"
            points = _QWEN2_POINTS.fullmatch(part.group(2))
            if points is None:
                found.errors.append(f"{where}: expected '(x1,y1),(x2,y2)' with integer coordinates")
                continue
            values = [int(v) for v in points.groups()]
            if any(v > QWEN2_SCALE for v in values):
                found.errors.append(f"{where}: coordinate above {QWEN2_SCALE}")
                continue
            self._box(phrase, [v / QWEN2_SCALE for v in values], found, where)
        unterminated = text.count(BOX_START) - count
        if unterminated > 0:
            found.errors.append(f"{unterminated} '{BOX_START}' not closed by '{BOX_END}'")
        return found


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN25_FACTOR,
    min_pixels: int = QWEN25_MIN_PIXELS,
    max_pixels: int = QWEN25_MAX_PIXELS,
) -> tuple[int, int]:
    """Qwen2.5-VL's input size (height, width): both sides multiples of ``factor``, the pixel count
    within [min_pixels, max_pixels], the aspect ratio kept as closely as that allows."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"Qwen2.5-VL needs an aspect ratio below {MAX_ASPECT_RATIO}, got {width}x{height}")
    # Python's round() rounds half to even, as the reference implementation does.
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@register_codec("qwen2.5-vl")
class Qwen25VLCodec(BoxCodec):
    reserved = ("{", "}")  # decoding finds flat JSON objects by their braces

    def __init__(
        self, factor: int = QWEN25_FACTOR, min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS
    ):
        if factor <= 0 or not 0 < min_pixels <= max_pixels:
            raise ValueError(f"qwen2.5-vl: need factor > 0 and 0 < min_pixels <= max_pixels, got {factor}, {min_pixels}, {max_pixels}")
        self.factor, self.min_pixels, self.max_pixels = factor, min_pixels, max_pixels

    def input_size(self, image_size: ImageSize) -> tuple[int, int]:
        """(width, height) of the model input for an original image of ``image_size``."""
        height, width = smart_resize(image_size[1], image_size[0], self.factor, self.min_pixels, self.max_pixels)
        return width, height

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        width, height = self.input_size(image_size)
        return (0.5 / width, 0.5 / height)

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        width, height = self.input_size(image_size)
        objects = [
            {
                "bbox_2d": [round(b.x_min * width), round(b.y_min * height), round(b.x_max * width), round(b.y_max * height)],
                "label": phrase,
            }
            for b in boxes
        ]
        payload = objects[0] if len(objects) == 1 else objects
        return json.dumps(payload, ensure_ascii=False)

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        width, height = self.input_size(image_size)
        for index, match in enumerate(_JSON_OBJECT.finditer(text), start=1):
            where = f"object {index} ({match.group(0)[:80]})"
            try:
                record = json.loads(match.group(0))
            except json.JSONDecodeError as error:
                found.errors.append(f"{where}: not valid JSON ({error.msg})")
                continue
            if "bbox_2d" not in record:
                continue  # points and other objects carry no box
            values = record["bbox_2d"]
            if (
                not isinstance(values, list)
                or len(values) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            ):
                found.errors.append(f"{where}: bbox_2d must be 4 numbers [x1, y1, x2, y2]")
                continue
            label = record.get("label", "")
            x0, y0, x1, y1 = values
            self._box(label if isinstance(label, str) else str(label), (x0 / width, y0 / height, x1 / width, y1 / height), found, where)
        return found
