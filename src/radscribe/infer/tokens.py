"""The model's tokens as a constrained decoder needs them: their texts, and canonical ids for fixed text.

Training encodes each target as one whole document (``tokenizer.encode(target)``), so a model has only
ever seen *that* split of the template's fixed text into tokens. A decoder that writes fixed text
itself must therefore use the same ids, in context. :class:`SpanTokenizer` gives them:

- :meth:`SpanTokenizer.encode` — the tokenizer's own ids for a text;
- :meth:`SpanTokenizer.stable_length` — how much of a text's encoding is final whatever follows.
  BPE merges never cross a pre-token boundary (the tokenizer splits text into pre-tokens, and added
  tokens such as ``<loc_12>`` out of it, before merging), so every piece but the last is final. The
  last piece is final too when each character that may follow starts a new piece; otherwise (``" "``
  before a value: training wrote ``" AP"``, one piece) it is held back and the model writes it
  together with the value.

Byte-level BPE (radscribe-tiny, Qwen) encodes pre-tokens independently, so a text can be encoded
from any pre-token boundary on (:attr:`SpanTokenizer.local`); other tokenizers are always encoded
from the start of the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

PROBE_CACHE = 4096


class SpanTokenizer:
    """Canonical ids for spans of a document (see the module docstring)."""

    def __init__(self, tokenizer: Any):
        from tokenizers import Tokenizer

        self._tokenizer = tokenizer
        self._backend: Tokenizer | None = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        added = _added_contents(tokenizer, self._backend)
        self.added_prefixes = frozenset(text[:k] for text in added for k in range(1, len(text)))
        self._longest_added = max((len(text) for text in added), default=0)
        self._added = re.compile("|".join(re.escape(text) for text in sorted(added, key=len, reverse=True))) if added else None
        self._pre = self._backend.pre_tokenizer if self._backend is not None else None
        self.local = self._backend is not None and _is_byte_level(self._backend)
        self._boundary = lru_cache(maxsize=PROBE_CACHE)(self._boundary_uncached)

    def encode(self, text: str) -> list[int]:
        if self._backend is not None and self._backend is self._tokenizer:
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def stable_length(self, text: str, next_chars: frozenset[str] | None, start: int = 0) -> int:
        """Characters of ``text`` whose tokens cannot change, whatever of ``next_chars`` comes next.

        ``next_chars``: the characters that may follow (None: any; empty: the document ends).
        ``start``: a known piece boundary in ``text`` (where to begin looking).
        """
        if next_chars is not None and not next_chars:
            return len(text)
        added_start = self._added_prefix_start(text)
        piece = self.last_piece_start(text, start)
        if added_start is None:
            if piece == len(text):
                return len(text)  # ends with a whole added token
            if next_chars is not None and all(self._boundary(text[piece:], ch) for ch in next_chars):
                return len(text)
            return piece
        return min(piece, added_start)

    def last_piece_start(self, text: str, start: int = 0) -> int:
        """Where the last pre-token of ``text`` begins (``len(text)`` when it ends with an added token)."""
        segment = start
        if self._added is not None:
            for match in self._added.finditer(text, start):
                segment = match.end()
        if segment >= len(text):
            return len(text)
        if self._pre is None:
            return _last_word_start(text, segment)
        pieces = self._pre.pre_tokenize_str(text[segment:])
        return segment + pieces[-1][1][0] if pieces else len(text)

    def _added_prefix_start(self, text: str) -> int | None:
        """Start of the longest end of ``text`` that could still grow into an added token (``<loc_``)."""
        for length in range(min(self._longest_added - 1, len(text)), 0, -1):
            if text[-length:] in self.added_prefixes:
                return len(text) - length
        return None

    def _boundary_uncached(self, piece: str, ch: str) -> bool:
        """Whether ``piece`` stays a piece of its own when ``ch`` follows it (unknown without a pre-tokenizer: no)."""
        if self._pre is None:
            return False
        pieces = self._pre.pre_tokenize_str(piece + ch)
        return bool(pieces) and pieces[0][1][1] == len(piece)


def _added_contents(tokenizer: Any, backend: Any) -> list[str]:
    if backend is not None:
        return [token.content for token in backend.get_added_tokens_decoder().values()]
    return [str(token) for token in getattr(tokenizer, "added_tokens_encoder", {})]


def _is_byte_level(backend: Any) -> bool:
    """Byte-level BPE: pre-tokenized by regex, no normaliser that adds a prefix to the document."""
    spec = json.loads(backend.to_str())
    pre = json.dumps(spec.get("pre_tokenizer"))
    normalizer = json.dumps(spec.get("normalizer"))
    return '"ByteLevel"' in pre and "Prepend" not in normalizer


def _last_word_start(text: str, start: int) -> int:
    """Without a pre-tokenizer: the last word with the whitespace before it (SentencePiece's pieces)."""
    end = len(text)
    while end > start and not text[end - 1].isspace():
        end -= 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


class Vocabulary:
    """Every token's text, in a character trie, plus the end-of-sequence ids and canonical spans.

    ``spans`` (from the model's tokenizer) lets a decoder write fixed text with the tokenizer's own
    ids; without it, fixed text is left to the model token by token.
    """

    def __init__(self, texts: Sequence[str | None], eos_ids: Sequence[int], spans: SpanTokenizer | None = None):
        self.size = len(texts)
        self.texts = list(texts)
        self.eos_ids = list(eos_ids)
        self.spans = spans
        self.added_prefixes = spans.added_prefixes if spans is not None else frozenset()
        self.trie: dict[str, Any] = {}
        for token_id, text in enumerate(texts):
            if not text or "\ufffd" in text or token_id in self.eos_ids:
                continue
            node = self.trie
            for ch in text:
                node = node.setdefault(ch, {})
            node.setdefault("", []).append(token_id)

    @classmethod
    def from_model(cls, model: Any) -> Vocabulary:
        """From a RadscribeVLM: its ``tokenizer`` (tokenizers.Tokenizer or a transformers tokenizer)."""
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            tokenizer = getattr(getattr(model, "processor", None), "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"model '{getattr(model, 'name', model)}' exposes no tokenizer for constrained decoding")
        return cls(token_texts(tokenizer), model.eos_token_ids, SpanTokenizer(tokenizer))

    def text_of(self, ids: Sequence[int]) -> str:
        return "".join(self.texts[i] or "" for i in ids)


def token_texts(tokenizer: Any) -> list[str | None]:
    """Each token id's decoded text; control tokens (special added tokens) map to None."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        special = {token_id for token_id, added in tokenizer.get_added_tokens_decoder().items() if added.special}
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        return [None if i in special else tokenizer.decode([i], skip_special_tokens=False) for i in range(size)]
    special = set(getattr(tokenizer, "all_special_ids", []))
    return [None if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
