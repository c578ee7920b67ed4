"""Template -> grammar: the template writes its own headers and labels, the model fills values.

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

The grammar is lifted to tokens by :mod:`radscribe.infer.constraint` and run by
:func:`radscribe.infer.decoding.generate_constrained` or, inside transformers' ``generate``, by
:mod:`radscribe.infer.hf_generate`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from radscribe.grounding.location_tokens import BINS, BOX_END, BOX_START
from radscribe.infer.grammar import Fragment, Grammar, NumberRule
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
