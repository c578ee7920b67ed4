"""Closed questions answered from their own options, by the model's likelihood of each option.

A question built like a yes/no question (it opens with an auxiliary verb: "Is there...", "Are the...",
"Does the...") and offering no alternatives ("... or ...") can only be answered "yes" or "no": the
answer is the option the model finds likelier, each scored as the log-probability of its tokens and the
end-of-sequence token, teacher-forced after the question. Any other question is answered by free
generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

YES_NO: tuple[str, ...] = ("yes", "no")
# Openings of yes/no questions in VQA-RAD and SLAKE ("is/are" is VQA-RAD's own spelling).
AUXILIARIES = frozenset({
    "is", "are", "is/are", "was", "were", "does", "do", "did", "doe", "can", "could", "has", "have", "had",
    "will", "would", "should", "may", "might", "any",
})


def answer_options(question: str) -> tuple[str, ...] | None:
    """The answers a question allows: ``YES_NO`` for a yes/no question, None when it is open."""
    words = re.findall(r"[a-z/]+", question.lower())
    if not words or words[0] not in AUXILIARIES or " or " in f" {question.lower()} ":
        return None
    return YES_NO


@torch.no_grad()
def option_log_likelihoods(model: Any, image: Any, prompt: str, task: str, options: Sequence[str]) -> list[float]:
    """Sum of log-probabilities of each option's tokens (and its end-of-sequence token) after ``prompt``."""
    from radscribe.models.base import _Query

    queries = [_Query((image,), prompt, task, option) for option in options]
    was_training = model.training
    model.eval()
    try:
        batch = model.collate(queries, with_targets=True)
        with model.autocast():
            logits = model(**batch).logits.float()
    finally:
        model.train(was_training)
    labels = batch["labels"].to(logits.device)
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (targets != -100)).sum(dim=-1).tolist()
