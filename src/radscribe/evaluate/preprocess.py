"""Named text-preprocessing protocols for the NLG metrics: how report text becomes tokens.

The same model output scores differently under different cleanings (R2Gen keeps sentence-final ``.``
tokens and deletes decimal points; the COCO PTB tokenizer drops punctuation but keeps ``-lrb-``), so
every NLG number carries the name of the protocol that produced its tokens:

- ``r2gen``: the report cleaning of the R2Gen code base (Chen et al., EMNLP 2020), pure Python, then
  whitespace tokenisation. Optional R2Gen vocabulary (rare words become ``<unk>``) and reference
  truncation reproduce the published pipeline exactly.
- ``coco-ptb``: the Stanford PTBTokenizer jar shipped with pycocoevalcap (the ``[coco]`` extra; needs Java),
  lower-cased, with the COCO punctuation list removed.
- ``whitespace``: text that is already tokenised; split on whitespace, nothing else.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

from radscribe.evaluate.base import MetricUnavailable

TokenizedPairs = tuple[list[list[list[str]]], list[list[str]]]

R2GEN_UNK = "<unk>"

# R2Gen's per-sentence punctuation class. ``:-\[`` is a character range (0x3A-0x5B: ``:;<=>?@``, A-Z and
# ``[``); upper case is already gone by then, so in effect it also deletes ``<=>?@``. Digits survive, so
# ``1.2 cm`` becomes ``12 cm``.
_R2GEN_SENTENCE_PUNCTUATION = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")
_R2GEN_SENTENCE_DELETIONS = ('"', "/", "\\", "'")
# List numbering the R2Gen cleaner rewrites, in its order (each replacement runs over the whole text).
_R2GEN_NUMBERING = (
    ("1. ", ""),
    (". 2. ", ". "), (". 3. ", ". "), (". 4. ", ". "), (". 5. ", ". "),
    (" 2. ", ". "), (" 3. ", ". "), (" 4. ", ". "), (" 5. ", ". "),
)  # fmt: skip

R2GenVariant = Literal["iu_xray", "mimic_cxr"]


def _replace_repeatedly(text: str, old: str, new: str, times: int) -> str:
    # R2Gen applies each collapse a fixed number of times (not to a fixed point); keep that exactly.
    for _ in range(times):
        text = text.replace(old, new)
    return text


def clean_report_r2gen(report: str, variant: R2GenVariant = "mimic_cxr") -> str:
    """R2Gen's report cleaning: lower case, list numbering removed, punctuation deleted, `` . `` between sentences.

    ``variant="mimic_cxr"`` also turns newlines into spaces and collapses ``__`` and double spaces first;
    ``"iu_xray"`` is the shorter IU X-ray cleaner. The result always ends with `` .``, e.g.
    ``"The heart is normal. No effusion."`` -> ``"the heart is normal . no effusion ."``.
    """
    if variant == "mimic_cxr":
        text = report.replace("\n", " ")
        text = _replace_repeatedly(text, "__", "_", 7)
        text = _replace_repeatedly(text, "  ", " ", 6)
        text = _replace_repeatedly(text, "..", ".", 8)
    elif variant == "iu_xray":
        text = _replace_repeatedly(report, "..", ".", 3)
    else:
        raise ValueError(f"unknown R2Gen cleaning variant '{variant}'; expected 'mimic_cxr' or 'iu_xray'")
    for old, new in _R2GEN_NUMBERING:
        text = text.replace(old, new)
    sentences = []
    for sentence in text.strip().lower().split(". "):
        for character in _R2GEN_SENTENCE_DELETIONS:
            sentence = sentence.replace(character, "")
        sentences.append(_R2GEN_SENTENCE_PUNCTUATION.sub("", sentence.strip().lower()))
    # Empty sentences are kept on purpose (R2Gen's emptiness test never fires), giving a lone "." token.
    return " . ".join(sentences) + " ."


def r2gen_vocabulary(training_reports: Iterable[str], threshold: int, variant: R2GenVariant = "mimic_cxr") -> set[str]:
    """The R2Gen vocabulary: cleaned training-report tokens seen at least ``threshold`` times (IU X-ray: 3, MIMIC-CXR: 10)."""
    counts = Counter(token for report in training_reports for token in clean_report_r2gen(report, variant).split())
    return {token for token, count in counts.items() if count >= threshold}


class TextProtocol(ABC):
    """Turns reference and hypothesis texts into whitespace-free tokens; ``name`` is the tag every Score carries."""

    name: str

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text, in order."""

    def settings(self) -> tuple[object, ...]:
        """Everything that decides the tokens: protocols with equal settings tokenise every text identically."""
        return (type(self),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextProtocol) and self.settings() == other.settings()

    def __hash__(self) -> int:
        return hash(self.settings())

    def prepare(self, refs: Sequence[Sequence[str]], hyps: Sequence[str]) -> TokenizedPairs:
        """Tokenise references (several per sample allowed) and hypotheses in one batch.

        Each distinct text is tokenised once (references recur across samples, hypotheses copy them), so
        identical texts share one token list.
        """
        texts = [*(ref for sample_refs in refs for ref in sample_refs), *hyps]
        distinct = list(dict.fromkeys(texts))
        tokens_of = dict(zip(distinct, self.tokenize(distinct)))
        tokens = [tokens_of[text] for text in texts]
        ref_tokens, position = [], 0
        for sample_refs in refs:
            ref_tokens.append(tokens[position : position + len(sample_refs)])
            position += len(sample_refs)
        return ref_tokens, tokens[position:]


class WhitespaceProtocol(TextProtocol):
    """Already tokenised text: split on whitespace only."""

    name = "whitespace"

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [text.split() for text in texts]


class R2GenProtocol(TextProtocol):
    """R2Gen cleaning + whitespace tokens, optionally with R2Gen's ``<unk>`` vocabulary and reference truncation.

    ``max_reference_tokens`` mirrors R2Gen's ``max_seq_length`` cut of the ground truth (BOS included there,
    so pass ``max_seq_length - 1``); hypotheses are never cut, their length is the model's business.
    """

    def __init__(
        self,
        variant: R2GenVariant = "mimic_cxr",
        vocabulary: Collection[str] | None = None,
        max_reference_tokens: int | None = None,
    ) -> None:
        if variant not in ("mimic_cxr", "iu_xray"):
            raise ValueError(f"unknown R2Gen cleaning variant '{variant}'; expected 'mimic_cxr' or 'iu_xray'")
        if max_reference_tokens is not None and max_reference_tokens < 1:
            raise ValueError(f"max_reference_tokens must be >= 1, got {max_reference_tokens}")
        self.variant = variant
        self.vocabulary = frozenset(vocabulary) if vocabulary is not None else None
        self.max_reference_tokens = max_reference_tokens
        parts = ["r2gen" if variant == "mimic_cxr" else "r2gen-iu"]
        if self.vocabulary is not None:
            parts.append(f"unk{len(self.vocabulary)}")
        if max_reference_tokens is not None:
            parts.append(f"max{max_reference_tokens}")
        self.name = "+".join(parts)

    def settings(self) -> tuple[object, ...]:
        return (type(self), self.variant, self.vocabulary, self.max_reference_tokens)

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        tokenized = [clean_report_r2gen(text, self.variant).split() for text in texts]
        if self.vocabulary is None:
            return tokenized
        vocabulary = self.vocabulary
        return [[token if token in vocabulary else R2GEN_UNK for token in tokens] for tokens in tokenized]

    def prepare(self, refs: Sequence[Sequence[str]], hyps: Sequence[str]) -> TokenizedPairs:
        ref_tokens, hyp_tokens = super().prepare(refs, hyps)
        if self.max_reference_tokens is not None:
            cut = self.max_reference_tokens
            ref_tokens = [[tokens[:cut] for tokens in sample_refs] for sample_refs in ref_tokens]
        return ref_tokens, hyp_tokens


# Characters Java (and str.splitlines) treat as line ends: one inside a report would shift every later
# report's tokens onto the wrong sample in the line-preserving jar output.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def coco_unavailable_reason(component: str) -> str | None:
    """Why a pycocoevalcap/Java component cannot run here, or ``None`` when it can."""
    missing = []
    if importlib.util.find_spec("pycocoevalcap") is None:
        missing.append("the pycocoevalcap package (pip install 'radscribe[coco]')")
    if shutil.which("java") is None:
        missing.append("a Java runtime on PATH (e.g. apt-get install default-jre-headless)")
    if not missing:
        return None
    return f"{component} needs {' and '.join(missing)}; radscribe never substitutes another implementation"


class CocoPTBProtocol(TextProtocol):
    """pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 jar): lower case, COCO punctuation removed.

    Keeps its quirks on purpose (parentheses survive as ``-lrb-``/``-rrb-``, decimals and hyphenated
    words stay whole), since published COCO-style numbers include them. One JVM start per call.
    """

    name = "coco-ptb"

    def __init__(self) -> None:
        reason = coco_unavailable_reason("the coco-ptb protocol")
        if reason is not None:
            raise MetricUnavailable(reason)

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        flattened = [_LINE_BREAKS.sub(" ", text) for text in texts]
        # Blank lines are fragile in the line-aligned jar output, and their tokens are known: none.
        nonblank = {index: [{"caption": text}] for index, text in enumerate(flattened) if text.strip()}
        tokenized = PTBTokenizer().tokenize(nonblank) if nonblank else {}
        missing = sorted(set(nonblank) - set(tokenized))
        if missing:
            raise RuntimeError(f"PTBTokenizer returned no line for {len(missing)} text(s), first index {missing[0]}")
        return [tokenized[index][0].split() if index in tokenized else [] for index in range(len(texts))]


PROTOCOLS: dict[str, type[TextProtocol]] = {
    "r2gen": R2GenProtocol,
    "coco-ptb": CocoPTBProtocol,
    "whitespace": WhitespaceProtocol,
}


def get_protocol(protocol: str | TextProtocol, **options: object) -> TextProtocol:
    """A protocol by name (``r2gen``, ``coco-ptb``, ``whitespace``; ``r2gen`` takes its options) or as given."""
    if isinstance(protocol, TextProtocol):
        if options:
            raise ValueError("protocol options apply only when the protocol is given by name")
        return protocol
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown text protocol '{protocol}'; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[protocol](**options)  # type: ignore[arg-type]
