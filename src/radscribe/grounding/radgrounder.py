"""RadGrounder detection text: ``<p bbox=<locA><locB><locC><locD> id=<segNNN>>keyword</p>``.

Facts (lmb-freiburg/radgrounder ``refrad2d_detect.py``, ``docs/DATASET_FORMAT.md`` and the G-IoU
evaluator): the released code writes x_min, y_min, x_max, y_max (the paper's text says y-first; the
checkpoints follow the code) as ``int(coord * 512)`` of the normalised image, so a coordinate of
exactly 1.0 becomes ``<loc0512>``; the evaluator decodes ``token / 512``. The class id is an existing
PaliGemma ``<segNNN>`` token naming one of RadGrounder's 121 anatomy classes; pass ``class_ids`` to
set it (labels outside it get ``default_class_id``). Decoding ignores the id, as the evaluator
matches boxes by keyword text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from radscribe.grounding.base import BoxCodec, DecodedBoxes, ImageSize, register_codec
from radscribe.types import Box

BINS = 512
_ELEMENT = re.compile(r"<p bbox=((?:\s*<loc\d+>)*)\s*(?:id=<seg(\d+)>)?\s*>(.*?)</p>", re.DOTALL)
_LOC = re.compile(r"<loc(\d+)>")


@register_codec("radgrounder")
class RadGrounderCodec(BoxCodec):
    special_tokens = ("<p bbox=", "</p>", "id=")
    reserved = ("<p bbox=", "</p>", "<loc", "<seg")

    def __init__(self, class_ids: Mapping[str, int] | None = None, default_class_id: int = 0):
        self.class_ids = dict(class_ids or {})
        for label, class_id in {**self.class_ids, "(default)": default_class_id}.items():
            if not 0 <= class_id <= 127:
                raise ValueError(f"radgrounder: class id of {label!r} must be a <segNNN> index in 0..127, got {class_id}")
        self.default_class_id = default_class_id

    def tolerance(self, image_size: ImageSize) -> tuple[float, float]:
        return (1 / BINS, 1 / BINS)  # int() truncates, and the evaluator decodes at the bin's lower edge

    def _encode_phrase(self, phrase: str, boxes: list[Box], image_size: ImageSize) -> str:
        class_id = self.class_ids.get(phrase, self.default_class_id)
        return " ".join(
            "<p bbox=" + "".join(f"<loc{int(v * BINS):04d}>" for v in box.xyxy) + f" id=<seg{class_id:03d}>>{phrase}</p>"
            for box in boxes
        )

    def _decode(self, text: str, image_size: ImageSize) -> DecodedBoxes:
        found = DecodedBoxes()
        elements = list(_ELEMENT.finditer(text))
        for index, element in enumerate(elements, start=1):
            values = [int(v) for v in _LOC.findall(element.group(1))]
            where = f"box {index} ({element.group(0)[:80]})"
            if len(values) != 4:
                found.errors.append(f"{where}: expected 4 location tokens, found {len(values)}")
            elif any(v > BINS for v in values):
                found.errors.append(f"{where}: location token above {BINS}")
            else:
                self._box(element.group(3), [v / BINS for v in values], found, where)
        unterminated = text.count("<p bbox=") - len(elements)
        if unterminated > 0:
            found.errors.append(f"{unterminated} '<p bbox=' element(s) not closed by '</p>' or not readable")
        return found
