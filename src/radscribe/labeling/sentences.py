"""Sentence splitting for radiology reports, keeping character spans into the original text.

Negation and uncertainty scope never crosses a sentence, so the splitter decides how far a "no"
reaches. It must not break "e.g." or "2.5 cm", must split "apex.There" (a missing space is common in
real reports) and lower-case model output ("normal . no effusion ."), and must treat numbered list
markers ("1. ... 2. ...") as boundaries that belong to no sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that end with a period without ending the sentence (lower-case, without the final period).
ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "eg", "ie", "vs", "approx", "dr", "mr", "mrs", "ms", "fig", "cf", "resp", "incl"}
)

# A list marker: one or two digits and "." or ")" at the start of the text or after a sentence end,
# followed by a space (so "2.5" and "T12." are not markers).
_LIST_MARKER = re.compile(r"(?:(?<=^)|(?<=[\s.:;]))\(?\d{1,2}[.)](?=\s|$)")
# Candidate sentence ends: runs of . ! ? and line breaks; list markers are handled first.
_DIGIT = re.compile(r"\d")
_END = re.compile(r"[.!?]+|\n")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_WORD_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.")


@dataclass(frozen=True)
class Sentence:
    """One sentence: ``text`` equals ``report[start:end]`` (whitespace trimmed)."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[Sentence]:
    """Split a report into sentences with spans into ``text``; empty pieces are dropped."""
    # (start, end) of separator regions that belong to no sentence
    # A marker has a digit; most reports have none, and the marker scan is the slow one.
    markers = [(m.start(), m.end()) for m in _LIST_MARKER.finditer(text)] if _DIGIT.search(text) else []
    cuts = list(markers)
    for end in _END.finditer(text):
        start, stop = end.start(), end.end()
        if any(a <= start < b for a, b in markers):
            continue
        if end.group() == "." and _is_inner_period(text, start):
            continue
        cuts.append((start, stop))
    cuts.sort()

    sentences: list[Sentence] = []
    position = 0
    for cut_start, cut_end in cuts + [(len(text), len(text))]:
        if cut_start >= position:
            _append(sentences, text, position, cut_start)
        position = max(position, cut_end)
    return sentences


def _is_inner_period(text: str, index: int) -> bool:
    """A single period that does not end a sentence: a decimal point or an abbreviation."""
    before = text[index - 1] if index > 0 else ""
    after = text[index + 1] if index + 1 < len(text) else ""
    if before.isdigit() and after.isdigit():
        return True
    # Only the run of letters and periods just before the period can match: search just that.
    # ("$" also matches before a final line break, hence the step over one.)
    run_start = index - 1 if index > 0 and text[index - 1] == "\n" else index
    while run_start > 0 and text[run_start - 1] in _WORD_CHARACTERS:
        run_start -= 1
    word = _WORD_BEFORE.search(text, run_start, index)
    if word and word.group(1).lower() in ABBREVIATIONS:
        return True
    # The inner periods of "e.g." / "i.e.": a single letter, a period, a letter, a period.
    return bool(after.isalpha() and text[index + 2 : index + 3] == "." and before.isalpha())


def _append(sentences: list[Sentence], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not any(character.isalnum() for character in stripped):
        return
    offset = start + (len(piece) - len(piece.lstrip()))
    sentences.append(Sentence(stripped, offset, offset + len(stripped)))
