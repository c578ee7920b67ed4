"""Grammar constraints lifted to tokens: which token ids may come next, and a cursor that writes fixed text.

Wherever the grammar fixes the next
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

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from radscribe.grounding.location_tokens import BINS, BOX_END, BOX_START
from radscribe.infer.grammar import Grammar, State
from radscribe.infer.tokens import Vocabulary


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


def check_budget(constraint: TokenConstraint, max_new_tokens: int) -> None:
    start_distance = constraint.distance(constraint.grammar.start)
    if start_distance > max_new_tokens:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} is too small for this template: the shortest valid output "
            f"needs {int(start_distance)} characters (tokens, at worst)"
        )


def box_order_hook(vocabulary: Vocabulary) -> Any:
    """A decoding logits hook that makes every box's far edges lie beyond its near ones.

    Inside ``<box>...``, the third location token of each box (x_max) must be a higher bin than the
    first (x_min) and the fourth (y_max) higher than the second (y_min), and a near edge cannot take
    the last bin, so no box written under a grammar constraint has zero area or is inverted. Rows
    outside a box are left alone.
    """
    bins = {token_id: int(match.group(1)) for token_id, text in enumerate(vocabulary.texts)
            if text and (match := _LOCATION.fullmatch(text))}
    box_start = {token_id for token_id, text in enumerate(vocabulary.texts) if text == BOX_START}
    box_end = {token_id for token_id, text in enumerate(vocabulary.texts) if text == BOX_END}
    location_ids = torch.tensor(sorted(bins))
    location_bins = torch.tensor([bins[token_id] for token_id in sorted(bins)])

    def hook(row: int, cursor: Any, logits: Any) -> Any:
        written: list[int] = []
        for token_id in reversed(cursor.ids):
            if token_id in box_start or token_id in box_end:
                if token_id in box_end:
                    return logits
                break
            if token_id in bins:
                written.append(bins[token_id])
        written.reverse()
        position = len(written) % 4
        logits = logits.clone()
        if position in (0, 1):  # a near edge in the last bin would leave no room for the far one
            logits[location_ids[location_bins >= BINS - 1].to(logits.device)] = float("-inf")
        else:
            near = written[-2]  # x_min when x_max comes next, y_min when y_max does
            logits[location_ids[location_bins <= near].to(logits.device)] = float("-inf")
        return logits

    return hook


_LOCATION = re.compile(r"<loc_(\d+)>")
