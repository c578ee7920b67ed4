"""Training the BoxDetector on a tiny synthetic dataset (bright rectangles as vertebrae): samples, loss going down,
exact resume, scoring; and `radscribe annotate spine --detect` with a saved detector feeding `radscribe serve import`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")

from radscribe.data.manifest import write_manifest  # noqa: E402
from radscribe.models.detector import BoxDetector, DetectorConfig  # noqa: E402
from radscribe.train import checkpoint as ckpt  # noqa: E402
from radscribe.train.detector import _batch, detection_loss, load_detector_recipe, load_samples, score_detections, train_detector  # noqa: E402
from radscribe.types import Box, ImageRef, Study  # noqa: E402

TINY = {"name": "tiny-detector", "input_size": [64, 128], "neck_channels": 16, "frozen_stages": 0}


def synthetic_manifest(folder: Path, count: int = 4, seed: int = 0) -> Path:
    """Films (160 x 80) with a column of four bright rectangles, each a labelled vertebra; one 'disc' box each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    studies = []
    for index in range(count):
        pixels = (rng.random((160, 80)) * 40).astype(np.uint8)
        x0 = int(rng.integers(15, 40))
        boxes = []
        for row in range(4):
            y0 = 20 + row * 32 + int(rng.integers(0, 6))
            pixels[y0 : y0 + 20, x0 : x0 + 26] = 220
            boxes.append(Box.from_pixels("vertebra", (x0, y0, x0 + 26, y0 + 20), 80, 160, source="synthetic"))
        boxes.append(Box.from_pixels("disc", (x0, 5, x0 + 26, 12), 80, 160, source="synthetic"))
        Image.fromarray(pixels).save(folder / f"film{index}.png")
        studies.append(Study(f"film{index}", [ImageRef(f"film{index}.png", 80, 160)], split="train" if index else "valid", boxes=boxes))
    write_manifest(studies, folder / "m.jsonl")
    return folder / "m.jsonl"


def test_load_samples_keeps_the_split_and_the_detector_labels(tmp_path):
    manifest = synthetic_manifest(tmp_path / "data")
    train = load_samples([str(manifest)], "train", ["vertebra"], None)
    assert [s.study_id for s in train] == ["film1", "film2", "film3"]
    assert all(len(s.boxes) == 4 and {b.label for b in s.boxes} == {"vertebra"} for s in train)
    assert train[0].pixels.dtype == np.uint8 and train[0].pixels.shape == (160, 80)
    assert len(load_samples([str(manifest)], None, ["vertebra"], 2)) == 2


def test_scores_count_matches_at_iou_05_and_07():
    truth = [[Box("vertebra", 0.1, 0.1, 0.3, 0.3), Box("vertebra", 0.1, 0.5, 0.3, 0.7)]]
    assert score_detections(truth, truth)["f1_iou70"] == 1.0
    shifted = [[Box("vertebra", 0.1, 0.13, 0.3, 0.33), Box("vertebra", 0.6, 0.6, 0.8, 0.8)]]  # IoU 0.74, and a miss
    scores = score_detections(shifted, truth)
    assert scores["precision_iou50"] == scores["recall_iou50"] == 0.5 and scores["f1_iou70"] == 0.5
    assert scores["matched_iou"] == pytest.approx(0.2 * 0.17 / (2 * 0.04 - 0.2 * 0.17))
    assert scores["count_error"] == 0.0


@pytest.mark.slow  # about twenty optimiser steps
def test_a_few_steps_on_the_same_films_reduce_the_loss(tmp_path):
    torch.manual_seed(0)
    config = DetectorConfig.from_dict(TINY)
    model = BoxDetector.create(config, pretrained=False).to(memory_format=torch.channels_last)
    samples = load_samples([str(synthetic_manifest(tmp_path / "data"))], "train", ["vertebra"], None)
    pixels, targets = _batch(samples, config, None, seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(20):
        loss, parts = detection_loss(model(pixels), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(parts) == {"heatmap", "giou"}


def recipe_file(tmp_path: Path, manifest: Path, steps: int) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "kind: detector\n"
        f"model: {{name: tiny-detector, input_size: [64, 128], neck_channels: 16, frozen_stages: 0}}\n"
        "pretrained: false\n"
        f"data: {{train: ['{manifest}'], valid: ['{manifest}']}}\n"
        f"optim: {{lr: 0.003, batch_size: 2, max_steps: {steps}, warmup_steps: 1}}\n"
        f"eval: {{every: {steps}, thresholds: [0.1, 0.3]}}\n"
        "checkpoint: {every: 2, keep_last: 5}\n"
    )
    return path


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow  # two short training runs with augmentation
def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(tmp_path):
    torch.set_num_threads(1)
    manifest = synthetic_manifest(tmp_path / "data")
    recipe = load_detector_recipe(recipe_file(tmp_path, manifest, steps=4))
    assert recipe.augment.enabled
    whole = tmp_path / "whole"
    result = train_detector(recipe, whole)
    assert result["steps"] == 4 and result["best"]["step"] == 4 and (whole / "best" / "detector.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train_detector(recipe, whole)

    # the same run stopped after its step-2 checkpoint, then resumed
    stopped = tmp_path / "stopped"
    shutil.copytree(whole, stopped)
    for path in ckpt.list_checkpoints(stopped):
        if path.name.endswith("4"):
            shutil.rmtree(path)
    shutil.rmtree(stopped / "final")
    (stopped / "result.json").unlink()
    assert ckpt.latest_checkpoint(stopped).name == "step-00000002"
    resumed = train_detector(recipe, stopped, resume=True)
    assert resumed["steps"] == 4
    final, again = weights(whole / "final"), weights(stopped / "final")
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)
    loaded = BoxDetector.from_pretrained(stopped / "final")
    assert loaded.config.name == "tiny-detector"


@pytest.mark.slow  # loads a detector and runs it on four films
def test_annotate_detect_with_a_saved_detector_then_serve_import(tmp_path):
    from typer.testing import CliRunner

    from radscribe.cli.main import app
    from radscribe.serve import Storage

    torch.manual_seed(0)
    config = DetectorConfig.from_dict({**TINY, "score_threshold": 0.005, "max_detections": 12})
    model = BoxDetector.create(config, pretrained=False)
    detector = model.save_pretrained(tmp_path / "detector")
    synthetic_manifest(tmp_path / "films")
    runner = CliRunner()
    out = tmp_path / "proposals" / "M.jsonl"
    proposed = runner.invoke(app, ["annotate", "spine", "--detect", str(tmp_path / "films"), "--out", str(out), "--detector", str(detector)])
    assert proposed.exit_code == 0, proposed.output
    assert "of 4 images got proposed vertebrae" in " ".join(proposed.output.split())
    imported = runner.invoke(app, ["serve", "import", str(out), "--data-dir", str(tmp_path / "ws")])
    assert imported.exit_code == 0, imported.output
    storage = Storage(tmp_path / "ws")
    try:
        assert storage.count_studies() == 4
        drafts = [storage.latest_draft(study["id"]) for study in storage.studies()]
        assert {draft["model"] for draft in drafts} == {"tiny-detector"}
        assert all(box["source"] == "tiny-detector" and box["score"] >= 0.005 for d in drafts for box in d["document"]["boxes"])
    finally:
        storage.close()
