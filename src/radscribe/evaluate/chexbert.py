"""CheXbert report labeler from LOCAL weights only (radscribe never downloads them).

Architecture (Smit et al. 2020, as used by f1chexbert/RadEval): a BERT encoder, dropout, and 14 linear
heads on the [CLS] hidden state; 13 condition heads with 4 classes (0 blank, 1 positive, 2 negative,
3 uncertain) and a No Finding head with 2 classes (0 blank, 1 positive). Heads are in CheXbert's own
order (Lung Opacity before Lung Lesion, No Finding last) and are mapped to CheXpert order by name.

The checkpoint is the usual ``chexbert.pth`` (``{"model_state_dict": {"module.bert...": ...}}``) or a
plain/safetensors state dict. The BERT configuration is read from a ``config.json`` beside the
weights when present, else inferred from tensor shapes (64-dimensional attention heads, as in
bert-base-uncased). The tokenizer (bert-base-uncased's ``vocab.txt`` or ``tokenizer.json``) must be a
local folder, by default the weights' folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radscribe.evaluate.base import MetricUnavailable
from radscribe.evaluate.clinical import LabelMatrix
from radscribe.labeling import CHEXPERT_OBSERVATIONS

CHEXBERT_ORDER: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
    "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices", "No Finding",
)
# Head class index -> CheXpert value (NaN = blank / not mentioned).
CLASS_VALUES: tuple[float, ...] = (math.nan, 1.0, 0.0, -1.0)
MAX_TOKENS = 512


def _load_state_dict(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    return {key.removeprefix("module."): value for key, value in state.items()}


def _bert_config(state: dict[str, Any], folder: Path) -> Any:
    from transformers import BertConfig

    config_file = folder / "config.json"
    if config_file.exists():
        return BertConfig(**json.loads(config_file.read_text(encoding="utf-8")))
    vocab_size, hidden = state["bert.embeddings.word_embeddings.weight"].shape
    layers = {int(m.group(1)) for key in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", key))}
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["bert.embeddings.token_type_embeddings.weight"].shape[0],
    )


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer, BertTokenizerFast

    if (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if (folder / "vocab.txt").exists():
        return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    raise MetricUnavailable(f"no CheXbert tokenizer in {folder}: expected bert-base-uncased's vocab.txt or tokenizer.json there")


def clean_report(text: str) -> str:
    """CheXbert's input cleaning: one line, single spaces."""
    return re.sub(r"\s+", " ", text.replace("\n", " ")).strip()


class CheXbertLabeler:
    """Labels report texts with a local CheXbert checkpoint; returns a :class:`LabelMatrix` in CheXpert order."""

    def __init__(self, weights: Path | str, tokenizer: Path | str | None = None, batch_size: int = 16):
        try:
            import torch
            from transformers import BertModel
        except ImportError as error:
            raise MetricUnavailable(f"CheXbert needs torch and transformers (pip install 'radscribe[model]'): {error}") from None
        weights = Path(weights)
        if not weights.is_file():
            raise MetricUnavailable(f"CheXbert weights not found: {weights}")
        state = _load_state_dict(weights)
        config = _bert_config(state, weights.parent)
        head_keys = sorted((k for k in state if re.fullmatch(r"linear_heads\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
        if len(head_keys) != len(CHEXBERT_ORDER):
            raise MetricUnavailable(f"{weights}: expected {len(CHEXBERT_ORDER)} linear heads, found {len(head_keys)}")

        class CheXbert(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = BertModel(config, add_pooling_layer="bert.pooler.dense.weight" in state)
                self.dropout = torch.nn.Dropout(0.1)
                self.linear_heads = torch.nn.ModuleList(
                    torch.nn.Linear(config.hidden_size, state[key].shape[0]) for key in head_keys
                )

            def forward(self, input_ids: Any, attention_mask: Any) -> list[Any]:
                cls = self.dropout(self.bert(input_ids=input_ids, attention_mask=attention_mask)[0][:, 0, :])
                return [head(cls) for head in self.linear_heads]

        self.model = CheXbert()
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise MetricUnavailable(f"{weights} does not fit the CheXbert architecture: {error}") from None
        self.model.eval()
        self.tokenizer = _load_tokenizer(Path(tokenizer) if tokenizer else weights.parent)
        self.batch_size = batch_size

    def label(self, texts: Sequence[str]) -> LabelMatrix:
        import torch

        values = np.full((len(texts), len(CHEXPERT_OBSERVATIONS)), np.nan)
        columns = [CHEXPERT_OBSERVATIONS.index(name) for name in CHEXBERT_ORDER]
        for start in range(0, len(texts), self.batch_size):
            batch = [clean_report(text) for text in texts[start : start + self.batch_size]]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(encoded["input_ids"], encoded["attention_mask"])
            for head, column in enumerate(columns):
                classes = logits[head].argmax(dim=1).tolist()
                values[start : start + len(batch), column] = [CLASS_VALUES[c] for c in classes]
        return LabelMatrix(values)
