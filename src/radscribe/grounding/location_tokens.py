"""radscribe's own box text: ``<box>label<loc_a><loc_b><loc_c><loc_d></box>``.

x_min, y_min, x_max, y_max of the original image in 256 equal bins, one added token per bin; decoded
at bin centres so the error is at most half a bin (1/512 of the image side). Several boxes of one
phrase follow each other inside one element (``<box>vertebra<loc..>x4<loc..>x4</box>``), which keeps
a 17-vertebra spine short. 256 bins keep the vocabulary small for a small model while staying below
the ~1 % quantisation error MAIRA-2's 100 bins give on small vertebral findings.
"""

from __future__ import annotations

import re

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, quantise, register_codec
from radscribe.types import Box

BINS = 256
BOX_START, BOX_END = "<box>", "</box>"
# Every special token of the format: the MODELS helper adds these to the tokenizer.
LOCATION_TOKENS: tuple[str, ...] = tuple(f"<loc_{i}>" for i in range(BINS)) + (BOX_START, BOX_END)

_ELEMENT = re.compile(re.escape(BOX_START) + r"(.*?)" + re.escape(BOX_END), re.DOTALL)
_LOC = re.compile(r"<loc_(\d+)>")


@register_codec("radscribe")
class RadscribeCodec(BoxCodec):
    special_tokens = LOCATION_TOKENS
    reserved = (BOX_START, BOX_END, "<loc_")

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        return (0.5 / BINS, 0.5 / BINS)

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        locations = "".join(f"<loc_{quantise(v, BINS)}>" for box in boxes for v in box.xyxy)
        return f"{BOX_START}{phrase}{locations}{BOX_END}"

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        elements = list(_ELEMENT.finditer(text))
        for number, element in enumerate(elements, start=1):
            body = element.group(1)
            first = _LOC.search(body)
            where = f"element {number} ({element.group(0)[:60]})"
            if first is None:
                found.errors.append(f"{where}: no location tokens")
                continue
            phrase, tokens = body[: first.start()], body[first.start() :]
            values = [int(v) for v in _LOC.findall(tokens)]
            if _LOC.sub("", tokens).strip():
                found.errors.append(f"{where}: text between location tokens")
            elif len(values) % 4:
                found.errors.append(f"{where}: {len(values)} location tokens, not a multiple of 4")
            elif any(v >= BINS for v in values):
                found.errors.append(f"{where}: location token above {BINS - 1}")
            else:
                for start in range(0, len(values), 4):
                    quad = [(v + 0.5) / BINS for v in values[start : start + 4]]
                    self._box(phrase, quad, found, f"{where} box {start // 4 + 1}")
        unterminated = text.count(BOX_START) - len(elements)
        if unterminated > 0:
            found.errors.append(f"{unterminated} '{BOX_START}' not closed by '{BOX_END}'")
        return found
