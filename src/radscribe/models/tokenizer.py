"""The radscribe-tiny tokenizer: byte-level BPE trained on our own report corpus.

Byte-level BPE never meets an unknown character, so one tokenizer covers chest and spine reports,
VQA questions and markdown templates. The special tokens sit at fixed ids at the front of the
vocabulary (``<pad>`` = 0, ``<bos>`` = 1, ...), so a model config never depends on the corpus.
The `radscribe` box codec's tokens (``radscribe.grounding.LOCATION_TOKENS``: ``<loc_0>``..``<loc_255>``,
``<box>``, ``</box>``) are *added* tokens that are not "special": they survive
``decode(skip_special_tokens=True)``, which is what the grounding codec parses.

Training is deterministic for a given list of texts: the corpus is de-duplicated in order, and the
``tokenizers`` BPE trainer breaks frequency ties by lexical order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from radscribe.grounding import LOCATION_TOKENS

PAD, BOS, EOS, IMAGE, ANSWER = "<pad>", "<bos>", "<eos>", "<image>", "<answer>"
# The tasks with a control token of their own (at fixed ids: the vocabulary never changes for a new task).
TOKEN_TASKS: tuple[str, ...] = ("structured_report", "report", "grounded_report", "phrase_grounding", "vqa", "region")
TASK_TOKENS: tuple[str, ...] = tuple(f"<task_{task}>" for task in TOKEN_TASKS)
CONTROL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, IMAGE, ANSWER, *TASK_TOKENS)
DEFAULT_VOCAB_SIZE = 4096


# Tasks that share another task's control token: detected grounding is phrase grounding with a
# detector's boxes in the prompt (the token ids are fixed, so a new task reuses an existing one).
TASK_TOKEN_ALIASES: dict[str, str] = {"detected_grounding": "phrase_grounding"}


def task_token(task: str) -> str | None:
    """The control token for a task name, or None for a task the tokenizer has no token for."""
    token = f"<task_{TASK_TOKEN_ALIASES.get(task, task)}>"
    return token if token in TASK_TOKENS else None


def build_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (offline, deterministic)."""
    corpus = list(dict.fromkeys(text.strip() for text in texts if text and text.strip()))
    if not corpus:
        raise ValueError("build_tokenizer needs at least one non-empty text")
    grounding_tokens = tuple(LOCATION_TOKENS)
    reserved = len(CONTROL_TOKENS) + len(grounding_tokens)
    if vocab_size <= reserved + 256:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges: {reserved} reserved tokens + 256 bytes")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*CONTROL_TOKENS, *grounding_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in CONTROL_TOKENS])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in grounding_tokens])
    # The trainer registered the grounding tokens as special in memory; the serialised form records
    # them as plain added tokens (kept by decode), so rebuild from it: a fresh build then behaves
    # exactly like one loaded from tokenizer.json.
    return Tokenizer.from_str(tokenizer.to_str())


def tokenizer_corpus(data_root: Path | str | None = None, extra_texts: Sequence[str] = ()) -> list[str]:
    """The texts radscribe-tiny's tokenizer is trained on, in a fixed order.

    IU X-ray report sections and VQA-RAD questions and answers from ``data_root`` (the shared data
    folder; skipped when absent), then the skeleton and normal rendering of every shipped template,
    then ``extra_texts``.
    """
    texts: list[str] = []
    if data_root is not None:
        root = Path(data_root)
        reports = root / "iu-xray-reports" / "reports.jsonl"
        if reports.exists():
            with reports.open(encoding="utf-8") as handle:
                for line_number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{reports}:{line_number}: not valid JSON ({error})") from None
                    texts.extend(str(record.get(key) or "") for key in ("indication", "findings", "impression"))
        vqa = root / "vqa-rad" / "trainset.json"
        if vqa.exists():
            for item in json.loads(vqa.read_text(encoding="utf-8")):
                texts.extend((str(item.get("question", "")), str(item.get("answer", ""))))
    texts.extend(template_texts())
    texts.extend(extra_texts)
    return texts


def template_texts() -> list[str]:
    """Skeleton and normal rendering of every shipped template (empty until radscribe.templates exists)."""
    try:
        from radscribe.templates import list_templates, load_template, render
    except ImportError:
        return []
    texts = []
    for name in list_templates():
        template = load_template(name)
        texts.append(template.skeleton())
        texts.append(render(template.normal()))
    return texts


def save_tokenizer(tokenizer: Tokenizer, folder: Path | str) -> Path:
    from radscribe.data.manifest import atomic_write

    path = Path(folder) / "tokenizer.json"
    with atomic_write(path) as handle:
        handle.write(tokenizer.to_str(pretty=True))
    return path


def load_tokenizer(folder_or_file: Path | str) -> Tokenizer:
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no tokenizer file (expected tokenizer.json written by save_tokenizer)")
    tokenizer = Tokenizer.from_file(str(path))
    missing = [token for token in (*CONTROL_TOKENS, *LOCATION_TOKENS) if tokenizer.token_to_id(token) is None]
    if missing:
        raise ValueError(f"{path}: tokenizer lacks radscribe control or location tokens {missing}")
    return tokenizer
