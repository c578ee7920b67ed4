"""Validation during training: token-mean loss per task, and optional generation metrics on a few examples.

The examples evaluated are the first ``max_examples_per_task`` of each task (in manifest order), so
every evaluation of a run, and every run of an ablation, scores the same examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from radscribe.train.config import EvalSection
from radscribe.train.data import count_loss_tokens, to_device
from radscribe.train.distributed import Dist, whole_model


def evaluate(
    model: Any,
    pool: dict[str, list[Any]],
    settings: EvalSection,
    default_batch_size: int,
    device: torch.device,
    autocast: Callable[[], Any],
    ddp: Dist,
) -> dict[str, Any]:
    """``{"loss": overall token mean, "task_loss": {task: token mean}, "generation": {metric: value}}``."""
    batch_size = settings.batch_size or default_batch_size
    was_training = model.training
    model.eval()
    tasks = sorted(pool)
    sums = torch.zeros(len(tasks), 2, dtype=torch.float64)  # per task: loss x tokens, tokens
    with torch.no_grad():
        for row, task in enumerate(tasks):
            examples = pool[task][: settings.max_examples_per_task]
            chunks = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
            own = chunks[ddp.rank :: ddp.world_size]
            # a sharded model's forward pass is a collective: every rank runs as many as the busiest one,
            # repeating a chunk it does not count when it has run out of its own
            rounds = -(-len(chunks) // ddp.world_size) if ddp.sharded else len(own)
            for index in range(rounds):
                chunk = own[index] if index < len(own) else chunks[0]
                batch = to_device(model.collate(chunk), device)
                with autocast():
                    loss = model(**batch).loss
                if index < len(own):
                    tokens = count_loss_tokens(batch)
                    sums[row, 0] += float(loss) * tokens
                    sums[row, 1] += tokens
    ddp.all_reduce_sum(sums)
    result: dict[str, Any] = {
        "loss": float(sums[:, 0].sum() / sums[:, 1].sum()) if sums[:, 1].sum() > 0 else None,
        "task_loss": {task: float(sums[row, 0] / sums[row, 1]) for row, task in enumerate(tasks) if sums[row, 1] > 0},
    }
    if settings.generation is not None and settings.generation.metrics:
        with whole_model(model):  # a sharded model generates whole on rank 0 alone
            if ddp.is_main:
                result["generation"] = generation_metrics(model, pool, settings)
        ddp.barrier()
    model.train(was_training)
    return result


def generation_metrics(model: Any, pool: dict[str, list[Any]], settings: EvalSection) -> dict[str, Any]:
    """Generate for up to N examples (spread over the tasks) and score them with radscribe.evaluate.

    A metric that cannot run here is recorded with its reason instead of a number, never replaced.
    """
    from radscribe.evaluate import MetricUnavailable, create_scorer

    generation = settings.generation
    tasks = [t for t in (generation.tasks or sorted(pool)) if t in pool]
    examples: list[Any] = []
    for offset in range(max((len(pool[t]) for t in tasks), default=0)):
        examples.extend(pool[t][offset] for t in tasks if offset < len(pool[t]))
        if len(examples) >= generation.max_examples:
            break
    examples = examples[: generation.max_examples]
    if not examples:
        return {}
    # The same prompt as in training: the task token included.
    hypotheses = model.generate(
        [e.images[0] for e in examples], [e.prompt for e in examples], max_new_tokens=generation.max_new_tokens,
        tasks=[e.task for e in examples],
    )
    references = [e.target for e in examples]
    out: dict[str, Any] = {"examples": len(examples)}
    for name in generation.metrics:
        try:
            for score in create_scorer(name).compute_score(references, hypotheses):
                out[score.key] = score.value
        except MetricUnavailable as error:
            out[name] = f"unavailable: {error}"
    return out
