"""A radscribe grammar as EBNF, for grammar engines that mask a whole vocabulary at once.

:func:`to_ebnf` writes the character language of a :class:`~radscribe.infer.grammar.Grammar` (what
:func:`~radscribe.infer.constrained.template_grammar` and ``grounding_grammar`` build) in the EBNF
dialect of xgrammar (GBNF-compatible: ``root ::= ...``, string literals, character classes, ``|``,
parentheses), exactly: a text is in the EBNF's language if and only if the radscribe grammar accepts
it (``tests/test_infer_grammar_export.py`` checks this on every shipped template and on random
texts). How each part is written:

- literal text: string literals; a chain of nodes each entered from one place is inlined, so the
  template's fixed text becomes a few long literals rather than one rule per character;
- free-text runs: character classes computed from the radscribe character test over every Unicode
  code point (surrogates excluded: they are not encodable), so the class is the test, whatever it is;
- bounded numbers (:class:`~radscribe.infer.grammar.NumberRule`): digit-range alternatives that admit
  exactly the strings ``NumberRule.complete`` accepts (no leading zeros, at most ``decimals``
  decimals, the value inside [minimum, maximum], ``-0`` where negatives are allowed).

What EBNF does not carry: radscribe's per-field token caps (regions) and the guarantee that a
document can still be finished within ``max_new_tokens``; those belong to the token-level decoder
(:mod:`radscribe.infer.constrained`), not to the language. An engine masking by this grammar alone
can run out of tokens mid-report: give it head-room (see :mod:`radscribe.infer.xgrammar_decoding`).

vLLM guided decoding: the same string is what a vLLM server takes as a grammar. With vLLM's
OpenAI-compatible server (xgrammar backend, the default), send it per request as
``extra_body={"guided_grammar": ebnf}`` (``structured_outputs={"grammar": ebnf}`` in newer vLLM), or
offline as ``SamplingParams(guided_decoding=GuidedDecodingParams(grammar=ebnf))``::

    from radscribe.infer import template_grammar
    from radscribe.infer.grammar_export import to_ebnf
    ebnf = to_ebnf(template_grammar("spine-ap-alignment", codec_name="qwen2.5-vl"))
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from functools import lru_cache

from radscribe.infer.grammar import CharTest, Grammar, NumberRule

ROOT = "root"


def to_ebnf(grammar: Grammar) -> str:
    """The EBNF (xgrammar / GBNF dialect) of ``grammar``'s character language; the start rule is ``root``."""
    return _Writer(grammar).write()


class _Writer:
    def __init__(self, grammar: Grammar):
        if not grammar.start:
            raise ValueError("the grammar is not finished (call Grammar.finish first)")
        self.grammar = grammar
        self.nodes = grammar.nodes
        self.incoming = [0] * len(self.nodes)
        for node in self.nodes:
            for target in node.out:
                self.incoming[target] += 1
        self.rules: dict[str, str] = {}
        self.numbers: dict[NumberRule, str] = {}
        self.classes: dict[CharTest, str] = {}
        self.pending: list[int] = []

    def write(self) -> str:
        entries = sorted({node_id for node_id, _ in self.grammar.start})
        # The start state is a closure: its items are the nodes the document may begin with.
        body = " | ".join(self._sequence(node_id) for node_id in entries) if entries else '""'
        self.rules[ROOT] = body
        while self.pending:
            node_id = self.pending.pop()
            name = _rule_name(node_id)
            if name not in self.rules:
                self.rules[name] = "(pending)"
                self.rules[name] = self._sequence(node_id)
        lines = [f"{ROOT} ::= {self.rules.pop(ROOT)}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"

    def _reference(self, node_id: int) -> str:
        """A node entered from several places (or on a cycle) gets its own rule."""
        name = _rule_name(node_id)
        if name not in self.rules:
            self.pending.append(node_id)
        return name

    def _sequence(self, node_id: int) -> str:
        """The language from entering ``node_id`` to the end of the document."""
        parts: list[str] = []
        literal: list[str] = []
        current = node_id
        while True:
            node = self.nodes[current]
            if node.kind == "final":
                break
            if node.kind == "test" and node.char is not None:
                literal.append(node.char)
            else:
                if literal:
                    parts.append(_string(literal))
                    literal = []
                if node.kind == "test":
                    parts.append(self._char_class(node.test))
                elif node.kind == "number":
                    parts.append(self._number(node.rule))
            targets = node.out
            if len(targets) == 1 and self.incoming[targets[0]] == 1:
                current = targets[0]
                continue
            if literal:
                parts.append(_string(literal))
                literal = []
            if targets:
                choices = [self._reference(target) for target in targets]
                parts.append(choices[0] if len(choices) == 1 else "(" + " | ".join(choices) + ")")
            break
        if literal:
            parts.append(_string(literal))
        return " ".join(parts) if parts else '""'

    def _char_class(self, test: CharTest) -> str:
        name = self.classes.get(test)
        if name is None:
            name = self.classes[test] = f"chars{len(self.classes)}"
            self.rules[name] = _class_expression(test)
        return name

    def _number(self, rule: NumberRule) -> str:
        name = self.numbers.get(rule)
        if name is None:
            name = self.numbers[rule] = f"number{len(self.numbers)}"
            self.rules[name] = number_expression(rule)
        return name


def _rule_name(node_id: int) -> str:
    return f"n{node_id}"


# ----------------------------------------------------------------------------------------------- text


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in '"\\':
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    return ch


def _string(chars: list[str]) -> str:
    return '"' + "".join(_escape(ch) for ch in chars) + '"'


def _class_char(code: int) -> str:
    ch = chr(code)
    if ch in "]\\-^[":
        return "\\" + ch
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0xA0 or ch.isspace():
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


@lru_cache(maxsize=64)
def _excluded_ranges(test: CharTest) -> tuple[tuple[int, int], ...]:
    """The code points ``test`` refuses, as ranges (surrogates excluded: no text contains them)."""
    ranges: list[tuple[int, int]] = []
    start = None
    for code in range(sys.maxunicode + 1):
        refused = not (0xD800 <= code <= 0xDFFF) and not test(chr(code))
        if refused and start is None:
            start = code
        elif not refused and start is not None:
            ranges.append((start, code - 1))
            start = None
    if start is not None:
        ranges.append((start, sys.maxunicode))
    return tuple(ranges)


def _class_expression(test: CharTest) -> str:
    excluded = _excluded_ranges(test)
    if not excluded:
        return "[\\u0000-\\U0010ffff]"
    parts = [_class_char(a) if a == b else f"{_class_char(a)}-{_class_char(b)}" for a, b in excluded]
    return "[^" + "".join(parts) + "]"


# ----------------------------------------------------------------------------------------------- numbers


def number_expression(rule: NumberRule) -> str:
    """EBNF for exactly the strings ``rule.complete`` accepts."""
    options = []
    positive = _magnitudes(rule, negative=False)
    if positive:
        options.append(positive)
    if rule.negative:
        negative = _magnitudes(rule, negative=True)
        if negative:
            options.append(f'"-" ({negative})')
    if not options:
        raise ValueError(f"{rule}: no number is in range")
    return " | ".join(f"({option})" for option in options) if len(options) > 1 else options[0]


def _magnitudes(rule: NumberRule, negative: bool) -> str:
    """The digit strings S (``S`` or ``-S``) whose value lies in range, by number of decimals."""
    digits = rule.integer_digits
    options = []
    for decimals in range(rule.decimals + 1):
        scale = 10**decimals
        limit = 10 ** (digits + decimals) - 1

        def text(n: int, decimals: int = decimals, scale: int = scale) -> str:
            whole, fraction = divmod(n, scale)
            return f"{'-' if negative else ''}{whole}" + (f".{fraction:0{decimals}d}" if decimals else "")

        low_bound, high_bound = _bounds(rule, negative)
        low = 0 if low_bound is None else max(0, math.ceil(low_bound * scale))
        high = limit if high_bound is None else min(limit, math.floor(high_bound * scale))
        # Float comparisons in NumberRule.complete decide the edges: step them to agree exactly.
        while low > 0 and rule.complete(text(low - 1)):
            low -= 1
        while low <= high and not rule.complete(text(low)):
            low += 1
        while high < limit and rule.complete(text(high + 1)):
            high += 1
        while high >= low and not rule.complete(text(high)):
            high -= 1
        if low <= high:
            options.append(_scaled_range(low, high, decimals))
    return " | ".join(f"({option})" for option in options) if len(options) > 1 else (options[0] if options else "")


def _bounds(rule: NumberRule, negative: bool) -> tuple[Fraction | None, Fraction | None]:
    """[low, high] of the magnitude |value| on this side of zero (None: unbounded)."""
    minimum = None if rule.minimum is None else Fraction(rule.minimum)
    maximum = None if rule.maximum is None else Fraction(rule.maximum)
    if negative:  # value = -S: minimum <= -S <= maximum
        return (None if maximum is None else max(Fraction(0), -maximum)), (None if minimum is None else -minimum)
    return (None if minimum is None else max(Fraction(0), minimum)), maximum


def _scaled_range(low: int, high: int, decimals: int) -> str:
    """Strings ``W[.F]`` (F exactly ``decimals`` digits, W without leading zeros) with W.F*10^decimals in [low, high]."""
    if decimals == 0:
        return _integer_range(low, high)
    scale = 10**decimals
    (low_whole, low_fraction), (high_whole, high_fraction) = divmod(low, scale), divmod(high, scale)
    if low_whole == high_whole:
        return f'{_string(list(str(low_whole)))} "." {_fixed_range(low_fraction, high_fraction, decimals)}'
    options = [f'{_string(list(str(low_whole)))} "." {_fixed_range(low_fraction, scale - 1, decimals)}']
    if high_whole - low_whole > 1:
        options.append(f'({_integer_range(low_whole + 1, high_whole - 1)}) "." {_fixed_range(0, scale - 1, decimals)}')
    options.append(f'{_string(list(str(high_whole)))} "." {_fixed_range(0, high_fraction, decimals)}')
    return " | ".join(f"({option})" for option in options)


def _integer_range(low: int, high: int) -> str:
    """Decimal integers in [low, high] without leading zeros."""
    options = []
    for width in range(len(str(low)), len(str(high)) + 1):
        first = 0 if width == 1 else 10 ** (width - 1)
        options.append(_fixed_range(max(low, first), min(high, 10**width - 1), width))
    return " | ".join(f"({option})" for option in options) if len(options) > 1 else options[0]


def _fixed_range(low: int, high: int, width: int) -> str:
    """Digit strings of exactly ``width`` characters (zero-padded) whose value lies in [low, high]."""
    if width == 0:
        return '""'
    if low == 0 and high == 10**width - 1:
        return " ".join(["[0-9]"] * width)
    low_text, high_text = f"{low:0{width}d}", f"{high:0{width}d}"
    a, b = int(low_text[0]), int(high_text[0])
    rest = 10 ** (width - 1)
    if a == b:
        tail = _fixed_range(low % rest, high % rest, width - 1)
        return f'"{a}"' + ("" if width == 1 else f" {tail}")
    options = [f'"{a}"' + ("" if width == 1 else f" {_fixed_range(low % rest, rest - 1, width - 1)}")]
    if b - a > 1:
        middle = f"[{a + 1}-{b - 1}]" if b - a > 2 else f'"{a + 1}"'
        options.append(middle + ("" if width == 1 else " " + " ".join(["[0-9]"] * (width - 1))))
    options.append(f'"{b}"' + ("" if width == 1 else f" {_fixed_range(0, high % rest, width - 1)}"))
    return "(" + " | ".join(f"({option})" for option in options) + ")"
