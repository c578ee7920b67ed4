"""A character-level grammar (a small NFA) for the text a constrained decoder may write.

The grammar is built from fragments (literals, alternatives, optional parts, runs of free text,
bounded numbers) and simulated as a set of NFA states. Two facts per state drive decoding:

- :meth:`Grammar.step` — the states after one more character (empty: the character is not allowed);
- :meth:`Grammar.distance` — the fewest characters that still reach the end of the document;
- :meth:`Grammar.forced` — the text every continuation starts with (a decoder writes it without asking
  the model), and :meth:`Grammar.next_chars` — what may follow it.

Free-text runs carry a *region* id: the token-level constraint caps how many tokens one region may
take, so a rambling model is made to close the field and move on (see :mod:`radscribe.infer.template_grammar`).
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

State = frozenset  # frozenset[tuple[int, str]]: (node id, number prefix or "")
CharTest = Callable[[str], bool]

_NUMBER_SYNTAX = re.compile(r"^-?(\d*)(\.(\d*))?$")
DEFAULT_INTEGER_DIGITS = 6  # numbers without a bound: at most 6 digits before the decimal point


@dataclass(frozen=True)
class NumberRule:
    """Digits, an optional sign and at most one decimal point, restricted to [minimum, maximum]."""

    minimum: float | None = None
    maximum: float | None = None
    decimals: int = 0

    @property
    def negative(self) -> bool:
        return self.minimum is None or self.minimum < 0

    @property
    def integer_digits(self) -> int:
        bounds = [abs(v) for v in (self.minimum, self.maximum) if v is not None]
        if len(bounds) < 2:
            return DEFAULT_INTEGER_DIGITS
        return max(1, len(str(int(max(bounds)))))

    def _parts(self, prefix: str) -> tuple[bool, str, str | None] | None:
        """(negative, integer digits, fraction digits or None) when ``prefix`` is well formed so far."""
        match = _NUMBER_SYNTAX.fullmatch(prefix)
        if match is None:
            return None
        negative = prefix.startswith("-")
        whole, fraction = match.group(1), match.group(3)
        if negative and not self.negative:
            return None
        if len(whole) > self.integer_digits or (len(whole) > 1 and whole[0] == "0"):
            return None
        if fraction is not None and (not whole or self.decimals == 0 or len(fraction) > self.decimals):
            return None
        return negative, whole, fraction

    def complete(self, prefix: str) -> bool:
        parts = self._parts(prefix)
        if parts is None or not parts[1] or (parts[2] is not None and not parts[2]):
            return False
        value = float(prefix)
        return self._in_range(value, value)

    def viable(self, prefix: str) -> bool:
        """Whether some completion of ``prefix`` is a number in range."""
        parts = self._parts(prefix)
        if parts is None:
            return False
        negative, whole, fraction = parts
        if not whole:
            return True  # "" or "-" (a sign is only well formed when negatives are allowed)
        intervals: list[tuple[float, float]] = []
        if fraction is not None:
            base = float(f"{whole}.{fraction or '0'}")
            intervals.append((base, base + 10.0 ** -len(fraction) if fraction else base + 1.0))
        else:
            start = int(whole)
            extra = 0 if whole == "0" else self.integer_digits - len(whole)
            for k in range(extra + 1):
                intervals.append((start * 10**k, (start + 1) * 10**k))
        for low, high in intervals:
            # Reachable values lie in [low, high) (high excluded); mirror them for a minus sign.
            if negative and self._in_range(-high, -low, open_low=True):
                return True
            if not negative and self._in_range(low, high, open_high=True):
                return True
        return False

    def _in_range(self, low: float, high: float, open_low: bool = False, open_high: bool = False) -> bool:
        """Whether [low, high] (ends optionally open) meets [minimum, maximum]."""
        minimum = -math.inf if self.minimum is None else self.minimum
        maximum = math.inf if self.maximum is None else self.maximum
        above = high > minimum if open_high else high >= minimum
        below = low < maximum if open_low else low <= maximum
        return above and below

    @lru_cache(maxsize=4096)
    def extra_characters(self, prefix: str) -> int:
        """Fewest characters to append to ``prefix`` for a complete number in range (breadth first)."""
        frontier = [prefix]
        for depth in range(self.integer_digits + self.decimals + 3):
            if any(self.complete(candidate) for candidate in frontier):
                return depth
            frontier = [c + ch for c in frontier for ch in "0123456789.-" if self.viable(c + ch)]
            frontier = list(dict.fromkeys(frontier))[:64]
            if not frontier:
                break
        return 10**6  # unreachable: no number fits


@dataclass
class _Node:
    kind: str  # "eps" | "test" | "number" | "final"
    test: CharTest | None = None
    rule: NumberRule | None = None
    out: list[int] = field(default_factory=list)
    region: int | None = None
    char: str | None = None  # a "test" node of literal text: the one character it accepts


Fragment = tuple[int, int]  # (entry node, exit node); the exit is an "eps" node without edges yet


class Grammar:
    """Build with the fragment methods, then :meth:`finish` with the whole document's fragment."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.region_caps: dict[int, int] = {}
        self.region_names: dict[int, str] = {}
        self.start: State = frozenset()
        self._distance: list[float] = []
        self._step_cache: dict[tuple[State, str], State] = {}
        self._forced_cache: dict[State, tuple[str, State]] = {}
        self._next_cache: dict[State, frozenset[str] | None] = {}

    # ----- building ----------------------------------------------------------------------------
    def _add(self, node: _Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _chain(self, kind: str, region: int | None = None, **options) -> Fragment:
        exit_ = self._add(_Node("eps"))
        entry = self._add(_Node(kind, out=[exit_], region=region, **options))
        return entry, exit_

    def empty(self) -> Fragment:
        node = self._add(_Node("eps"))
        return node, node

    def literal(self, text: str, region: int | None = None) -> Fragment:
        if not text:
            return self.empty()
        pieces = [self._chain("test", region, test=_equals(ch), char=ch) for ch in text]
        return self.seq(*pieces)

    def char(self, test: CharTest, region: int | None = None) -> Fragment:
        return self._chain("test", region, test=test)

    def number(self, rule: NumberRule, region: int | None = None) -> Fragment:
        return self._chain("number", region, rule=rule)

    def seq(self, *fragments: Fragment) -> Fragment:
        if not fragments:
            return self.empty()
        for (_, exit_), (entry, _) in zip(fragments, fragments[1:]):
            self.nodes[exit_].out.append(entry)
        return fragments[0][0], fragments[-1][1]

    def alt(self, *fragments: Fragment) -> Fragment:
        entry = self._add(_Node("eps"))
        exit_ = self._add(_Node("eps"))
        for start, end in fragments:
            self.nodes[entry].out.append(start)
            self.nodes[end].out.append(exit_)
        return entry, exit_

    def optional(self, fragment: Fragment) -> Fragment:
        return self.alt(fragment, self.empty())

    def run(self, first: CharTest, rest: CharTest, region: int) -> Fragment:
        """One character passing ``first`` then any number passing ``rest`` (all in ``region``)."""
        entry, after_first = self._chain("test", region, test=first)
        loop, loop_exit = self._chain("test", region, test=rest)
        exit_ = self._add(_Node("eps"))
        self.nodes[after_first].out += [loop, exit_]
        self.nodes[loop_exit].out += [loop, exit_]
        return entry, exit_

    def region(self, name: str, token_cap: int) -> int:
        region = len(self.region_caps)
        self.region_caps[region] = token_cap
        self.region_names[region] = name
        return region

    def finish(self, document: Fragment) -> None:
        final = self._add(_Node("final"))
        self.nodes[document[1]].out.append(final)
        self._distance = self._distances()
        self.start = self._closure([(document[0], "")])
        if self.distance(self.start) >= 10**6:
            raise ValueError("the grammar accepts no text (a number field's range admits no value?)")

    # ----- running -----------------------------------------------------------------------------
    def _closure(self, items: list[tuple[int, str]]) -> State:
        seen: set[tuple[int, str]] = set()
        stack = list(items)
        kept = []
        while stack:
            item = stack.pop()
            if item in seen:
                continue
            seen.add(item)
            node = self.nodes[item[0]]
            if node.kind == "eps":
                stack.extend((target, "") for target in node.out)
                continue
            kept.append(item)
            if node.kind == "number" and node.rule.complete(item[1]):
                stack.extend((target, "") for target in node.out)
        return frozenset(kept)

    def step(self, state: State, ch: str) -> State:
        key = (state, ch)
        cached = self._step_cache.get(key)
        if cached is not None:
            return cached
        moved: list[tuple[int, str]] = []
        for node_id, prefix in state:
            node = self.nodes[node_id]
            if node.kind == "test" and node.test(ch):
                moved.extend((target, "") for target in node.out)
            elif node.kind == "number" and node.rule.viable(prefix + ch):
                moved.append((node_id, prefix + ch))
        result = self._closure(moved) if moved else frozenset()
        self._step_cache[key] = result
        return result

    def forced(self, state: State) -> tuple[str, State]:
        """(text, state after it): the characters every continuation of ``state`` starts with.

        Stops at the first choice (two or more possible characters, or free text) or where the
        document may end; a number that cannot grow any more is no choice.
        """
        cached = self._forced_cache.get(state)
        if cached is None:
            text, current = [], state
            while (ch := self._only_char(current)) is not None:
                current = self.step(current, ch)
                text.append(ch)
            cached = self._forced_cache[state] = ("".join(text), current)
        return cached

    def _only_char(self, state: State) -> str | None:
        if self.is_final(state):
            return None
        chars = self.next_chars(state)
        return next(iter(chars)) if chars is not None and len(chars) == 1 else None

    def next_chars(self, state: State) -> frozenset[str] | None:
        """Every character that may follow ``state``; None when free text makes that open-ended.

        An empty set means nothing may follow: the document is complete.
        """
        if state in self._next_cache:
            return self._next_cache[state]
        chars: set[str] | None = set()
        for node_id, prefix in state:
            node = self.nodes[node_id]
            if node.kind == "test" and node.char is None:
                chars = None
                break
            if node.kind == "test":
                chars.add(node.char)
            elif node.kind == "number":
                chars.update(ch for ch in "0123456789.-" if node.rule.viable(prefix + ch))
        result = None if chars is None else frozenset(chars)
        self._next_cache[state] = result
        return result

    def is_final(self, state: State) -> bool:
        return any(self.nodes[node_id].kind == "final" for node_id, _ in state)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a whole document of this grammar."""
        state = self.start
        for ch in text:
            state = self.step(state, ch)
            if not state:
                return False
        return self.is_final(state)

    def distance(self, state: State) -> float:
        """Fewest characters from ``state`` to the end of the document (inf when none)."""
        best = math.inf
        for node_id, prefix in state:
            node = self.nodes[node_id]
            if node.kind == "number":
                after = min((self._distance[target] for target in node.out), default=math.inf)
                best = min(best, node.rule.extra_characters(prefix) + after)
            else:
                best = min(best, self._distance[node_id])
        return best

    def region_of(self, state: State) -> int | None:
        """The free-text region ``state`` is inside (ignoring the fixed text that may follow it), or None."""
        regions = {self.nodes[node_id].region for node_id, _ in state} - {None}
        return regions.pop() if len(regions) == 1 else None

    def _distances(self) -> list[float]:
        """Per node: fewest characters from entering it to the end (Dijkstra on reversed edges)."""
        weight = []
        for node in self.nodes:
            if node.kind == "test":
                weight.append(1)
            elif node.kind == "number":
                weight.append(node.rule.extra_characters(""))
            else:
                weight.append(0)
        incoming: list[list[int]] = [[] for _ in self.nodes]
        for source, node in enumerate(self.nodes):
            for target in node.out:
                incoming[target].append(source)
        distance = [math.inf] * len(self.nodes)
        queue = []
        for node_id, node in enumerate(self.nodes):
            if node.kind == "final":
                distance[node_id] = 0
                queue.append((0, node_id))
        heapq.heapify(queue)
        while queue:
            value, node_id = heapq.heappop(queue)
            if value > distance[node_id]:
                continue
            for source in incoming[node_id]:
                candidate = weight[source] + value
                if candidate < distance[source]:
                    distance[source] = candidate
                    heapq.heappush(queue, (candidate, source))
        return distance


def _equals(expected: str) -> CharTest:
    return lambda ch: ch == expected
