"""Grammar-constrained decoding with a 152k-token vocabulary: xgrammar (the grammar extra) vs today's path.

The vocabulary is synthetic, built offline at Qwen2.5's size (152,064 ids): the 256 byte-level
tokens, every word and word pair of the shipped templates and the tiny-checkpoint report sentences
(with and without the byte-level leading space), then random letter strings of 2-10 characters
(Qwen's typical token lengths) up to the full size, in a byte-level BPE ``PreTrainedTokenizerFast``.
Only token texts matter to both constrainers; a BPE trained on the report text we have here would
stop far short of 152k merges.

Measured, for the spine-ap-alignment template's grammar:
- set-up: xgrammar's tokenizer info + EBNF export + grammar compile, against radscribe's
  ``Vocabulary`` (token texts and trie) + ``TokenConstraint``;
- per-token mask cost over one decode of ``STEPS`` tokens driven by random logits (the same seed for
  both; argmax of the masked logits), cold (the first report: radscribe walks the trie on each new
  grammar state) and warm (a second decode with the same constraint).

    python benchmarks/grammar_large_vocab.py     # about 5 minutes on 2 cores
"""

from __future__ import annotations

import random
import string
import time

import torch

from provenance import write_result
from radscribe.infer import ConstrainedLogitsProcessor, TokenConstraint, template_grammar
from radscribe.infer.grammar_export import to_ebnf
from radscribe.infer.tokens import SpanTokenizer, Vocabulary, token_texts
from radscribe.models.checkpoints import CORPUS
from radscribe.templates import load_template

VOCAB_SIZE = 152_064
STEPS = 120
TEMPLATE = "spine-ap-alignment"


def synthetic_tokenizer(size: int = VOCAB_SIZE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel.alphabet()
    space = "\u0120"  # the byte-level form of " "
    text = " ".join(CORPUS) + " " + " ".join(slot.prefix for slot in load_template(TEMPLATE).slots())
    words = sorted(set(text.replace("\n", " ").split()))
    vocab: dict[str, int] = {}
    for token in sorted(byte_level):
        vocab.setdefault(token, len(vocab))
    for word in words:
        for form in (word, space + word):
            vocab.setdefault(form, len(vocab))
    rng = random.Random(0)
    letters = string.ascii_letters + string.digits
    while len(vocab) < size - 1:
        piece = "".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
        vocab.setdefault(piece if rng.random() < 0.5 else space + piece, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def decode(step_mask, vocab: int, seed: int) -> tuple[list[float], int]:
    """Greedy decode on random logits through ``step_mask(ids, logits) -> logits``; per-token seconds."""
    generator = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    times = []
    for _ in range(STEPS):
        logits = torch.randn(1, vocab, generator=generator)
        start = time.perf_counter()
        masked = step_mask(ids, logits)
        times.append(time.perf_counter() - start)
        token = int(masked.argmax())
        if not torch.isfinite(masked[0, token]):
            break
        ids.append(token)
    return times, len(ids)


def main() -> None:
    import xgrammar

    torch.set_num_threads(1)
    tokenizer = synthetic_tokenizer()
    eos = [tokenizer.eos_token_id]
    vocab = len(tokenizer)
    grammar = template_grammar(TEMPLATE)
    result = {"vocab_size": vocab, "template": TEMPLATE, "steps": STEPS, "vocabulary": "synthetic byte-level BPE (see docstring)"}

    # --- xgrammar ----------------------------------------------------------------------------
    start = time.perf_counter()
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=eos)
    info_s = time.perf_counter() - start
    start = time.perf_counter()
    ebnf = to_ebnf(grammar)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False).compile_grammar(ebnf)
    compile_s = time.perf_counter() - start

    def xgrammar_run(seed: int) -> tuple[list[float], int]:
        matcher = xgrammar.GrammarMatcher(compiled)
        bitmask = xgrammar.allocate_token_bitmask(1, vocab)

        def step(ids, logits):
            if ids:
                matcher.accept_token(ids[-1])
            matcher.fill_next_token_bitmask(bitmask, 0)
            xgrammar.apply_token_bitmask_inplace(logits, bitmask)
            return logits

        return decode(step, vocab, seed)

    x_cold, x_tokens = xgrammar_run(0)
    x_warm, _ = xgrammar_run(0)
    result["xgrammar"] = {
        "tokenizer_info_s": round(info_s, 3), "ebnf_export_s": round(export_s, 3), "compile_s": round(compile_s, 3),
        "tokens": x_tokens, "per_token_ms_cold": round(1e3 * sum(x_cold) / len(x_cold), 3),
        "per_token_ms_warm": round(1e3 * sum(x_warm) / len(x_warm), 3), "ebnf_chars": len(ebnf),
    }
    print("xgrammar", result["xgrammar"], flush=True)

    # --- today's path --------------------------------------------------------------------------
    start = time.perf_counter()
    vocabulary = Vocabulary(token_texts(tokenizer), eos, SpanTokenizer(tokenizer))
    constraint = TokenConstraint(grammar, vocabulary)
    setup_s = time.perf_counter() - start

    def radscribe_run(seed: int) -> tuple[list[float], int]:
        processor = ConstrainedLogitsProcessor(constraint, 4000)

        def step(ids, logits):
            return processor(torch.tensor([[0] + ids]), logits)

        return decode(step, vocab, seed)

    r_cold, r_tokens = radscribe_run(0)
    r_warm, _ = radscribe_run(0)
    result["radscribe"] = {
        "vocabulary_and_constraint_s": round(setup_s, 3), "tokens": r_tokens,
        "per_token_ms_cold": round(1e3 * sum(r_cold) / len(r_cold), 3), "per_token_ms_warm": round(1e3 * sum(r_warm) / len(r_warm), 3),
        "slowest_token_ms_cold": round(1e3 * max(r_cold), 1),
    }
    print("radscribe", result["radscribe"], flush=True)
    write_result("grammar_large_vocab", result)


if __name__ == "__main__":
    main()
