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

Non-required fields may also stay blank; the document may end without the template's final line
break (training targets are stripped).

Lifted to tokens (:class:`TokenConstraint`, :class:`RowCursor`): wherever the grammar fixes the next
text, the decoder writes it itself with the ids the tokenizer gives the whole document
(:mod:`radscribe.infer.tokens`), so the model reads the token sequence it was trained on; where there
is a choice, a token is allowed when its characters keep the grammar alive *and* the document can
still be finished within the remaining ``max_new_tokens`` (every state knows its distance to the end
in characters, and every single byte is a token). The output therefore always parses and validates
against its template. Two loops run the cursor: :func:`radscribe.infer.decoding.generate_constrained`
(our own, KV cache, fixed text fed in one pass, batched; the fast one) and
:class:`ConstrainedLogitsProcessor` inside any model's transformers ``generate``. Greedy decoding
and sampling are supported; beam search is not.

Token texts come from the model's tokenizer; tokens that are not valid UTF-8 on their own (pieces of
multi-byte characters) are never allowed, so free text is limited to characters that tokenize
whole, which covers every shipped template and English report text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radscribe.grounding.location_tokens import BINS, BOX_END, BOX_START
from radscribe.infer.grammar import Fragment, Grammar, NumberRule, State
from radscribe.infer.tokens import Vocabulary
from radscribe.templates import Field, Template, load_template

LOC_PREFIX = "<loc_"


@dataclass(frozen=True)
class ConstraintLimits:
    """How much room the grammar gives the model (bounds keep every output finite and parseable)."""

    text_tokens: int = 192         # per one-line text value (CADMA impressions run to 178 tokens)
    # Per-field caps that replace text_tokens, by field id without item indices ("alignment.curves.apex").
    field_tokens: Mapping[str, int] = field(default_factory=dict)
    max_items: int = 4             # per findings list
    ground_items: bool = True      # allow grounding after a findings item header
    max_elements: int = 2          # grounding elements per item
    max_boxes: int = 2             # boxes per grounding element
    phrase_tokens: int = 12        # phrase text inside a grounding element

    def tokens_for(self, field_id: str) -> int:
        return self.field_tokens.get(re.sub(r"\[\d+\]", "", field_id), self.text_tokens)


# ----------------------------------------------------------------------------------------------- grammars


def template_grammar(template: Template | str, codec_name: str = "radscribe", limits: ConstraintLimits | None = None) -> Grammar:
    """The grammar of ``template``'s markdown as :func:`~radscribe.templates.render` writes it."""
    spec = load_template(template)
    limits = limits or ConstraintLimits()
    grammar = Grammar()
    parts: list[Fragment] = []
    for slot in spec.slots():
        if slot.field is not None:
            parts += [grammar.literal(slot.prefix), _field_value(grammar, spec, slot.field_id, slot.field, codec_name, limits)]
        else:  # the closing text: its trailing line break is optional (training targets are stripped)
            closing = slot.prefix.rstrip()
            parts += [grammar.literal(closing), grammar.optional(grammar.literal(slot.prefix[len(closing) :]))]
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
        region = grammar.region(field_id, limits.tokens_for(field_id))
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


@dataclass(frozen=True)
class _Moves:
    """The tokens allowed at one (grammar state, pending text), and what each leads to."""

    targets: dict[int, tuple[State, str]]   # token id -> (state after, pending text after)
    ids: np.ndarray                         # the same token ids, as an array
    distance: np.ndarray                    # characters still to write after each token
    region: np.ndarray                      # free-text region each token stays in, or -1


class TokenConstraint:
    """A grammar lifted to tokens: which token ids may come next, and where each leads.

    A position is a grammar state plus *pending* text: text the grammar has fixed but the decoder
    has not written yet (see :class:`RowCursor`). A token may write part of the pending text (a
    prefix of it) or all of it and go on into the grammar. Moves are cached per position, so a
    constraint built once (per template and tokenizer) gets faster with every report it constrains.
    """

    def __init__(self, grammar: Grammar, vocabulary: Vocabulary):
        self.grammar = grammar
        self.vocabulary = vocabulary
        self._moves: dict[tuple[State, str], _Moves] = {}
        self._distance: dict[State, float] = {}

    def distance(self, state: State) -> float:
        cached = self._distance.get(state)
        if cached is None:
            cached = self._distance[state] = self.grammar.distance(state)
        return cached

    def moves(self, state: State, pending: str = "") -> _Moves:
        cached = self._moves.get((state, pending))
        if cached is None:
            cached = self._moves[(state, pending)] = self._build_moves(state, pending)
        return cached

    def _build_moves(self, state: State, pending: str) -> _Moves:
        # Tokens that write part (or all) of the pending text: the state stays, the pending text shrinks.
        prefixes: dict[int, tuple[State, str]] = {}
        node: dict[str, Any] | None = self.vocabulary.trie
        for index, ch in enumerate(pending):
            node = node.get(ch)
            if node is None:
                break
            for token_id in node.get("", ()):
                prefixes[token_id] = (state, pending[index + 1 :])
        # Tokens that write all of it and go on into the grammar.
        onward: dict[int, tuple[State, str]] = {}
        if node is not None:
            self._walk(node, state, onward)
        # A pending start of an added token (``<loc_``) is written whole, as training wrote it,
        # unless no added token can complete it here.
        if onward and pending in self.vocabulary.added_prefixes:
            prefixes = {}
        found = {**prefixes, **onward}
        ids = np.fromiter(found, dtype=np.int64, count=len(found))
        distance = np.array([self.distance(after) + len(rest) for after, rest in found.values()], dtype=np.float64)
        regions = [-1 if token_id in prefixes else self.grammar.region_of(after) for token_id, (after, _) in found.items()]
        region = np.array([-1 if r is None else r for r in regions], dtype=np.int64)
        return _Moves(found, ids, distance, region)

    def _walk(self, node: dict[str, Any], state: State, found: dict[int, tuple[State, str]]) -> None:
        for ch, child in node.items():
            if ch == "":
                continue
            after = self.grammar.step(state, ch)
            if not after:
                continue
            for token_id in child.get("", ()):
                found[token_id] = (after, "")
            self._walk(child, after, found)

    def allowed(self, state: State, remaining: int, capped_region: int | None = None, pending: str = "") -> np.ndarray:
        """Tokens that keep the document finishable in ``remaining`` tokens (this one included).

        ``capped_region``: a free-text region that has used its token cap; tokens staying in it are refused.
        When the budget is already too tight for every move, the moves closest to the end are kept:
        the grammar's guarantee outranks the token budget.
        """
        moves = self.moves(state, pending)
        keep = moves.distance <= remaining - 1
        if capped_region is not None:
            keep &= moves.region != capped_region
        allowed = moves.ids[keep]
        final = not pending and self.grammar.is_final(state)
        if not len(allowed) and not final and len(moves.ids):
            allowed = moves.ids[moves.distance == moves.distance.min()]
        if final:
            allowed = np.concatenate([allowed, np.asarray(self.vocabulary.eos_ids, dtype=np.int64)])
        return allowed


class RowCursor:
    """One output's progress through the grammar, for any decoding loop.

    Holds the ids written so far, their text, the *pending* text (fixed by the grammar, not yet
    written) and the grammar state after both. :meth:`prepare` writes the text the grammar fixes next
    with the tokenizer's own ids for the whole document (:class:`~radscribe.infer.tokens.SpanTokenizer`),
    holding back its last piece when the next value may merge with it (``" "`` + ``AP`` is the one
    token ``" AP"``); the model then writes that piece with the value (:meth:`allowed` offers tokens
    covering it). With ``retokenize``, text the model wrote in a split the tokenizer would not produce
    is re-encoded when the next fixed text is written, so ids only ever change after :meth:`prepare`
    (a loop that keeps a KV cache drops the replaced ids and feeds the new ones). Without it, ids
    only grow (what a transformers ``generate`` loop can do).
    """

    def __init__(self, constraint: TokenConstraint, max_new_tokens: int, retokenize: bool = True):
        self.constraint = constraint
        self.grammar = constraint.grammar
        self.vocabulary = constraint.vocabulary
        self.max_new_tokens = max_new_tokens
        self.retokenize = retokenize
        self.state = self.grammar.start
        self.ids: list[int] = []
        self.text = ""
        self.pending = ""
        self.anchor = (0, 0)   # (characters, ids) at a piece boundary the written ids are final up to
        self.done = False
        self.region: int | None = None
        self.region_tokens = 0

    def prepare(self) -> bool:
        """Write the fixed text that comes next; True when the model must choose, False when the document is complete."""
        if self.done:
            return False
        forced, self.state = self.grammar.forced(self.state)
        self.pending += forced
        if self.pending and self.vocabulary.spans is not None:
            self._write_pending()
        if not self.pending and self.grammar.is_final(self.state) and self.grammar.next_chars(self.state) == frozenset():
            self.done = True
        return not self.done

    def _write_pending(self) -> None:
        spans = self.vocabulary.spans
        document = self.text + self.pending
        anchor_chars, anchor_ids = self.anchor if spans.local else (0, 0)
        stable = spans.stable_length(document, self.grammar.next_chars(self.state), anchor_chars)
        if stable <= anchor_chars or (stable < len(self.text) and not self.retokenize):
            return
        window = spans.encode(document[anchor_chars:stable])
        if self.vocabulary.text_of(window) != document[anchor_chars:stable]:
            return  # the tokenizer normalises this text: leave it to the model
        canonical = self.ids[:anchor_ids] + window
        if canonical[: len(self.ids)] != self.ids and not self.retokenize:
            # Keep what the model wrote; go on canonically if the canonical split has a boundary where it ends.
            ends, length = {anchor_chars: 0}, anchor_chars
            for index, token_id in enumerate(window):
                length += len(self.vocabulary.texts[token_id] or "")
                ends[length] = index + 1
            if len(self.text) not in ends:
                return
            canonical = self.ids + window[ends[len(self.text)] :]
        self.ids = canonical
        self.text, self.pending = document[:stable], document[stable:]
        self.anchor = (stable, len(self.ids))

    def allowed(self) -> np.ndarray:
        """Token ids the model may choose now (call after :meth:`prepare` returned True)."""
        remaining = self.max_new_tokens - len(self.ids)
        cap = self.grammar.region_caps.get(self.region) if self.region is not None else None
        capped = self.region if cap is not None and self.region_tokens >= cap else None
        return self.constraint.allowed(self.state, remaining, capped, self.pending)

    def choose(self, token_id: int) -> None:
        """Record the model's choice (one of :meth:`allowed`)."""
        if token_id in self.vocabulary.eos_ids:
            self.done = True
            return
        move = self.constraint.moves(self.state, self.pending).targets.get(token_id)
        if move is None:
            raise ValueError(f"token {token_id} ({self.vocabulary.texts[token_id]!r}) is not allowed here")
        wrote_fixed_text = len(self.vocabulary.texts[token_id]) <= len(self.pending)
        self.state, self.pending = move
        self.ids.append(token_id)
        self.text += self.vocabulary.texts[token_id]
        if wrote_fixed_text:
            return
        region = self.grammar.region_of(self.state)
        if region is not None and region == self.region:
            self.region_tokens += 1
        else:
            self.region, self.region_tokens = region, 1 if region is not None else 0


class ConstrainedLogitsProcessor:
    """A transformers logits processor: the grammar's fixed ids forced, -inf on every token it does not allow.

    Create one per ``generate`` call (it remembers the prompt width from its first call). Runs the
    same :class:`RowCursor` as :func:`radscribe.infer.decoding.generate_constrained`, one token per
    step (without re-tokenising: ``generate`` cannot take tokens back).
    """

    def __init__(self, constraint: TokenConstraint, max_new_tokens: int):
        check_budget(constraint, max_new_tokens)
        self.constraint = constraint
        self.max_new_tokens = max_new_tokens
        self.prompt_width: int | None = None
        self.rows: list[RowCursor] = []
        self._lost: set[int] = set()

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt_width is None:
            self.prompt_width = int(input_ids.shape[1])
            self.rows = [RowCursor(self.constraint, self.max_new_tokens, retokenize=False) for _ in range(input_ids.shape[0])]
        elif input_ids.shape[0] != len(self.rows) or input_ids.shape[1] <= self.prompt_width:
            raise ValueError(
                "a ConstrainedLogitsProcessor follows the rows of one generate call; it was reused for another "
                "(make a new one per call with constrained_generate_kwargs)"
            )
        mask = torch.full_like(scores, -math.inf)
        for index, row in enumerate(self.rows):
            generated = input_ids[index, self.prompt_width :].tolist()
            if index in self._lost or not self._follow(row, generated):
                self._lost.add(index)  # finished, or another processor changed the scores: leave it alone
                mask[index] = 0
                continue
            if len(row.ids) > len(generated):
                token_ids = [row.ids[len(generated)]]
            elif row.done:
                token_ids = row.vocabulary.eos_ids
            else:
                token_ids = row.allowed()
            mask[index, torch.as_tensor(token_ids, dtype=torch.long)] = 0
        return scores + mask

    def _follow(self, row: RowCursor, generated: list[int]) -> bool:
        """Bring ``row`` up to ``generated``; False once it has ended or left the grammar."""
        if len(generated) > len(row.ids):
            token_id = generated[-1]
            if len(generated) != len(row.ids) + 1 or row.done or token_id in row.vocabulary.eos_ids:
                return False
            if token_id not in row.constraint.moves(row.state, row.pending).targets:
                return False
            row.choose(token_id)
        elif generated != row.ids[: len(generated)]:
            return False
        if len(row.ids) == len(generated):
            row.prepare()
        return True


def check_budget(constraint: TokenConstraint, max_new_tokens: int) -> None:
    start_distance = constraint.distance(constraint.grammar.start)
    if start_distance > max_new_tokens:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} is too small for this template: the shortest valid output "
            f"needs {int(start_distance)} characters (tokens, at worst)"
        )


def constrained_generate_kwargs(constraint: TokenConstraint, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` that enforce ``constraint``."""
    from transformers import LogitsProcessorList

    return {"logits_processor": LogitsProcessorList([ConstrainedLogitsProcessor(constraint, max_new_tokens)]), "max_new_tokens": max_new_tokens}
