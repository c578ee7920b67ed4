"""chexpert-lite: an offline approximation of the CheXpert report labeler.

Mentions come from the CheXpert phrase lists exactly as the CheXpert labeler finds them (regex
substring matches per sentence, minus unmentions). Negation and uncertainty differ: CheXpert decides
them on a dependency parse we cannot run offline, so chexpert-lite uses surface cues with a scope
(see ``rules/cues.yaml``). Aggregation follows CheXpert: per observation positive beats uncertain
beats negative, blank when never mentioned; No Finding is 1 only when nothing but Support Devices is
positive or uncertain (including CheXpert's "other findings" phrases), and blank otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from radscribe.labeling.rules import CHEXPERT_OBSERVATIONS, Cue, CueRules, load_cues, load_phrases
from radscribe.labeling.sentences import Sentence, split_sentences
from radscribe.types import Finding

LabelValue = Literal[1, 0, -1] | None
MentionStatus = Literal["positive", "negative", "uncertain"]

LABELER_NAME = "chexpert-lite"
# Observations that never block No Finding (CheXpert: Support Devices; No Finding itself holds the
# "other findings" phrases, which do block it).
_NOT_BLOCKING = ("No Finding", "Support Devices")
_STATUS_VALUE = {"positive": 1, "uncertain": -1, "negative": 0}
_VALUE_STATUS = {1: "positive", -1: "uncertain", 0: "negative"}
_CONJUNCTION = re.compile(r"(?<![a-z])(?:or|nor|and)(?![a-z])")
_WORD = re.compile(r"[a-z0-9]+")
_WORD_START = r"(?<![a-z0-9])"  # the start of a _WORD
_COMMA = re.compile(",")
# CheXpert: heart failure affirmed (positive or uncertain) adds an uncertain Cardiomegaly.
HEART_FAILURE = re.compile(r"chf|heart failure")
# Distinct phrase combinations seen in sentences; real reports need a few hundred.
_MAX_CACHED_PATTERNS = 4096


@dataclass(frozen=True)
class Mention:
    """One phrase match and the status our cues gave it.

    ``span`` is into the labelled report text; ``sentence`` is the sentence holding it. Mentions
    under "No Finding" are CheXpert's "other findings" phrases (emphysema, scoliosis...): affirmed,
    they rule out No Finding.
    """

    observation: str
    text: str
    span: tuple[int, int]
    sentence: str
    sentence_span: tuple[int, int]
    status: MentionStatus
    cue: str | None = None


@dataclass(frozen=True)
class ReportLabels:
    """The labels of one report: ``values[observation]`` in 1 / 0 / -1 / None (not mentioned)."""

    values: dict[str, LabelValue]
    mentions: tuple[Mention, ...]
    status: Literal["labeled", "empty"] = "labeled"

    def row(self) -> list[LabelValue]:
        """Values in CheXpert column order."""
        return [self.values[observation] for observation in CHEXPERT_OBSERVATIONS]

    def findings(self, source: str = LABELER_NAME) -> list[Finding]:
        """The mentioned observations as canonical :class:`~radscribe.types.Finding` records."""
        return [
            Finding(observation, _VALUE_STATUS[value], source)
            for observation, value in self.values.items()
            if value is not None
        ]


class ChexpertLite:
    """The labeler with its rules compiled once; reuse one instance for many reports.

    ``rules_dir``: a folder in the CheXpert labeler's layout (default: the copy shipped with
    radscribe). ``cues_path``: a cue YAML file (default: ``rules/cues.yaml``).
    """

    def __init__(self, rules_dir: Path | str | None = None, cues_path: Path | str | None = None):
        self.phrases = load_phrases(rules_dir)
        self.cues: CueRules = load_cues(cues_path)
        # CheXpert's phrases and our additions in one pattern per observation: one scan each.
        self._mention = {
            observation: _union(phrases.mention, self.cues.extra_mention.get(observation))
            for observation, phrases in self.phrases.items()
        }
        self._unmention = {
            observation: _union(phrases.unmention, self.cues.extra_unmention.get(observation))
            for observation, phrases in self.phrases.items()
        }
        # A sentence mentions few observations: substring tests find the phrases that can match, and
        # only those run (an alternation of 50 phrases costs ~50 tries at every character). Branches
        # that cannot match change nothing, so the matches are exactly those of the whole pattern.
        # Observations with a regex phrase (or cue-file additions) are always scanned whole.
        self._scanned_whole = {
            observation
            for observation, phrases in self.phrases.items()
            if observation in self.cues.extra_mention or any(literal is None for literal, _ in phrases.mention_branches)
        }
        self._literal_branches: dict[str, list[tuple[str, int]]] = {}  # phrase text -> (observation, branch)
        for observation, phrases in self.phrases.items():
            if observation not in self._scanned_whole:
                for index, (literal, _) in enumerate(phrases.mention_branches):
                    self._literal_branches.setdefault(literal, []).append((observation, index))  # type: ignore[arg-type]
        self._branch_patterns: dict[tuple[str, tuple[int, ...]], re.Pattern[str]] = {}
        self._cue_starts = cue_starts(self.cues)

    def label(self, text: str) -> ReportLabels:
        if not text or not text.strip():
            return ReportLabels({observation: None for observation in CHEXPERT_OBSERVATIONS}, (), "empty")
        mentions: list[Mention] = []
        for sentence in split_sentences(text):
            mentions.extend(self._sentence_mentions(sentence))
        return ReportLabels(_aggregate(mentions), tuple(mentions))

    def label_many(self, texts: Iterable[str]) -> list[ReportLabels]:
        return [self.label(text) for text in texts]

    def _sentence_mentions(self, sentence: Sentence) -> list[Mention]:
        lowered = sentence.text.lower()
        found: list[tuple[str, int, int]] = []
        possible: dict[str, list[int]] = {}
        for literal in [literal for literal in self._literal_branches if literal in lowered]:
            for observation, index in self._literal_branches[literal]:
                possible.setdefault(observation, []).append(index)
        for observation, mention in self._mention.items():
            if observation not in self._scanned_whole:
                if observation not in possible:
                    continue
                mention = self._branches(observation, tuple(sorted(possible[observation])))
            matches = _spans(mention, lowered)
            if not matches:
                continue
            blocked = _spans(self._unmention[observation], lowered)
            found.extend((observation, start, end) for start, end in matches if not _overlaps(start, end, blocked))
        if not found:
            return []
        scope = _Scope(lowered, self.cues, self._cue_starts)
        out = []
        for observation, start, end in found:
            status, cue = scope.status(start, end)
            if status == "positive" and self._names_structure_only(observation, lowered, start, end):
                continue
            out.append(
                Mention(
                    observation=observation,
                    text=sentence.text[start:end],
                    span=(sentence.start + start, sentence.start + end),
                    sentence=sentence.text,
                    sentence_span=(sentence.start, sentence.end),
                    status=status,
                    cue=cue,
                )
            )
        return out

    def _branches(self, observation: str, indices: tuple[int, ...]) -> re.Pattern[str]:
        """The alternation of some of an observation's mention branches, in priority order (cached)."""
        key = (observation, indices)
        pattern = self._branch_patterns.get(key)
        if pattern is None:
            branches = self.phrases[observation].mention_branches
            pattern = re.compile("|".join(f"(?:{branches[index][1]})" for index in indices))
            if len(self._branch_patterns) >= _MAX_CACHED_PATTERNS:
                self._branch_patterns.clear()
            self._branch_patterns[key] = pattern
        return pattern

    def _names_structure_only(self, observation: str, sentence: str, start: int, end: int) -> bool:
        """A mention such as "heart size" in a sentence that states no abnormality."""
        anatomy = self.cues.anatomy_phrases.get(observation)
        if anatomy is None or not anatomy.fullmatch(sentence, start, end):
            return False
        abnormal = self.cues.abnormal
        return abnormal is None or not any(
            not (match.start() < end and start < match.end()) for match in abnormal.finditer(sentence)
        )


class _Scope:
    """The cues, pseudo-cues, terminators and commas of one (lower-cased) sentence."""

    def __init__(self, text: str, rules: CueRules, cue_starts: re.Pattern[str] | None):
        self.text = text
        self.rules = rules
        # Every cue starts at a word: try the cues only where the union of all cues matches there.
        # Pseudo-cues, terminators and commas matter only once there is a cue, so scan for them then.
        self.cues: list[tuple[Cue, int, int]] = []
        pseudo: list[tuple[int, int]] | None = None
        for start in cue_starts.finditer(text) if cue_starts is not None else ():
            position = start.start()
            for cue in rules.cues:
                match = cue.pattern.match(text, position)
                if match is None:
                    continue
                if pseudo is None:
                    pseudo = _spans(rules.pseudo, text)
                if not _overlaps(match.start(), match.end(), pseudo):
                    self.cues.append((cue, match.start(), match.end()))
        self.terminators = [start for start, _ in _spans(rules.terminators, text)] if self.cues else []
        self.commas = [comma.start() for comma in _COMMA.finditer(text)] if self.cues else []

    def status(self, start: int, end: int) -> tuple[MentionStatus, str | None]:
        best: tuple[int, str] | None = None
        for cue, cue_start, cue_end in self.cues:
            if cue_start < end and start < cue_end:
                continue  # a cue inside the mention itself
            if cue.targets is not None and not cue.targets.search(self.text[start:end]):
                continue
            if not self._in_scope(cue, cue_start, cue_end, start, end):
                continue
            rank = _RANK[cue.kind]
            if best is None or rank < best[0]:
                best = (rank, self.text[cue_start:cue_end])
        if best is None:
            return "positive", None
        return _RANK_STATUS[best[0]], best[1]

    def _in_scope(self, cue: Cue, cue_start: int, cue_end: int, start: int, end: int) -> bool:
        if cue.direction == "pre":
            if cue_end > start:
                return False
            gap_start, gap_end = cue_end, start
        else:
            if cue_start < end:
                return False
            gap_start, gap_end = end, cue_start
        if len(_WORD.findall(self.text, gap_start, gap_end)) > cue.window:
            return False
        if any(gap_start <= position < gap_end for position in self.terminators):
            return False
        commas = [position for position in self.commas if gap_start <= position < gap_end]
        if not commas or cue.crosses_commas:
            return True
        if cue.direction == "pre":
            # A list carries the cue on unless an item starts with a degree word ("no x, mild y").
            stops = self.rules.comma_stops_before
            return stops is None or not any(stops.match(self.text, position) for position in commas)
        # A post cue reaches back over commas only through a coordination ("a, b and c are normal").
        return bool(_CONJUNCTION.search(self.text, gap_start, gap_end))


def cue_starts(rules: CueRules) -> re.Pattern[str] | None:
    """The word starts where some cue of ``rules`` matches, found in one scan (a zero-width match per start)."""
    any_cue = rules.any_cue
    return re.compile(rf"{_WORD_START}(?=[a-z0-9])(?=(?:{any_cue.pattern}))") if any_cue else None


def scope_statuses(
    sentence: str, spans: Iterable[tuple[int, int]], rules: CueRules, starts: re.Pattern[str] | None = None
) -> list[tuple[MentionStatus, str | None]]:
    """The status (and deciding cue) of each span of one sentence under another cue file's ``rules``.

    The labeler's own scope logic (windows, terminators, commas, pseudo-cues) for mentions found by
    someone else, e.g. anatomy phrases with anatomy cues (:mod:`radscribe.volumes`). ``starts`` is
    :func:`cue_starts` of ``rules``, precomputed by callers that score many sentences.
    """
    scope = _Scope(sentence.lower(), rules, starts if starts is not None else cue_starts(rules))
    return [scope.status(start, end) for start, end in spans]


_RANK = {"uncertainty_first": 0, "negation": 1, "uncertainty": 2}
_RANK_STATUS: dict[int, MentionStatus] = {0: "uncertain", 1: "negative", 2: "uncertain"}


def _union(*patterns: re.Pattern[str] | None) -> re.Pattern[str] | None:
    present = [pattern.pattern for pattern in patterns if pattern is not None]
    return re.compile("|".join(f"(?:{regex})" for regex in present)) if present else None


def _spans(pattern: re.Pattern[str] | None, text: str) -> list[tuple[int, int]]:
    return [(match.start(), match.end()) for match in pattern.finditer(text)] if pattern is not None else []


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(a < end and start < b for a, b in spans)


def _aggregate(mentions: list[Mention]) -> dict[str, LabelValue]:
    statuses: dict[str, set[str]] = {observation: set() for observation in CHEXPERT_OBSERVATIONS}
    for mention in mentions:
        statuses[mention.observation].add(mention.status)
        if mention.observation == "Edema" and mention.status != "negative" and HEART_FAILURE.search(mention.text.lower()):
            statuses["Cardiomegaly"].add("uncertain")
    values: dict[str, LabelValue] = {}
    for observation, found in statuses.items():
        if observation == "No Finding":
            continue
        values[observation] = next((_STATUS_VALUE[s] for s in ("positive", "uncertain", "negative") if s in found), None)
    blocking = any(
        value in (1, -1) for observation, value in values.items() if observation not in _NOT_BLOCKING
    ) or bool(statuses["No Finding"] & {"positive", "uncertain"})
    values["No Finding"] = None if blocking else 1
    return {observation: values[observation] for observation in CHEXPERT_OBSERVATIONS}


@lru_cache(maxsize=1)
def default_labeler() -> ChexpertLite:
    """The labeler with the shipped rules, built once per process."""
    return ChexpertLite()


def label_report(text: str) -> ReportLabels:
    """Label one report's text (findings and impression together, as CheXpert does by default)."""
    return default_labeler().label(text)


def label_reports(texts: Iterable[str]) -> list[ReportLabels]:
    return default_labeler().label_many(texts)
