"""Reference-report retrieval for S2D-Align stage 2: the nearest training report by image embedding.

The index holds one L2-normalised embedding per training study (``model.image_embeddings`` of its
first image) with its report; a query returns the most cosine-similar study that is neither the
study itself nor another study of the same patient, so a prompt never leaks its own report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radscribe.types import Study

REFERENCE_HEADER = "Reference report of a similar study:"


def with_reference(prompt: str, report: str, max_chars: int | None = None) -> str:
    """The stage-2 prompt: the retrieved report first (cut at a line end to ``max_chars``), then the task's prompt.

    The cut keeps prompt plus target inside the model's context: a reference report as long as the
    target would otherwise push the target out of it.
    """
    report = report.strip()
    if max_chars is not None and len(report) > max_chars:
        cut = report.rfind("\n", 0, max_chars + 1)
        report = report[: cut if cut > 0 else max_chars].rstrip()
    return f"{REFERENCE_HEADER}\n{report}\n\n{prompt}"


def study_report(study: Study) -> str:
    """The report a study contributes as a reference: its structured report, else its free text."""
    return (study.structured or study.report_text or "").strip()


@dataclass
class Neighbour:
    study_id: str
    report: str
    similarity: float


class ReferenceIndex:
    def __init__(self, embeddings: np.ndarray, study_ids: Sequence[str], patient_ids: Sequence[str | None], reports: Sequence[str]):
        if not len(study_ids) == len(patient_ids) == len(reports) == len(embeddings):
            raise ValueError("embeddings, study ids, patient ids and reports must have one entry per study")
        if len(study_ids) == 0:
            raise ValueError("a reference index needs at least one training study with a report")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)
        self.study_ids = list(study_ids)
        self.patient_ids = [p or "" for p in patient_ids]
        self.reports = list(reports)

    @classmethod
    def build(cls, model: Any, studies: Sequence[Study], batch_size: int = 32) -> ReferenceIndex:
        """Embed the first image of every study that has a report."""
        usable = [s for s in studies if s.images and study_report(s)]
        embeddings = embed_studies(model, usable, batch_size)
        return cls(embeddings, [s.id for s in usable], [s.patient_id for s in usable], [study_report(s) for s in usable])

    def nearest(self, embedding: np.ndarray, study_id: str | None = None, patient_id: str | None = None) -> Neighbour | None:
        query = np.asarray(embedding, dtype=np.float32).reshape(-1)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        similarity = self.embeddings @ query
        excluded = np.array(
            [sid == study_id or (bool(patient_id) and pid == patient_id) for sid, pid in zip(self.study_ids, self.patient_ids)]
        )
        similarity = np.where(excluded, -np.inf, similarity)
        best = int(np.argmax(similarity))
        if not np.isfinite(similarity[best]):
            return None
        return Neighbour(self.study_ids[best], self.reports[best], float(similarity[best]))

    def assign(self, model: Any, studies: Sequence[Study], batch_size: int = 32) -> dict[str, Neighbour]:
        """The nearest training report for each study (training or validation) with an image."""
        with_images = [s for s in studies if s.images]
        embeddings = embed_studies(model, with_images, batch_size)
        out = {}
        for study, embedding in zip(with_images, embeddings):
            neighbour = self.nearest(embedding, study.id, study.patient_id)
            if neighbour is not None:
                out[study.id] = neighbour
        return out

    def save(self, path: Path | str) -> None:
        from radscribe.data.manifest import atomic_write

        with atomic_write(path, "wb") as handle:
            np.savez(
                handle,
                embeddings=self.embeddings,
                study_ids=np.array(self.study_ids, dtype=str),
                patient_ids=np.array(self.patient_ids, dtype=str),
                reports=np.array(self.reports, dtype=str),
            )

    @classmethod
    def load(cls, path: Path | str) -> ReferenceIndex:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["embeddings"], data["study_ids"].tolist(), data["patient_ids"].tolist(), data["reports"].tolist())

    def __len__(self) -> int:
        return len(self.study_ids)


def embed_studies(model: Any, studies: Sequence[Study], batch_size: int) -> np.ndarray:
    import torch

    chunks = []
    with torch.no_grad():
        for start in range(0, len(studies), batch_size):
            paths = [Path(s.images[0].path) for s in studies[start : start + batch_size]]
            chunks.append(model.image_embeddings(paths).detach().float().cpu().numpy())
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 1), dtype=np.float32)
