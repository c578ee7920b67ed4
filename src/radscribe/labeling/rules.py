"""Loading chexpert-lite's rule data: CheXpert phrase lists (a rules folder) and our cue file.

A rules folder has the CheXpert labeler's layout: ``phrases/mention/<observation>.txt`` and
optionally ``phrases/unmention/<observation>.txt``, one regular expression per line. As in the
CheXpert labeler, ``_`` in a phrase stands for a space; at the edge of a phrase we read it as a
word boundary, so ``_line_`` matches "line" but not "outline" or "linear" even at a sentence edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).with_name("rules")
CUES_PATH = RULES_DIR / "cues.yaml"

CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# CheXpert generates these unmentions for the two heart observations: a phrase such as
# "over the left heart" names a place, not the heart's size.
_PLACE_PREFIX = r"(?:over the|overly the|in the)(?: superior| left| right)? ?"
_PLACE_UNMENTIONED = ("Cardiomegaly", "Enlarged Cardiomediastinum")


_WORD_START = r"(?<![a-z0-9])"
_WORD_END = r"(?![a-z0-9])"
_REGEX_SYNTAX = re.compile(r"[\\.^$*+?{}\[\]|()]")


class RulesError(ValueError):
    """A rules folder or cue file that cannot be used; the message names the file."""


def file_stem(observation: str) -> str:
    """``"Enlarged Cardiomediastinum"`` -> ``"enlarged_cardiomediastinum"`` (the CheXpert file name)."""
    return observation.lower().replace(" ", "_")


@dataclass(frozen=True)
class ObservationPhrases:
    """Compiled mention and unmention patterns of one observation."""

    observation: str
    mention: re.Pattern[str]
    unmention: re.Pattern[str] | None
    # The branches of ``mention`` in match-priority order, each with the exact text it matches when
    # it is a plain phrase (None for a real regex): a branch whose text is not in a sentence cannot
    # match there, so the labeler runs only the branches that can.
    mention_branches: tuple[tuple[str | None, str], ...] = ()


@dataclass(frozen=True)
class Cue:
    """One negation/uncertainty cue pattern and its limits."""

    kind: str  # "uncertainty_first" | "negation" | "uncertainty"
    direction: str  # "pre" (cue before the mention) | "post" (cue after it)
    pattern: re.Pattern[str]
    window: int
    targets: re.Pattern[str] | None
    crosses_commas: bool = False


@dataclass(frozen=True)
class CueRules:
    cues: tuple[Cue, ...]
    any_cue: re.Pattern[str] | None  # the union of all cues: a cheap test before trying each one
    pseudo: re.Pattern[str] | None
    terminators: re.Pattern[str] | None
    comma_stops_before: re.Pattern[str] | None  # a comma followed by one of these ends a pre cue's scope
    extra_unmention: dict[str, re.Pattern[str]]
    extra_mention: dict[str, re.Pattern[str]]
    anatomy_phrases: dict[str, re.Pattern[str]]  # full-match patterns of structure-naming mentions
    abnormal: re.Pattern[str] | None  # words that make a structure-naming mention a finding


def _phrase_regex(phrase: str) -> str:
    """One CheXpert phrase line as a regex; edge underscores become word boundaries."""
    core = phrase.strip("_").replace("_", " ")
    prefix = _WORD_START if phrase.startswith("_") else ""
    suffix = _WORD_END if phrase.endswith("_") else ""
    return f"{prefix}(?:{core}){suffix}"


def _phrase_literal(phrase: str) -> str | None:
    """The text a phrase matches when it has no regex syntax (the usual case), else None."""
    core = phrase.strip("_").replace("_", " ")
    return None if _REGEX_SYNTAX.search(core) else core


def _read_phrases(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise RulesError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    phrases = [line.strip("\n\r") for line in lines if line.strip()]
    for number, phrase in enumerate(phrases, start=1):
        try:
            re.compile(_phrase_regex(phrase))
        except re.error as error:
            raise RulesError(f"{path}: phrase {number} {phrase!r} is not a valid regular expression ({error})") from None
    return phrases


def _priority_order(branches: list[tuple[str | None, str]]) -> list[tuple[str | None, str]]:
    """(literal, regex) pairs in the order :func:`_alternation` tries their regexes."""
    return sorted(branches, key=lambda branch: len(branch[1]), reverse=True)


def _alternation(regexes: list[str]) -> re.Pattern[str]:
    """One pattern trying ``regexes`` longest first, so that the longer phrase wins at a position.

    Neighbouring branches that start at a word (``_WORD_START(?:core)...``) share one word-start
    test: inside a word the whole run then fails at once instead of branch by branch, which makes
    scanning several times faster and matches exactly what the plain alternation matches.
    """
    runs: list[tuple[bool, list[str]]] = []  # (shares the word-start test, branches)
    for regex in sorted(regexes, key=len, reverse=True):
        rest = _after_word_start(regex)
        if rest is not None and runs and runs[-1][0]:
            runs[-1][1].append(rest)
        else:
            runs.append((rest is not None, [rest if rest is not None else regex]))
    return re.compile(
        "|".join(
            f"{_WORD_START}(?:{'|'.join(f'(?:{branch})' for branch in branches)})" if shared else f"(?:{branches[0]})"
            for shared, branches in runs
        )
    )


def _after_word_start(regex: str) -> str | None:
    """``(?:core)...`` when ``regex`` is ``_WORD_START(?:core)`` plus an optional ``_WORD_END``, else None."""
    head = _WORD_START + "(?:"
    if not regex.startswith(head):
        return None
    for tail in (")" + _WORD_END, ")"):
        if regex.endswith(tail):
            core = regex[len(head) : len(regex) - len(tail)]
            try:
                re.compile(core)  # balanced on its own: the "(?:" after the word start closes at the tail
            except re.error:
                return None
            return regex[len(_WORD_START) :]
    return None


def load_phrases(rules_dir: Path | str | None = None) -> dict[str, ObservationPhrases]:
    """Mention/unmention patterns for the 14 observations from a CheXpert-layout rules folder."""
    folder = Path(rules_dir) if rules_dir is not None else RULES_DIR
    mention_dir = folder / "phrases" / "mention"
    if not mention_dir.is_dir():
        raise RulesError(f"{folder}: not a rules folder (expected phrases/mention/<observation>.txt files)")
    phrases: dict[str, ObservationPhrases] = {}
    for observation in CHEXPERT_OBSERVATIONS:
        mention_file = mention_dir / f"{file_stem(observation)}.txt"
        if not mention_file.is_file():
            raise RulesError(f"{mention_file}: missing mention phrase file for {observation!r}")
        mention_phrases = _read_phrases(mention_file)
        mentions = [_phrase_regex(phrase) for phrase in mention_phrases]
        unmention_file = folder / "phrases" / "unmention" / f"{file_stem(observation)}.txt"
        unmentions = [_phrase_regex(p) for p in _read_phrases(unmention_file)] if unmention_file.is_file() else []
        if observation in _PLACE_UNMENTIONED:
            unmentions += [_PLACE_PREFIX + regex for regex in mentions]
        phrases[observation] = ObservationPhrases(
            observation,
            _alternation(mentions),
            _alternation(unmentions) if unmentions else None,
            tuple(_priority_order([(_phrase_literal(phrase), regex) for phrase, regex in zip(mention_phrases, mentions)])),
        )
    return phrases


def _bounded(phrase: str) -> str:
    """A cue regex matched at word boundaries (punctuation-only cues such as ";" need none)."""
    if not re.search(r"[A-Za-z0-9]", phrase):
        return re.escape(phrase)
    return f"{_WORD_START}(?:{phrase}){_WORD_END}"


def read_rules_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read one rules file that must hold a YAML mapping; every failure names the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{path}: cannot read the {what} ({error})") from None
    except yaml.YAMLError as error:
        raise RulesError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise RulesError(f"{path}: expected a mapping at the top level")
    return data


def load_cues(path: Path | str | None = None) -> CueRules:
    """Parse a cue YAML file (see ``rules/cues.yaml`` for the format)."""
    path = Path(path) if path is not None else CUES_PATH
    data = read_rules_yaml(path, "cue file")
    windows = data.get("default_window", {"pre": 8, "post": 6})

    def compile_list(field: str, entries: Any) -> re.Pattern[str] | None:
        if not entries:
            return None
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            raise RulesError(f"{path}: field '{field}': expected a list of phrases")
        return _compile(path, field, [_bounded(entry) for entry in entries])

    # Cues sharing kind, direction, window and targets are compiled into one alternation: fewer scans.
    groups: dict[tuple[str, str, int, str | None, bool], list[str]] = {}
    for kind in ("uncertainty_first", "negation", "uncertainty"):
        for direction in ("pre", "post"):
            for index, entry in enumerate((data.get(kind) or {}).get(direction) or []):
                field = f"{kind}.{direction}[{index}]"
                if isinstance(entry, str):
                    entry = {"phrase": entry}
                if not isinstance(entry, dict) or not isinstance(entry.get("phrase"), str):
                    raise RulesError(f"{path}: field '{field}': expected a phrase or a mapping with 'phrase'")
                _compile(path, field, [_bounded(entry["phrase"])])
                key = (
                    kind,
                    direction,
                    int(entry.get("window", windows[direction])),
                    entry.get("targets"),
                    bool(entry.get("crosses_commas", False)),
                )
                groups.setdefault(key, []).append(_bounded(entry["phrase"]))
    cues = [
        Cue(
            kind,
            direction,
            _compile(path, kind, regexes),
            window,
            _compile(path, "targets", [targets]) if targets else None,
            crosses,
        )
        for (kind, direction, window, targets, crosses), regexes in groups.items()
    ]
    extra: dict[str, dict[str, re.Pattern[str]]] = {"mention": {}, "unmention": {}}
    for field, compiled in extra.items():
        for observation, entries in (data.get(field) or {}).items():
            if observation not in CHEXPERT_OBSERVATIONS:
                raise RulesError(f"{path}: field '{field}': unknown observation {observation!r}")
            compiled[observation] = compile_list(f"{field}.{observation}", entries)
    anatomy = data.get("anatomy_mentions") or {}
    anatomy_phrases = {}
    for observation, regex in (anatomy.get("phrases") or {}).items():
        if observation not in CHEXPERT_OBSERVATIONS:
            raise RulesError(f"{path}: field 'anatomy_mentions.phrases': unknown observation {observation!r}")
        anatomy_phrases[observation] = _compile(path, f"anatomy_mentions.phrases.{observation}", [regex])
    abnormal = anatomy.get("abnormal")
    return CueRules(
        cues=tuple(cues),
        any_cue=_compile(path, "cues", [cue.pattern.pattern for cue in cues]) if cues else None,
        pseudo=compile_list("pseudo", data.get("pseudo")),
        terminators=compile_list("terminators", data.get("terminators")),
        comma_stops_before=(
            _compile(path, "comma_stops_before", [r",\s*" + _bounded(data["comma_stops_before"])])
            if data.get("comma_stops_before")
            else None
        ),
        extra_unmention=extra["unmention"],
        extra_mention=extra["mention"],
        anatomy_phrases=anatomy_phrases,
        abnormal=_compile(path, "anatomy_mentions.abnormal", [_bounded(abnormal)]) if abnormal else None,
    )


def _compile(path: Path, field: str, regexes: list[str]) -> re.Pattern[str]:
    try:
        return _alternation(regexes)
    except re.error as error:
        raise RulesError(f"{path}: field '{field}': not a valid regular expression ({error})") from None
