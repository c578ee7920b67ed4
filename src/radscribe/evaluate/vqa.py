"""VQA scoring (VQA-RAD, SLAKE): a strict mode, and ``llava-med-compat`` for comparison with papers.

Strict mode (protocol ``strict``):
  * normalisation: lowercase; punctuation becomes a space except a decimal point between digits;
    articles (a, an, the) dropped; spaces collapsed;
  * closed questions: ``closed-accuracy`` is exact match after normalisation, with a leading yes/no
    canonicalised ("Yes, there is an effusion" -> "yes"), so every closed question is in the
    denominator;
  * open questions: ``open-recall`` (share of reference tokens found, multiset), ``open-f1`` (SQuAD
    token F1, multiset) and ``open-exact`` (normalised strings equal).

``llava-med-compat`` reproduces microsoft/LLaVA-Med ``llava/eval/run_eval.py`` with its quirks:
  * its ``normalize_word``: punctuation stripped (or spaced), periods not followed by a digit removed
    (at most 32 of them, because ``re.UNICODE`` is passed as the count), number words to digits,
    articles dropped; the VQA contraction table is NOT applied here (it only changes answers that
    contain English contractions);
  * closed: ``hit`` only when the prediction contains the substring "yes" or "no" (so "nodule" and
    "normal" qualify) AND contains the reference as a substring; a prediction containing yes/no that
    misses the reference is dropped from the denominator; one without yes/no scores 0;
  * open: ``recall`` = tp / (tp + fn) with tp counted on the prediction's word counts, ``f1`` and
    ``precision`` with 0 whenever tp = 0, and its "exact match" = distinct reference words present /
    prediction word count. Its "open accuracy" (needs a candidate-answer file) and NLTK BLEU are not
    reproduced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radscribe.evaluate.base import Score, register_metric
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic
from radscribe.types import QA

MODES: tuple[str, ...] = ("strict", "llava-med-compat")
ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = re.compile(r"[^\w\s.]|_")
_NON_DECIMAL_POINT = re.compile(r"(?<!\d)\.|\.(?!\d)")

# LLaVA-Med's normalize_word facts: the characters it treats as punctuation, and its number words.
_LLAVA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_LLAVA_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_LLAVA_PERIOD = re.compile(r"\.(?!\d)")
_LLAVA_THOUSANDS = re.compile(r"\d,\d")
_LLAVA_MAX_PERIODS = 32


def normalise_answer(text: str) -> str:
    """Strict-mode normalisation (module docstring)."""
    text = _NON_DECIMAL_POINT.sub(" ", _PUNCT.sub(" ", text.lower()))
    return " ".join(token for token in text.split() if token not in ARTICLES)


def canonical_closed(text: str) -> str:
    """Normalised answer; a leading yes/no stands for the whole answer."""
    normalised = normalise_answer(text)
    first = normalised.split(" ", 1)[0]
    return first if first in ("yes", "no") else normalised


def token_scores(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) over normalised token multisets; empty sides score 0."""
    pred, ref = normalise_answer(prediction).split(), normalise_answer(reference).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)


def llava_normalize(text: str) -> str:
    """LLaVA-Med's ``normalize_word`` behaviour (module docstring), re-implemented."""
    out = text
    for p in _LLAVA_PUNCT:
        strip = (p + " " in text or " " + p in text) or _LLAVA_THOUSANDS.search(text) is not None
        out = out.replace(p, "" if strip else " ")
    out = _LLAVA_PERIOD.sub("", out, count=_LLAVA_MAX_PERIODS)
    words = [_LLAVA_NUMBERS.get(word, word) for word in out.lower().split()]
    return " ".join(word for word in words if word not in ARTICLES).replace(",", "")


def llava_open_scores(prediction: str, reference: str) -> dict[str, float]:
    pred = Counter(llava_normalize(llava_normalize(prediction.lower())).split())
    ref = Counter(llava_normalize(llava_normalize(reference.lower())).split())
    tp = sum(count for word, count in pred.items() if word in ref)
    fp = sum(count for word, count in pred.items() if word not in ref)
    fn = sum(count for word, count in ref.items() if word not in pred)
    exact = sum(1 for word in ref if word in pred) / sum(pred.values()) if pred else 0.0
    if not pred or not ref or tp == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "exact": exact}
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall), "exact": exact}


def llava_closed_hit(prediction: str, reference: str) -> float | None:
    """1 or 0, or ``None`` when LLaVA-Med drops the question from the denominator."""
    pred, ref = llava_normalize(prediction.lower()), llava_normalize(reference.lower())
    if "yes" in pred or "no" in pred:
        return 1.0 if ref in pred else None
    return 0.0


@dataclass
class SampleVQA:
    answer_type: str
    values: dict[str, float | None]


def score_answer(reference: QA, prediction: str | None, mode: str = "strict") -> SampleVQA:
    """Score one answer; a missing prediction is the empty answer."""
    prediction = prediction or ""
    if mode == "strict":
        if reference.answer_type == "closed":
            return SampleVQA("closed", {"closed-accuracy": float(canonical_closed(prediction) == canonical_closed(reference.answer))})
        _, recall, f1 = token_scores(prediction, reference.answer)
        exact = float(normalise_answer(prediction) == normalise_answer(reference.answer))
        return SampleVQA("open", {"open-recall": recall, "open-f1": f1, "open-exact": exact})
    if mode == "llava-med-compat":
        if reference.answer_type == "closed":
            return SampleVQA("closed", {"closed-accuracy": llava_closed_hit(prediction, reference.answer)})
        scores = llava_open_scores(prediction, reference.answer)
        return SampleVQA("open", {f"open-{key}": value for key, value in scores.items()})
    raise ValueError(f"unknown VQA mode '{mode}'; known: {', '.join(MODES)}")


def vqa_statistics(samples: Sequence[SampleVQA], mode: str) -> dict[str, WeightedStatistic]:
    """Per score key: the mean of a metric over the questions it applies to, dropping ``None`` values
    (llava-med-compat's dropped closed answers); 0 when no question applies."""
    names = list(dict.fromkeys(name for s in samples for name in s.values))
    out: dict[str, WeightedStatistic] = {}
    for name in names:
        columns = np.array(
            [[s.values.get(name) or 0.0, float(s.values.get(name) is not None)] for s in samples], dtype=float
        )
        out[f"{name}@{mode}"] = SufficientStatistic(columns, _mean_of_present)
    return out


def _mean_of_present(sums: np.ndarray) -> np.ndarray:
    out = np.zeros(len(sums))
    np.divide(sums[:, 0], sums[:, 1], out=out, where=sums[:, 1] > 0)
    return out


@register_metric("vqa")
class VQAScorer:
    """refs: :class:`~radscribe.types.QA` items; hyps: predicted answer strings (``None`` if missing)."""

    name = "vqa"

    def __init__(self, mode: str = "strict"):
        if mode not in MODES:
            raise ValueError(f"unknown VQA mode '{mode}'; known: {', '.join(MODES)}")
        self.mode = mode

    def samples(self, refs: Sequence[QA], hyps: Sequence[str | None]) -> list[SampleVQA]:
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} questions but {len(hyps)} answers")
        return [score_answer(ref, hyp, self.mode) for ref, hyp in zip(refs, hyps)]

    def statistics(self, samples: Sequence[SampleVQA]) -> dict[str, WeightedStatistic]:
        return vqa_statistics(samples, self.mode)

    def scores_from(self, samples: Sequence[SampleVQA]) -> list[Score]:
        if not samples:
            raise ValueError("no questions to score")
        scores = []
        for key, statistic in self.statistics(samples).items():
            name = key.partition("@")[0]
            per_sample = [float("nan") if s.values.get(name) is None else float(s.values[name]) for s in samples]
            details: dict[str, Any] = {"questions": sum(name in s.values for s in samples)}
            if self.mode == "llava-med-compat" and name == "closed-accuracy":
                details["dropped"] = sum(name in s.values and s.values[name] is None for s in samples)
            scores.append(Score(name, statistic.value(), per_sample, self.mode, details))
        return scores

    def compute_score(self, refs: Sequence[QA], hyps: Sequence[str | None]) -> list[Score]:
        return self.scores_from(self.samples(refs, hyps))
