"""MedGemma 1.5 box text: JSON ``[{"box_2d": [y0, x0, y1, x1], "label": phrase}]``.

Facts (Google-Health/medgemma, ``notebooks/cxr_anatomy_localization_with_hugging_face.ipynb``, and
the MedGemma 1.5 technical report, section 3.2.4): the model writes a JSON list of objects, each a
``label`` and a ``box_2d`` of top-left then bottom-right corners in **y, x order**, integers on a
0..1000 scale of the image it was shown; the notebook pads the radiograph symmetrically to a square
(black) before the processor resizes it to 896 x 896, so the scale is that of the *padded square*.
The report's text states a [0, 1] scale; the released notebook (what the weights answer to) uses
0..1000, which we follow. Model output may wrap the JSON in a markdown fence or put reasoning
before it; decoding reads every flat ``{..}`` object that has a ``box_2d``.

Encoding rounds to the nearest integer; decoding maps back through the padding and clips what lies
in it to the image (the model sees the padding as background, and a box may graze it).
"""

from __future__ import annotations

import json
import re

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, clip01, register_codec
from radscribe.types import Box

SCALE = 1000
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def square_padding(image_size: ImageSize) -> tuple[int, int, int]:
    """(side, x_offset, y_offset) in pixels: the image centred on a black square of side max(W, H)."""
    width, height = image_size
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


@register_codec("medgemma")
class MedGemmaCodec(BoxCodec):
    reserved = ("{", "}")  # decoding finds flat JSON objects by their braces

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        side = square_padding(image_size)[0]
        return (0.5 / SCALE * side / image_size[0], 0.5 / SCALE * side / image_size[1])

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        width, height = image_size
        side, dx, dy = square_padding(image_size)

        def scaled_x(value: float) -> int:
            return round((dx + value * width) / side * SCALE)

        def scaled_y(value: float) -> int:
            return round((dy + value * height) / side * SCALE)

        objects = [
            {"box_2d": [scaled_y(b.y_min), scaled_x(b.x_min), scaled_y(b.y_max), scaled_x(b.x_max)], "label": phrase}
            for b in boxes
        ]
        return json.dumps(objects, ensure_ascii=False)

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        width, height = image_size
        side, dx, dy = square_padding(image_size)
        for index, match in enumerate(_JSON_OBJECT.finditer(text), start=1):
            where = f"object {index} ({match.group(0)[:80]})"
            try:
                record = json.loads(match.group(0))
            except json.JSONDecodeError as error:
                found.errors.append(f"{where}: not valid JSON ({error.msg})")
                continue
            if "box_2d" not in record:
                continue
            values = record["box_2d"]
            if (
                not isinstance(values, list)
                or len(values) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            ):
                found.errors.append(f"{where}: box_2d must be 4 numbers [y0, x0, y1, x1]")
                continue
            if any(not 0 <= v <= SCALE for v in values):
                found.errors.append(f"{where}: coordinate outside 0..{SCALE}")
                continue
            y0, x0, y1, x1 = values
            label = record.get("label", "")
            xyxy = (
                clip01((x0 / SCALE * side - dx) / width), clip01((y0 / SCALE * side - dy) / height),
                clip01((x1 / SCALE * side - dx) / width), clip01((y1 / SCALE * side - dy) / height),
            )
            self._box(label if isinstance(label, str) else str(label), xyxy, found, where)
        return found
