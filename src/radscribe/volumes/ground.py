"""The intersection rule: a mention is grounded on a slice only where its class is present there.

:func:`ground_slice` takes a report's mentions and one slice's class boxes and returns the grounded
report of that slice: the sentences holding at least one grounded mention, with each grounded phrase
written in RadGrounder's detection format (``<p bbox=<loc..>x4 id=<segNNN>>phrase</p>``, one element
per box), the canonical boxes (label = the phrase as written, lower-cased), and for every mention that
was not grounded the reason why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from radscribe.grounding import RadGrounderCodec
from radscribe.types import Box
from radscribe.volumes.masks import ClassBox
from radscribe.volumes.mentions import ClassMention
from radscribe.volumes.schema import ClassSchema

# PaliGemma has 128 <segNNN> tokens: schema ids above fit no token and get RadGrounder's default 0.
_MAX_SEG_ID = 127
SKIP_ABSENT = "the report says the structure is absent or removed"
SKIP_NOT_ON_SLICE = "its class is not on this slice"
SKIP_WRONG_SIDE = "its class is on this slice, but not on the stated side"


@dataclass(frozen=True)
class GroundedMention:
    mention: ClassMention
    boxes: tuple[ClassBox, ...]

    @property
    def phrase(self) -> str:
        return " ".join(self.mention.text.lower().split())


@dataclass
class SliceGrounding:
    """What one slice grounds: the grounded text, canonical boxes, and the mentions left out with why."""

    text: str = ""
    grounded_text: str = ""
    grounded: list[GroundedMention] = field(default_factory=list)
    skipped: list[tuple[ClassMention, str]] = field(default_factory=list)

    def boxes(self, source: str) -> list[Box]:
        """Canonical boxes, one per grounded box, labelled with the phrase."""
        return [
            Box(g.phrase, *item.box.xyxy, source=source)
            for g in self.grounded
            for item in g.boxes
        ]


def ground_slice(
    report: str,
    mentions: Sequence[ClassMention],
    class_boxes: Sequence[ClassBox],
    image_size: tuple[int, int],
    schema: ClassSchema,
) -> SliceGrounding:
    """Ground ``mentions`` of ``report`` on one slice whose classes are ``class_boxes``."""
    by_class: dict[str, list[ClassBox]] = {}
    for item in class_boxes:
        by_class.setdefault(item.class_name, []).append(item)
    result = SliceGrounding()
    for mention in mentions:
        if mention.status == "absent":
            result.skipped.append((mention, SKIP_ABSENT))
            continue
        candidates = [item for name in mention.classes for item in by_class.get(name, [])]
        if not candidates:
            result.skipped.append((mention, SKIP_NOT_ON_SLICE))
            continue
        if mention.side in ("left", "right"):
            candidates = [item for item in candidates if item.side == mention.side]
            if not candidates:
                result.skipped.append((mention, SKIP_WRONG_SIDE))
                continue
        result.grounded.append(GroundedMention(mention, tuple(sorted(candidates, key=lambda c: (c.box.y_min, c.box.x_min)))))
    if result.grounded:
        result.text, result.grounded_text = _grounded_sentences(report, result.grounded, image_size, schema)
    return result


def _grounded_sentences(
    report: str, grounded: Sequence[GroundedMention], image_size: tuple[int, int], schema: ClassSchema
) -> tuple[str, str]:
    """The plain and the RadGrounder-format text of the sentences that hold a grounded mention."""
    ids = schema.ids
    by_sentence: dict[tuple[int, int], list[GroundedMention]] = {}
    for item in grounded:
        by_sentence.setdefault(item.mention.sentence_span, []).append(item)
    plain, marked = [], []
    for (start, end), items in sorted(by_sentence.items()):
        while end < len(report) and report[end] in ".!?":
            end += 1  # the splitter leaves the full stop out of the sentence; the text keeps it
        pieces, position = [], start
        for item in sorted(items, key=lambda g: g.mention.span[0]):
            first, last = item.mention.span
            class_id = ids[item.boxes[0].class_name]
            codec = RadGrounderCodec({item.mention.text: class_id if class_id <= _MAX_SEG_ID else 0})
            pieces.append(report[position:first])
            pieces.append(codec.encode_phrase(item.mention.text, [box.box for box in item.boxes], image_size))
            position = last
        pieces.append(report[position:end])
        plain.append(report[start:end])
        marked.append("".join(pieces))
    return " ".join(plain), " ".join(marked)
