"""PaliGemma / PaliGemma 2 detection text: ``<loc><loc><loc><loc> phrase ; <loc>... phrase``.

Facts (big_vision ``pp/proj/paligemma/segmentation.py`` and its evaluator): four tokens per box in
the order y_min, x_min, y_max, x_max of the normalised image; encode ``round(coord * 1023)`` clipped
to 0..1023 (so the tokens ``<loc0000>``..``<loc1023>``), decode ``token / 1023``. Several detections
are joined with `` ; ``. Segmentation codes ``<segNNN>`` may follow a box; they carry no box and are
skipped when decoding.
"""

from __future__ import annotations

import re

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, register_codec
from radscribe.types import Box

LOC_MAX = 1023
_RUN = re.compile(r"(?:<loc(\d+)>\s*)+")
_LOC = re.compile(r"<loc(\d+)>")
_SEG = re.compile(r"<seg\d+>")


def _token(value: float) -> str:
    return f"<loc{min(LOC_MAX, max(0, round(value * LOC_MAX))):04d}>"


@register_codec("paligemma")
class PaliGemmaCodec(BoxCodec):
    reserved = (";", "<loc", "<seg", "\n")

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        return (0.5 / LOC_MAX, 0.5 / LOC_MAX)

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        return " ; ".join(
            "".join(_token(v) for v in (box.y_min, box.x_min, box.y_max, box.x_max)) + f" {phrase}" for box in boxes
        )

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        runs = list(_RUN.finditer(text))
        for index, run in enumerate(runs, start=1):
            # The phrase runs from the box to the next separator, line end or box.
            end = runs[index].start() if index < len(runs) else len(text)
            phrase = re.split(r"[;\n]", _SEG.sub("", text[run.end() : end]), maxsplit=1)[0]
            values = [int(v) for v in _LOC.findall(run.group(0))]
            where = f"box {index} ({run.group(0).strip()})"
            if len(values) != 4:
                found.errors.append(f"{where}: expected 4 location tokens, found {len(values)}")
                continue
            if any(v > LOC_MAX for v in values):
                found.errors.append(f"{where}: location token above {LOC_MAX}")
                continue
            y0, x0, y1, x1 = (v / LOC_MAX for v in values)
            self._box(phrase, (x0, y0, x1, y1), found, where)
        return found
