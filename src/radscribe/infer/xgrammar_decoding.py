"""Grammar-constrained ``generate`` for large vocabularies: xgrammar's token masks (the ``grammar`` extra).

Today's constrained path (:class:`~radscribe.infer.constrained.ConstrainedLogitsProcessor`) lifts the
character grammar to tokens in Python, walking the whole vocabulary trie the first time it meets each
grammar state: with Qwen's 152k or Gemma's 262k tokens, a free-text field costs seconds before its
first token. xgrammar compiles the same grammar (exported by :func:`~radscribe.infer.grammar_export.to_ebnf`)
against the tokenizer once, pre-computing which tokens each grammar position admits, and fills a
vocabulary bitmask per step in C++.

:func:`grammar_generate_kwargs` picks: xgrammar when it is installed (``pip install 'radscribe[grammar]'``),
today's path otherwise. What the two share: the output is in the template's language (both mask by
the same grammar). What only today's path adds: the template's fixed text written with the
tokenizer's canonical ids, per-field token caps, and the guarantee that the document can still be
finished within ``max_new_tokens``. Under xgrammar the model chooses every token inside the grammar
and may run out of tokens before the end of a report: give ``max_new_tokens`` head-room (the
reporter's parse step reports a cut report as unparseable, never as a valid one).

The same EBNF is what a vLLM deployment uses for guided decoding (see :mod:`radscribe.infer.grammar_export`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from radscribe.infer.constraint import TokenConstraint
from radscribe.infer.hf_generate import constrained_generate_kwargs
from radscribe.infer.grammar import Grammar
from radscribe.infer.grammar_export import to_ebnf
from radscribe.infer.tokens import Vocabulary


def xgrammar_available() -> bool:
    return importlib.util.find_spec("xgrammar") is not None


class XGrammarCompiler:
    """xgrammar's tokenizer info and compiler for one model, with compiled grammars cached by their EBNF."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]):
        import xgrammar

        self.vocab_size = vocab_size
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self._compiler = xgrammar.GrammarCompiler(info)
        self._compiled: dict[str, Any] = {}

    @classmethod
    def for_model(cls, model: Any) -> XGrammarCompiler:
        """From a RadscribeVLM with a transformers tokenizer (the Hugging Face backbones)."""
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
            raise ValueError(f"model '{getattr(model, 'name', model)}' has no transformers tokenizer for xgrammar")
        vocab_size = int(model.base_model().get_output_embeddings().weight.shape[0])
        return cls(tokenizer, vocab_size, list(model.eos_token_ids))

    def compile(self, grammar: Grammar) -> Any:
        ebnf = to_ebnf(grammar)
        compiled = self._compiled.get(ebnf)
        if compiled is None:
            compiled = self._compiled[ebnf] = self._compiler.compile_grammar(ebnf)
        return compiled

    def generate_kwargs(self, grammar: Grammar, max_new_tokens: int) -> dict[str, Any]:
        """``model.generate`` keyword arguments masking every step by ``grammar`` (one processor per call)."""
        from transformers import LogitsProcessorList
        from xgrammar.contrib.hf import LogitsProcessor

        return {"logits_processor": LogitsProcessorList([LogitsProcessor(self.compile(grammar))]), "max_new_tokens": max_new_tokens}


def grammar_generate_kwargs(model: Any, grammar: Grammar, max_new_tokens: int, compiler: XGrammarCompiler | None = None) -> dict[str, Any]:
    """Constrained ``generate`` kwargs for a Hugging Face backbone: xgrammar when installed, else today's path.

    Pass a ``compiler`` (``XGrammarCompiler.for_model(model)``) to reuse its compiled grammars across calls.
    """
    if compiler is None and xgrammar_available() and hasattr(getattr(model, "tokenizer", None), "get_vocab"):
        compiler = XGrammarCompiler.for_model(model)
    if compiler is not None:
        return compiler.generate_kwargs(grammar, max_new_tokens)
    return constrained_generate_kwargs(TokenConstraint(grammar, Vocabulary.from_model(model)), max_new_tokens)
