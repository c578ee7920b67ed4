"""MAIRA-2 grounded phrases: ``<obj>phrase <box><xNN><yNN><xNN><yNN></box>[<box>..</box>]</obj>``.

Facts (``Maira2Processor``, processing_maira2.py; ``processor_config.json``): coordinates are x_min,
y_min, x_max, y_max in 100 bins of the *centre-cropped square* the image processor feeds the model
(side ``min(W, H)``, offsets ``(W - side) // 2`` and ``(H - side) // 2``); decoding takes bin centres
``(bin + 0.5) / 100`` and ``adjust_box_for_original_image_size`` maps them back to the original image.
We map back without that function's truncation to whole pixels, which only loses precision.

A box reaching outside the square is clipped to it on encoding: MAIRA-2 never sees that part of the
image (on a 229x416 spine film that is the top and bottom fifth).
"""

from __future__ import annotations

import re

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, clip01, quantise, register_codec
from radscribe.types import Box

BINS = 100
OBJ_START, OBJ_END, BOX_START, BOX_END = "<obj>", "</obj>", "<box>", "</box>"
_OBJECT = re.compile(re.escape(OBJ_START) + r"(.*?)" + re.escape(OBJ_END), re.DOTALL)
_BOX = re.compile(re.escape(BOX_START) + r"(.*?)" + re.escape(BOX_END), re.DOTALL)
_COORDS = re.compile(r"\s*<x(\d+)><y(\d+)><x(\d+)><y(\d+)>\s*")


def centre_crop(image_size: ImageSize) -> tuple[int, int, int]:
    """(side, x_offset, y_offset) in pixels of the square MAIRA-2 sees."""
    width, height = image_size
    side = min(width, height)
    return side, (width - side) // 2, (height - side) // 2


@register_codec("maira2")
class Maira2Codec(BoxCodec):
    special_tokens = (OBJ_START, OBJ_END, BOX_START, BOX_END) + tuple(
        f"<{axis}{i}>" for axis in ("x", "y") for i in range(BINS)
    )
    reserved = (OBJ_START, OBJ_END, BOX_START, BOX_END)

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        side = centre_crop(image_size)[0]
        return (0.5 / BINS * side / image_size[0], 0.5 / BINS * side / image_size[1])

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        width, height = image_size
        side, dx, dy = centre_crop(image_size)

        def bin_x(value: float) -> int:
            return quantise(clip01((value * width - dx) / side), BINS)

        def bin_y(value: float) -> int:
            return quantise(clip01((value * height - dy) / side), BINS)

        encoded = "".join(
            f"{BOX_START}<x{bin_x(b.x_min)}><y{bin_y(b.y_min)}><x{bin_x(b.x_max)}><y{bin_y(b.y_max)}>{BOX_END}"
            for b in boxes
        )
        return f"{OBJ_START}{phrase} {encoded}{OBJ_END}"

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        width, height = image_size
        side, dx, dy = centre_crop(image_size)
        objects = list(_OBJECT.finditer(text))
        count = 0
        for obj in objects:
            body = obj.group(1)
            first_box = body.find(BOX_START)
            phrase = body if first_box < 0 else body[:first_box]
            for box in _BOX.finditer(body):
                count += 1
                where = f"box {count} ({box.group(0)[:60]})"
                coords = _COORDS.fullmatch(box.group(1))
                if coords is None:
                    found.errors.append(f"{where}: expected <xNN><yNN><xNN><yNN>")
                    continue
                bins = [int(v) for v in coords.groups()]
                if any(v >= BINS for v in bins):
                    found.errors.append(f"{where}: coordinate bin above {BINS - 1}")
                    continue
                x0, y0, x1, y1 = ((v + 0.5) / BINS for v in bins)
                xyxy = ((x0 * side + dx) / width, (y0 * side + dy) / height, (x1 * side + dx) / width, (y1 * side + dy) / height)
                self._box(phrase, xyxy, found, where)
            if body.count(BOX_START) != len(_BOX.findall(body)):
                found.errors.append(f"phrase {phrase.strip()[:40]!r}: a '{BOX_START}' is not closed by '{BOX_END}'")
        unterminated = text.count(OBJ_START) - len(objects)
        if unterminated > 0:
            found.errors.append(f"{unterminated} '{OBJ_START}' not closed by '{OBJ_END}'")
        return found
