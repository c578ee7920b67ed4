"""Mentions -> classes: anatomy phrases in report text, mapped to the classes of a schema.

:class:`LexiconMapper` finds the schema's lexicon phrases (longest first, plurals included) in each
sentence (radscribe.labeling's splitter), reads the patient side from a "left"/"right"/"bilateral"
just before the phrase (or "bilaterally" just after), keeps the classes of that side, and asks the
labeler's cue-scope engine, with the anatomy cues in ``anatomy_cues.yaml``, whether the structure
itself is said to be gone ("absent", "removed"); lexicon entries such as "cholecystectomy" are absent
by definition. :class:`radscribe.volumes.llm.LLMMapper` gives the same :class:`ClassMention` records
from a language model instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from radscribe.labeling import cue_starts, load_cues, scope_statuses, split_sentences
from radscribe.volumes.schema import ClassSchema, LexiconEntry, side_of

MentionSide = Literal["left", "right", "bilateral"]
PresenceStatus = Literal["present", "absent"]
ANATOMY_CUES = Path(__file__).with_name("anatomy_cues.yaml")

_WORDS_BEFORE = 3  # how far back a side word reaches ("left upper and lower lobes")
_SIDE_WORD = re.compile(r"(?<![a-z0-9])(left|right|bilateral|both|bilaterally)(?![a-z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
_ADJACENT_SIDE = re.compile(r"(?<![a-z0-9])(?:left|right|bilateral)[\s\-]+$")


@dataclass(frozen=True)
class ClassMention:
    """One anatomy mention: ``text`` is ``report[span[0]:span[1]]`` (side word included when adjacent)."""

    text: str
    span: tuple[int, int]
    sentence_span: tuple[int, int]
    classes: tuple[str, ...]
    side: MentionSide | None
    status: PresenceStatus
    source: str = "lexicon"

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text, "span": list(self.span), "classes": list(self.classes),
            "side": self.side, "status": self.status, "source": self.source,
        }


class MentionMapper(Protocol):
    def map_report(self, text: str) -> list[ClassMention]: ...


class LexiconMapper:
    """The schema's lexicon as one compiled pattern; reuse one instance for many reports."""

    def __init__(self, schema: ClassSchema, cues_path: Path | str | None = None):
        self.schema = schema
        self._entries: dict[str, LexiconEntry] = {}
        for entry in schema.lexicon:
            for variant in _variants(entry.phrase, schema.plurals):
                self._entries.setdefault(variant, entry)
        alternatives = sorted(self._entries, key=len, reverse=True)
        body = "|".join(r"[\s\-]+".join(re.escape(word) for word in variant.split(" ")) for variant in alternatives)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")
        self._cues = load_cues(cues_path or ANATOMY_CUES)
        self._cue_starts = cue_starts(self._cues)

    def map_report(self, text: str) -> list[ClassMention]:
        mentions: list[ClassMention] = []
        for sentence in split_sentences(text):
            mentions.extend(self._map_sentence(sentence.text, sentence.start))
        return mentions

    def _map_sentence(self, sentence: str, offset: int) -> list[ClassMention]:
        lowered = sentence.lower()
        matches = list(self._pattern.finditer(lowered))
        if not matches:
            return []
        statuses = scope_statuses(lowered, [m.span() for m in matches], self._cues, self._cue_starts)
        out = []
        previous_end = 0
        for match, (status, _) in zip(matches, statuses):
            entry = self._entries[re.sub(r"[\s\-]+", " ", match.group(0))]
            side, start = _side(lowered, previous_end, match.start(), match.end())
            previous_end = match.end()
            classes = _on_side(entry.classes, side)
            if not classes:
                continue  # e.g. "right atrial appendage": the schema has only a left one
            present: PresenceStatus = "absent" if entry.absent or status == "negative" else "present"
            out.append(
                ClassMention(
                    text=sentence[start : match.end()],
                    span=(offset + start, offset + match.end()),
                    sentence_span=(offset, offset + len(sentence)),
                    classes=classes,
                    side=side,
                    status=present,
                )
            )
        return out


def _variants(phrase: str, plurals: dict[str, str]) -> list[str]:
    """The phrase, its regular plurals, and irregular ones of the phrase or of its last word."""
    variants = [phrase, phrase + "s", phrase + "es"]
    head, _, last = phrase.rpartition(" ")
    if phrase in plurals:
        variants.append(plurals[phrase])
    elif last in plurals:
        variants.append(f"{head} {plurals[last]}".strip())
    return variants


def _side(sentence: str, floor: int, start: int, end: int) -> tuple[MentionSide | None, int]:
    """The side stated for the phrase at ``start:end``, and where the mention starts (at an adjacent side word).

    Side words count within the few words before the phrase, but never before the previous mention
    ("right lung and heart": the heart gets no side), or "bilaterally" right after it.
    """
    window_start = start
    for _ in range(_WORDS_BEFORE):
        before = list(_WORD.finditer(sentence, floor, window_start))
        if not before:
            break
        window_start = before[-1].start()
    words = {m.group(1): m.start() for m in _SIDE_WORD.finditer(sentence, window_start, start)}
    after = _WORD.search(sentence, end)
    if after is not None and after.group(0) == "bilaterally":
        words["bilaterally"] = after.start()
    side: MentionSide | None
    if "bilateral" in words or "both" in words or "bilaterally" in words or ("left" in words and "right" in words):
        side = "bilateral"
    elif "left" in words or "right" in words:
        side = "left" if "left" in words else "right"
    else:
        return None, start
    adjacent = _ADJACENT_SIDE.search(sentence, floor, start)
    return side, (adjacent.start() if adjacent else start)


def _on_side(classes: tuple[str, ...], side: MentionSide | None) -> tuple[str, ...]:
    """The classes of one side; classes without a side in their name stay (their boxes carry the side)."""
    if side not in ("left", "right"):
        return classes
    return tuple(name for name in classes if side_of(name) in (side, None))
