"""A tiny stand-in for the radscribe.models contract, used by the trainer tests.

It keeps only what the trainer relies on: collate() -> batch dict with HF-style labels (-100 on
prompt and padding, shifted inside the model), forward(**batch).loss/.logits, image_embeddings,
generate, save_pretrained. Characters are tokens; an image is its 4x4 average-pooled pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from radscribe.train import Datasets, SplitData
from radscribe.types import ImageRef, Study

VOCAB = 96


@dataclass(frozen=True)
class StandInExample:
    task: str
    study_id: str
    images: tuple[Path, ...]
    prompt: str
    target: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Output:
    loss: torch.Tensor
    logits: torch.Tensor


def _tokens(text: str) -> list[int]:
    return [ord(c) % VOCAB for c in text]


def _image_features(path: Path) -> torch.Tensor:
    image = Image.open(path).convert("L").resize((4, 4), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).reshape(16)


class TinyVLM(nn.Module):
    codec_name = "radscribe"

    def __init__(self, memory_slots: int = 0, width: int = 16):
        super().__init__()
        self.memory_slots = memory_slots
        self.embed = nn.Embedding(VOCAB, width)
        self.vision = nn.Linear(16, width)
        self.memory = nn.Parameter(torch.randn(memory_slots, width) * 0.02) if memory_slots else None
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB)

    def collate(self, examples, with_targets: bool = True) -> dict[str, torch.Tensor]:
        rows, labels = [], []
        for example in examples:
            prompt, target = _tokens(example.prompt), _tokens(example.target)
            rows.append(prompt + target)
            labels.append([-100] * len(prompt) + target)
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        label_tensor = torch.full((len(rows), length), -100, dtype=torch.long)
        for i, (row, label) in enumerate(zip(rows, labels)):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            label_tensor[i, : len(label)] = torch.tensor(label)
        pixels = torch.stack([_image_features(e.images[0]) for e in examples])
        return {"input_ids": ids, "attention_mask": mask, "labels": label_tensor, "pixel_values": pixels}

    def forward(self, input_ids, attention_mask, pixel_values, labels=None) -> Output:
        hidden = self.embed(input_ids) + self.vision(pixel_values)[:, None, :]
        if self.memory is not None:
            hidden = hidden + self.memory.mean(dim=0)
        positions = torch.arange(1, input_ids.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
        hidden = torch.tanh(self.mix(hidden.cumsum(dim=1) / positions))  # causal: a running mean
        logits = self.head(hidden)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return Output(loss=loss, logits=logits)

    def image_embeddings(self, images) -> torch.Tensor:
        return self.vision(torch.stack([_image_features(Path(p)) for p in images]))

    def generate(self, images, prompts, max_new_tokens: int = 8, **_: Any) -> list[str]:
        out = []
        for image, prompt in zip(images, prompts):
            ids = _tokens(prompt)
            pixels = _image_features(Path(image))[None]
            for _ in range(max_new_tokens):
                batch = torch.tensor([ids])
                logits = self(batch, torch.ones_like(batch), pixels).logits
                ids.append(int(logits[0, -1].argmax()))
            out.append("".join(chr(i + 32) for i in ids[len(_tokens(prompt)) :]))
        return out

    def freeze_vision(self) -> None:
        self.vision.requires_grad_(False)

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), folder / "weights.pt")
        (folder / "config.json").write_text(json.dumps({"memory_slots": self.memory_slots}))


def tiny_factory(name: str, **overrides: Any) -> TinyVLM:
    return TinyVLM(**overrides)


FINDINGS = ["no curve", "mild curve left", "curve right at T8", "severe curve", "straight spine"]


def make_split(folder: Path, split: str, count: int, seed: int, same_patient_pairs: bool = False) -> SplitData:
    """Studies with small random images and short reports; examples of two tasks per study."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    studies, examples = [], []
    for index in range(count):
        path = folder / f"{split}-{index}.png"
        Image.fromarray(rng.integers(0, 255, size=(12, 8), dtype=np.uint8), mode="L").save(path)
        report = FINDINGS[index % len(FINDINGS)]
        patient = f"{split}-p{index // 2}" if same_patient_pairs else None
        study = Study(id=f"{split}-{index}", images=[ImageRef(str(path))], split=split, patient_id=patient,
                      report={"findings": report})
        studies.append(study)
        examples.append(StandInExample("report", study.id, (path,), "Describe the spine.", report))
        examples.append(StandInExample("region", study.id, (path,), "Apex?", report.split()[-1]))
    return SplitData(studies=studies, examples=examples)


def make_datasets(folder: Path, train: int = 12, valid: int = 4) -> Datasets:
    return Datasets(train=make_split(folder, "train", train, 0), valid=make_split(folder, "valid", valid, 1))
