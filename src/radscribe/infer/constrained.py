"""Template-constrained decoding: the template writes its own headers and labels, the model fills values.

SpineVLM's markdown-guided structured learning at inference time. A template's markdown
(:meth:`~radscribe.templates.Template.slots`) becomes a character grammar
(:mod:`radscribe.infer.grammar`): fixed text (title, section headers, bold field labels) is the only
thing allowed where it stands; each value slot allows only what the field's kind admits:

- ``enum``: exactly one of the allowed values;
- ``number``: digits, a sign when the range admits negatives, one decimal point when the field has
  decimals, and only prefixes that can still end inside [min, max]; then the unit;
- ``text``: one line (anything but a line break), first character not a space, at most
  ``text_tokens`` tokens;
- ``findings`` lists: the ``empty`` word, or 1..``max_items`` items; an item header may carry
  grounding in the model's codec (for the ``radscribe`` codec: ``<box>phrase<loc_a>..<loc_d></box>``
  elements, whose location tokens the grammar admits as ``<loc_0>``..``<loc_255>``).

Non-required fields may also stay blank. The grammar is enforced token by token through a
transformers ``LogitsProcessor`` inside the model's own ``generate`` (KV cache on): a token is
allowed when its characters keep the grammar alive *and* the document can still be finished within
the remaining ``max_new_tokens`` (every state knows its distance to the end in characters, and every
single byte is a token, so the budget check can never strand a row). The output therefore always
parses and validates against its template. Greedy decoding and sampling are supported; beam search
is not (rows are tracked by position).

Token texts come from the model's tokenizer; tokens that are not valid UTF-8 on their own (pieces of
multi-byte characters) are never allowed, so free text is limited to characters that tokenize
whole, which covers every shipped template and English report text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radscribe.grounding.location_tokens import BINS, BOX_END, BOX_START
from radscribe.infer.grammar import Fragment, Grammar, NumberRule, State
from radscribe.templates import Field, Template, load_template

LOC_PREFIX = "<loc_"


@dataclass(frozen=True)
class ConstraintLimits:
    """How much room the grammar gives the model (bounds keep every output finite and parseable)."""

    text_tokens: int = 48          # per one-line text value
    max_items: int = 4             # per findings list
    ground_items: bool = True      # allow grounding after a findings item header
    max_elements: int = 2          # grounding elements per item
    max_boxes: int = 2             # boxes per grounding element
    phrase_tokens: int = 12        # phrase text inside a grounding element


# ----------------------------------------------------------------------------------------------- grammars


def template_grammar(template: Template | str, codec_name: str = "radscribe", limits: ConstraintLimits | None = None) -> Grammar:
    """The grammar of ``template``'s markdown as :func:`~radscribe.templates.render` writes it."""
    spec = load_template(template)
    limits = limits or ConstraintLimits()
    grammar = Grammar()
    parts: list[Fragment] = []
    for slot in spec.slots():
        parts.append(grammar.literal(slot.prefix))
        if slot.field is not None:
            parts.append(_field_value(grammar, spec, slot.field_id, slot.field, codec_name, limits))
    grammar.finish(grammar.seq(*parts))
    return grammar


def grounding_grammar(phrase: str, codec_name: str = "radscribe", max_boxes: int = 24) -> Grammar:
    """``<box>phrase`` (forced) then 1..``max_boxes`` boxes of location tokens, then ``</box>``."""
    _require_radscribe_codec(codec_name, "phrase grounding")
    grammar = Grammar()
    grammar.finish(grammar.seq(grammar.literal(BOX_START + phrase), _boxes(grammar, max_boxes), grammar.literal(BOX_END)))
    return grammar


def _require_radscribe_codec(codec_name: str, what: str) -> None:
    if codec_name != "radscribe":
        raise ValueError(f"constrained {what} is implemented for the 'radscribe' box codec, not '{codec_name}'")


def _field_value(grammar: Grammar, spec: Template, field_id: str, item: Field, codec: str, limits: ConstraintLimits) -> Fragment:
    if item.kind == "findings":
        value = _findings(grammar, spec, field_id, item, codec, limits)
    else:
        value = grammar.seq(grammar.literal(" "), _scalar(grammar, field_id, item, limits))
    return value if item.required else grammar.optional(value)


def _scalar(grammar: Grammar, field_id: str, item: Field, limits: ConstraintLimits) -> Fragment:
    if item.kind == "enum":
        return grammar.alt(*(grammar.literal(value) for value in item.values))
    if item.kind == "number":
        rule = NumberRule(item.minimum, item.maximum, 0 if item.integer else item.decimals)
        number = grammar.number(rule)
        return grammar.seq(number, grammar.literal(f" {item.unit}")) if item.unit else number
    if item.kind == "text":
        region = grammar.region(field_id, limits.text_tokens)
        return grammar.run(_text_start, _text_char, region)
    raise ValueError(f"field '{field_id}': no grammar for kind '{item.kind}'")


def _findings(grammar: Grammar, spec: Template, field_id: str, item: Field, codec: str, limits: ConstraintLimits) -> Fragment:
    def one(index: int) -> Fragment:
        slots = spec.item_slots(field_id, index)
        first = slots[0].prefix
        header, first_sub = first[: first.index("\n", 1)], first[first.index("\n", 1) :]
        parts = [grammar.literal(header)]
        if limits.ground_items and codec == "radscribe":
            parts.append(grammar.optional(_grounding(grammar, f"{field_id}[{index}]", limits)))
        for position, slot in enumerate(slots):
            parts.append(grammar.literal(first_sub if position == 0 else slot.prefix))
            parts.append(_field_value(grammar, spec, slot.field_id, slot.field, codec, limits))
        return grammar.seq(*parts)

    # Items 1..max_items: item 1, then optionally item 2 (then optionally item 3, ...).
    tail = grammar.empty()
    for index in range(limits.max_items - 1, 0, -1):
        tail = grammar.optional(grammar.seq(one(index), tail))
    items = grammar.seq(one(0), tail)
    return grammar.alt(grammar.literal(f" {item.empty}"), items)


def _grounding(grammar: Grammar, where: str, limits: ConstraintLimits) -> Fragment:
    """`` <box>phrase<loc..>x4k</box>`` repeated 1..max_elements times (the radscribe codec's format)."""
    def element(number: int) -> Fragment:
        region = grammar.region(f"{where} grounding {number}", limits.phrase_tokens)
        phrase = grammar.optional(grammar.run(_phrase_char, _phrase_char, region))
        return grammar.seq(grammar.literal(BOX_START), phrase, _boxes(grammar, limits.max_boxes), grammar.literal(BOX_END))

    tail = grammar.empty()
    for number in range(limits.max_elements, 1, -1):
        tail = grammar.optional(grammar.seq(element(number), tail))
    return grammar.seq(grammar.literal(" "), element(1), tail)


def _boxes(grammar: Grammar, max_boxes: int) -> Fragment:
    def box() -> Fragment:
        rule = NumberRule(0, BINS - 1, 0)
        return grammar.seq(*(grammar.seq(grammar.literal(LOC_PREFIX), grammar.number(rule), grammar.literal(">")) for _ in range(4)))

    tail = grammar.empty()
    for _ in range(max_boxes - 1):
        tail = grammar.optional(grammar.seq(box(), tail))
    return grammar.seq(box(), tail)


def _text_start(ch: str) -> bool:
    return ch not in "\n\r" and not ch.isspace()


def _text_char(ch: str) -> bool:
    return ch not in "\n\r"


def _phrase_char(ch: str) -> bool:
    return ch not in "<>\n\r"


# ----------------------------------------------------------------------------------------------- tokens


class Vocabulary:
    """Every token's text, in a character trie, plus the end-of-sequence ids."""

    def __init__(self, texts: Sequence[str | None], eos_ids: Sequence[int]):
        self.size = len(texts)
        self.eos_ids = list(eos_ids)
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
        return cls(token_texts(tokenizer), model.eos_token_ids)


def token_texts(tokenizer: Any) -> list[str | None]:
    """Each token id's decoded text; control tokens (special added tokens) map to None."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        special = {token_id for token_id, added in tokenizer.get_added_tokens_decoder().items() if added.special}
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        return [None if i in special else tokenizer.decode([i], skip_special_tokens=False) for i in range(size)]
    special = set(getattr(tokenizer, "all_special_ids", []))
    return [None if i in special else tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]


class TokenConstraint:
    """A grammar lifted to tokens: which token ids may follow a state, and where each leads.

    Transitions are cached per grammar state, so a constraint built once (per template and
    tokenizer) gets faster with every report it constrains.
    """

    def __init__(self, grammar: Grammar, vocabulary: Vocabulary):
        self.grammar = grammar
        self.vocabulary = vocabulary
        self._transitions: dict[State, dict[int, State]] = {}
        self._distance: dict[State, float] = {}
        self._tables: dict[State, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def transitions(self, state: State) -> dict[int, State]:
        cached = self._transitions.get(state)
        if cached is None:
            cached = {}
            self._walk(self.vocabulary.trie, state, cached)
            self._transitions[state] = cached
        return cached

    def _walk(self, node: dict[str, Any], state: State, found: dict[int, State]) -> None:
        for ch, child in node.items():
            if ch == "":
                continue
            after = self.grammar.step(state, ch)
            if not after:
                continue
            for token_id in child.get("", ()):
                found[token_id] = after
            self._walk(child, after, found)

    def distance(self, state: State) -> float:
        cached = self._distance.get(state)
        if cached is None:
            cached = self._distance[state] = self.grammar.distance(state)
        return cached

    def _table(self, state: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token ids, distance after each, free-text region after each or -1), as arrays."""
        cached = self._tables.get(state)
        if cached is None:
            moves = self.transitions(state)
            ids = np.fromiter(moves, dtype=np.int64, count=len(moves))
            distance = np.array([self.distance(after) for after in moves.values()], dtype=np.float64)
            regions = [self.grammar.region_of(after) for after in moves.values()]
            region = np.array([-1 if r is None else r for r in regions], dtype=np.int64)
            cached = self._tables[state] = (ids, distance, region)
        return cached

    def allowed(self, state: State, remaining: int, capped_region: int | None = None) -> np.ndarray:
        """Tokens that keep the document finishable in ``remaining`` tokens (this one included).

        ``capped_region``: a free-text region that has used its token cap; tokens staying in it are refused.
        """
        ids, distance, region = self._table(state)
        keep = distance <= remaining - 1
        if capped_region is not None:
            keep &= region != capped_region
        allowed = ids[keep]
        if self.grammar.is_final(state):
            allowed = np.concatenate([allowed, np.asarray(self.vocabulary.eos_ids, dtype=np.int64)])
        return allowed


class _Row:
    """One sequence's progress through the grammar."""

    def __init__(self, start: State):
        self.state = start
        self.consumed = 0
        self.done = False
        self.region: int | None = None
        self.region_tokens = 0


class ConstrainedLogitsProcessor:
    """A transformers logits processor: -inf on every token the grammar does not allow.

    Create one per ``generate`` call (it remembers the prompt width from its first call).
    """

    def __init__(self, constraint: TokenConstraint, max_new_tokens: int):
        start_distance = constraint.distance(constraint.grammar.start)
        if start_distance > max_new_tokens:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} is too small for this template: the shortest valid output "
                f"needs {int(start_distance)} characters (tokens, at worst)"
            )
        self.constraint = constraint
        self.max_new_tokens = max_new_tokens
        self.prompt_width: int | None = None
        self.rows: list[_Row] = []

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = int(input_ids.shape[1])
            self.rows = [_Row(self.constraint.grammar.start) for _ in range(input_ids.shape[0])]
        mask = torch.full_like(scores, -math.inf)
        for index, row in enumerate(self.rows):
            generated = input_ids[index, self.prompt_width :].tolist()
            self._advance(row, generated)
            if row.done:
                mask[index] = 0  # finished rows are padded by generate; leave them alone
                continue
            remaining = self.max_new_tokens - len(generated)
            cap = self.constraint.grammar.region_caps.get(row.region) if row.region is not None else None
            capped = row.region if cap is not None and row.region_tokens >= cap else None
            allowed = self.constraint.allowed(row.state, remaining, capped)
            mask[index, torch.from_numpy(allowed)] = 0
        return scores + mask

    def _advance(self, row: _Row, generated: list[int]) -> None:
        grammar = self.constraint.grammar
        for token_id in generated[row.consumed :]:
            row.consumed += 1
            if row.done:
                continue
            if token_id in self.constraint.vocabulary.eos_ids:
                row.done = True
                continue
            after = self.constraint.transitions(row.state).get(token_id)
            if after is None:  # a token we did not allow (another processor changed scores): stop tracking
                row.done = True
                continue
            row.state = after
            region = grammar.region_of(after)
            if region is not None and region == row.region:
                row.region_tokens += 1
            else:
                row.region, row.region_tokens = region, 1 if region is not None else 0


def constrained_generate_kwargs(constraint: TokenConstraint, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` that enforce ``constraint``."""
    from transformers import LogitsProcessorList

    return {"logits_processor": LogitsProcessorList([ConstrainedLogitsProcessor(constraint, max_new_tokens)]), "max_new_tokens": max_new_tokens}
