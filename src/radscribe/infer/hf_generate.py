"""Constrained decoding inside any model's transformers ``generate``: a logits processor over a TokenConstraint.

The fallback for backbones our own loop (:func:`radscribe.infer.decoding.generate_constrained`)
does not drive: the grammar's fixed ids are forced and every token the constraint does not allow
gets -inf, one ``generate`` step at a time.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from radscribe.infer.constraint import RowCursor, TokenConstraint, check_budget


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


def constrained_generate_kwargs(constraint: TokenConstraint, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` that enforce ``constraint``."""
    from transformers import LogitsProcessorList

    return {"logits_processor": LogitsProcessorList([ConstrainedLogitsProcessor(constraint, max_new_tokens)]), "max_new_tokens": max_new_tokens}
