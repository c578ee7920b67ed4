"""Our own constrained decoding loop: the model runs only where the grammar leaves it a choice.

transformers' ``generate`` runs the model once per output token, fixed template text included. A
structured report is mostly fixed text, so this loop drives :class:`~radscribe.infer.constraint.RowCursor`
itself, over the backbone's KV cache:

1. one prefill pass per batch (images + prompts, left-padded, as ``generate`` does);
2. per row, the cursor writes the fixed text that comes next with the tokenizer's own ids; when
   only one token is allowed it is taken without asking the model;
3. one forward pass then feeds every row's new ids at once (the last choice plus any fixed text, as
   one chunk per row) and gives each row the logits for its next choice;
4. greedy rows also feed a short guess of what follows (:class:`DraftMemory`: prompt lookup in the
   row and in earlier outputs of the same grammar); every later choice the model agrees with is made
   from that same pass. Guesses never change the output, only the number of passes.

Rows move at different paces: each step's chunks are left-padded to the longest, and padding stays
masked out of the cache for good (a 2D attention mask over every cached position, with each row's
own position ids), so a row decodes as it would alone, up to float rounding. Ids the cursor
re-tokenises are dropped the same way (masked) and fed again. Finished rows leave the batch.

Supported for backbones whose language model takes plain 1D position ids after a left-padded
prefill (:data:`FAST_FAMILIES`); others run the same cursor through ``generate`` and
:class:`~radscribe.infer.hf_generate.ConstrainedLogitsProcessor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from radscribe.infer.constraint import RowCursor, TokenConstraint, check_budget

# radscribe-tiny and LLaVA: a Llava backbone whose decoder takes 1D RoPE positions. Qwen2.5-VL
# (3D multimodal positions) and PaliGemma (positions from 1, prefix attention) keep transformers' loop.
FAST_FAMILIES = frozenset({"radscribe", "llava"})
RUNAWAY_FACTOR = 2  # a row still open after this many times its token budget is stopped (never seen; a guard)
# Models up to this size decode on one intra-op thread: a pass per choice over a few rows is far too
# little work per operator to split, and on a shared 2-core CPU two threads made decoding 5x slower.
SINGLE_THREAD_PARAMETERS = 100_000_000
# Row-tokens one pass may feed (rows x width). A pass over a few rows costs about as much as reading
# the weights once; beyond this, padding and drafts cost compute instead of saving passes.
PASS_TOKENS = 48

LogitsHook = Callable[[int, RowCursor, torch.Tensor], torch.Tensor]


@dataclass
class DecodeStats:
    """What one :func:`generate_constrained` call did (totals over its rows)."""

    rows: int = 0
    forward_passes: int = 0          # decoding passes after the prefill
    written_tokens: int = 0          # ids in the outputs (fixed and chosen)
    model_choices: int = 0           # tokens picked from the model's logits
    single_choices: int = 0          # tokens taken because nothing else was allowed
    fed_tokens: int = 0              # ids fed through the model after the prefill (drafts and re-fed ones included)
    draft_tokens: int = 0            # drafted ids fed to check several choices in one pass
    dropped_tokens: int = 0          # ids dropped from the cache again (drafts the model disagreed with, re-tokenised text)

    def add(self, other: DecodeStats) -> None:
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Decoded:
    text: str
    ids: list[int]
    complete: bool   # the grammar reached its end (always, unless the runaway guard stopped the row)


@dataclass
class _Row:
    index: int
    cursor: RowCursor
    fed: list[int] = field(default_factory=list)       # generated ids in the cache, in order
    columns: list[int] = field(default_factory=list)   # their cache columns
    prompt_length: int = 0
    logits_after: dict[int, torch.Tensor] = field(default_factory=dict)  # next-token logits after fed[:n], by n
    prompt_logits: torch.Tensor | None = None          # ... after the prompt alone
    stopped: bool = False

    @property
    def finished(self) -> bool:
        return self.cursor.done or self.stopped


def supports_fast_decoding(model: Any) -> bool:
    return getattr(model, "family", None) in FAST_FAMILIES and hasattr(model, "collate")


@torch.inference_mode()
def generate_constrained(
    model: Any,
    images: Sequence[Any],
    prompts: Sequence[str],
    constraints: Sequence[TokenConstraint],
    max_new_tokens: int | Sequence[int],
    *,
    tasks: Sequence[str] | None = None,
    retokenize: bool = True,
    draft_tokens: int = 8,
    memory: DraftMemory | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    logits_hook: LogitsHook | None = None,
) -> tuple[list[Decoded], DecodeStats]:
    """One grammar-conforming output per prompt; row i follows ``constraints[i]``.

    ``images[i]``: one image or a sequence of images for prompt i (as :meth:`RadscribeVLM.generate`).
    Greedy unless ``temperature`` > 0. ``draft_tokens``: how many looked-up ids a pass may feed
    beyond a row's last choice to check later choices at once (greedy only; 0: off), from the row
    itself and from ``memory`` (pass the same :class:`DraftMemory` to every call: it learns the
    phrasing of earlier outputs); the output is the same either way. ``logits_hook(row, cursor, logits)`` may change a row's logits before its
    choice (tests use it to make the model pick reference values).
    """
    from radscribe.models.base import _Query
    from radscribe.models.image import as_radiograph

    count = len(prompts)
    if not (len(images) == len(constraints) == count):
        raise ValueError(f"generate_constrained got {len(images)} images and {len(constraints)} constraints for {count} prompts")
    if not supports_fast_decoding(model):
        raise ValueError(f"model family {getattr(model, 'family', '?')!r} has no fast constrained decoding; use generate + ConstrainedLogitsProcessor")
    budgets = [max_new_tokens] * count if isinstance(max_new_tokens, int) else list(max_new_tokens)
    for constraint, budget in zip(constraints, budgets):
        check_budget(constraint, budget)
    tasks = list(tasks) if tasks is not None else [""] * count
    queries = []
    for image, prompt, task in zip(images, prompts, tasks):
        group = image if isinstance(image, (list, tuple)) else (image,)
        queries.append(_Query(tuple(as_radiograph(item) for item in group), prompt, task))

    stats = DecodeStats(rows=count)
    rows = [_Row(i, RowCursor(constraint, budget, retokenize)) for i, (constraint, budget) in enumerate(zip(constraints, budgets))]
    memory = memory if memory is not None else DraftMemory()
    was_training = model.training
    threads = torch.get_num_threads()
    model.eval()
    try:
        if model.device.type == "cpu" and model.num_parameters() <= SINGLE_THREAD_PARAMETERS:
            torch.set_num_threads(1)
        with model.autocast():
            batch = model._to_device(model.collate(queries, with_targets=False))
            _decode(model, batch, rows, stats, _Chooser(temperature, generator, logits_hook), draft_tokens if temperature <= 0 else 0, memory)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    outputs = [Decoded(model.decode(row.cursor.ids), list(row.cursor.ids), row.cursor.done) for row in rows]
    for row in rows:
        if row.cursor.done:
            memory.add(row.cursor.constraint, row.cursor.ids)
    stats.written_tokens = sum(len(row.cursor.ids) for row in rows)
    return outputs, stats


def _decode(model, batch, rows: list[_Row], stats: DecodeStats, choose: _Chooser, draft_tokens: int, memory: DraftMemory) -> None:
    backbone = model.backbone
    device = batch["input_ids"].device
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    output = backbone(**batch, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = output.past_key_values
    for row, logits, length in zip(rows, output.logits[:, -1].float(), mask.sum(-1).tolist()):
        row.logits_after = {0: logits}
        row.prompt_logits = logits
        row.prompt_length = int(length)
    active = list(rows)
    while True:
        for row in active:
            _advance(row, stats, choose)
        keep = [i for i, row in enumerate(active) if not row.finished]
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask = mask[index]
            active = [active[i] for i in keep]
        mask, step, drafts = _feed(active, draft_tokens, memory, mask, device, model.pad_token_id, stats)
        keep_logits = 1 + max(len(draft) for draft in drafts)
        output = backbone(**step, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=keep_logits)
        stats.forward_passes += 1
        for row, draft, logits in zip(active, drafts, output.logits.float()):
            # Logits after each fed position from the chunk's last real id on (the draft follows it).
            first = len(row.fed) - len(draft)
            row.logits_after = {first + j: logits[keep_logits - 1 - len(draft) + j] for j in range(len(draft) + 1)}


class _Chooser:
    """Picks one allowed token from logits: greedy, or sampled at ``temperature``; ``hook`` may change the logits first."""

    def __init__(self, temperature: float, generator: torch.Generator | None, hook: LogitsHook | None):
        self.temperature = temperature
        self.generator = generator
        self.hook = hook

    def __call__(self, row: _Row, logits: torch.Tensor, allowed: np.ndarray) -> int:
        if self.hook is not None:
            logits = self.hook(row.index, row.cursor, logits)
        candidates = torch.from_numpy(allowed).to(logits.device)
        scores = logits[candidates]
        if self.temperature <= 0:
            return int(candidates[int(torch.argmax(scores))])
        probabilities = torch.softmax(scores / self.temperature, dim=-1)
        return int(candidates[int(torch.multinomial(probabilities.cpu(), 1, generator=self.generator))])


def _advance(row: _Row, stats: DecodeStats, choose: _Chooser) -> None:
    """Let the cursor write fixed text and take choices until it needs fresh logits (or is done).

    Logits are at hand after the prompt and after every position the last pass fed, so choices that
    agree with the fed draft go on without another pass.
    """
    cursor = row.cursor
    while cursor.prepare():
        if len(cursor.ids) > RUNAWAY_FACTOR * cursor.max_new_tokens:
            row.stopped = True
            return
        allowed = cursor.allowed()
        if len(allowed) == 0:
            raise RuntimeError(f"row {row.index}: the grammar allows no token after {cursor.text[-40:]!r} (pending {cursor.pending!r})")
        if len(allowed) == 1:
            cursor.choose(int(allowed[0]))
            stats.single_choices += 1
            continue
        written = len(cursor.ids)
        logits = row.logits_after.get(written) if written else row.prompt_logits
        if logits is None or (written and cursor.ids != row.fed[:written]):
            return
        cursor.choose(choose(row, logits, allowed))
        stats.model_choices += 1


class DraftMemory:
    """Recent complete outputs per grammar, indexed by their n-grams, for drafting.

    Prompt-lookup drafting guesses what comes next from where the last few ids occurred before: in
    the row itself (each curve in an impression restates the same phrases) and in the latest outputs
    of the same grammar (every report of a template shares its phrasing). A guess only saves passes
    when the model agrees with it; the output is the same with or without it.
    """

    NGRAMS = (3, 2)

    def __init__(self, outputs_per_grammar: int = 8):
        self.outputs_per_grammar = outputs_per_grammar
        self._outputs: dict[TokenConstraint, list[list[int]]] = {}
        self._index: dict[TokenConstraint, dict[tuple[int, ...], tuple[int, int]]] = {}

    def add(self, constraint: TokenConstraint, ids: Sequence[int]) -> None:
        outputs = self._outputs.setdefault(constraint, [])
        outputs.append(list(ids))
        del outputs[: -self.outputs_per_grammar]
        index: dict[tuple[int, ...], tuple[int, int]] = {}
        for number, output in enumerate(outputs):  # later outputs overwrite earlier ones: the latest wins
            for n in self.NGRAMS:
                for end in range(n, len(output)):
                    index[tuple(output[end - n : end])] = (number, end)
        self._index[constraint] = index

    def draft(self, constraint: TokenConstraint, ids: Sequence[int], limit: int) -> list[int]:
        """The ids that followed the longest recent match of the end of ``ids`` (at most ``limit``)."""
        if limit <= 0:
            return []
        index = self._index.get(constraint, {})
        outputs = self._outputs.get(constraint, [])
        for n in self.NGRAMS:
            if len(ids) <= n:
                continue
            tail = list(ids[-n:])
            for start in range(len(ids) - n - 1, -1, -1):  # the row itself, latest first
                if ids[start : start + n] == tail:
                    return list(ids[start + n : start + n + limit])
            found = index.get(tuple(tail))
            if found is not None and found[1] < len(outputs[found[0]]):
                number, end = found
                return outputs[number][end : end + limit]
        return []


def _feed(active: list[_Row], draft_tokens: int, memory: DraftMemory, mask: torch.Tensor, device, pad_id: int, stats: DecodeStats):
    """One chunk per row: ids the cache lacks, then a draft; left-padded to a common width.

    The width is capped so that a pass feeds at most about :data:`PASS_TOKENS` row-tokens: a row
    with more fixed text than that feeds the rest in later passes (it has no choice to make there
    anyway), and drafts only fill room that is left. Returns the grown mask, the step's inputs and
    each row's draft.
    """
    width_cap = max(1, PASS_TOKENS // len(active))
    chunks, drafts = [], []
    mask = mask.clone()
    for position, row in enumerate(active):
        ids = row.cursor.ids
        common = 0
        limit = min(len(ids), len(row.fed))
        while common < limit and ids[common] == row.fed[common]:
            common += 1
        if common == len(ids):
            common -= 1  # nothing new (ids were only taken back): feed the last one again for fresh logits
            # (ids is never empty here: with nothing written, the prompt's logits serve)
        dropped = len(row.fed) - common
        if dropped:
            mask[position, row.columns[common:]] = 0
            del row.fed[common:], row.columns[common:]
            stats.dropped_tokens += dropped
        chunk = ids[common : common + width_cap]
        room = min(draft_tokens, width_cap - len(chunk)) if len(chunk) == len(ids) - common else 0
        draft = memory.draft(row.cursor.constraint, ids, room)
        chunks.append(chunk + draft)
        drafts.append(draft)
        stats.draft_tokens += len(draft)
    width = max(len(chunk) for chunk in chunks)
    start = mask.shape[1]
    input_ids = torch.full((len(active), width), pad_id, dtype=torch.long)
    grown = torch.zeros((len(active), width), dtype=mask.dtype)
    positions = torch.zeros((len(active), width), dtype=torch.long)
    for position, (row, chunk) in enumerate(zip(active, chunks)):
        offset = width - len(chunk)
        first = row.prompt_length + len(row.fed)
        input_ids[position, offset:] = torch.tensor(chunk, dtype=torch.long)
        grown[position, offset:] = 1
        positions[position, :] = first
        positions[position, offset:] = torch.arange(first, first + len(chunk))
        row.columns += range(start + offset, start + width)
        row.fed += chunk
        stats.fed_tokens += len(chunk)
    mask = torch.cat([mask, grown.to(device)], dim=1)
    return mask, {"input_ids": input_ids.to(device), "position_ids": positions.to(device)}, drafts
