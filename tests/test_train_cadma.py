"""The trainer with the real radscribe-tiny-test model on real CADMA spine studies (skipped without the data)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO

pytest.importorskip("transformers")

# the smoke recipe's stages, two steps each, on short sequences: a test of the plumbing, kept short
SHORT_STAGES = (
    "[{name: pairing, kind: pairing, steps: 2}, {name: reference, kind: reference, steps: 2, reference_max_chars: 200},"
    " {name: grounding, kind: grounding, steps: 2, reference_max_chars: 200,"
    " tasks: {structured_report: 1, phrase_grounding: 1, region: 0.5}}]"
)


@pytest.fixture(scope="module")
def spine_manifest(tmp_path_factory):
    from conftest import shared_path
    from radscribe.annotate import annotate_spine_manifest
    from radscribe.data import read_manifest, write_manifest
    from radscribe.data.importers.base import import_dataset

    source = shared_path("spine-cadma")
    folder = tmp_path_factory.mktemp("cadma")
    import_dataset("cadma", source, folder / "all.jsonl")
    studies = read_manifest(folder / "all.jsonl")
    subset = [s for s in studies if s.split == "train"][:12] + [s for s in studies if s.split == "valid"][:4]
    write_manifest(subset, folder / "cadma.jsonl")
    annotate_spine_manifest(folder / "cadma.jsonl", folder / "spine.jsonl")
    assert len(read_manifest(folder / "spine.jsonl")) == 16
    return folder / "spine.jsonl"


def test_the_loss_is_a_token_mean_so_split_batches_weight_by_target_tokens(spine_manifest):
    """The contract the DDP/accumulation weighting relies on, checked on the real model."""
    from radscribe.data import read_manifest
    from radscribe.models import create_model
    from radscribe.tasks import build_examples
    from radscribe.train.data import count_loss_tokens

    model = create_model("radscribe-tiny-test", device="cpu").eval()
    studies = read_manifest(spine_manifest)[:4]
    examples = build_examples(studies, spine_manifest.parent, ["region", "phrase_grounding"], model.codec_name)[:4]
    with torch.no_grad():
        whole = model(**model.collate(examples)).loss.item()
        halves = [model.collate(examples[:2]), model.collate(examples[2:])]
        counts = [count_loss_tokens(b) for b in halves]
        weighted = sum(model(**b).loss.item() * n for b, n in zip(halves, counts)) / sum(counts)
    assert counts[0] != counts[1]  # unequal halves: a plain mean of the two losses would differ
    assert weighted == pytest.approx(whole, abs=1e-5)


def test_radscribe_train_runs_the_curriculum_on_cadma_and_resumes(spine_manifest, tmp_path):
    from radscribe.cli.main import app

    run = tmp_path / "run"
    args = ["train", str(REPO / "configs" / "smoke-spine.yaml"), "--run-dir", str(run),
            "--set", f"data.train={spine_manifest}", "--set", f"data.valid={spine_manifest}",
            "--set", "optim.batch_size=2", "--set", "eval.max_examples_per_task=2", "--set", f"stages={SHORT_STAGES}",
            "--set", "model.overrides={max_length: 160}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if r["kind"] == "stage"] == ["pairing", "reference", "grounding"]
    assert set(records[-1]["task_loss"]) == {"structured_report", "phrase_grounding", "region"}
    references = json.loads((run / "references.json").read_text())
    assert all(n["study_id"] != sid and n["report"].startswith("# Spine AP alignment") for sid, n in references.items())
    assert (run / "final" / "model.safetensors").exists() and (run / "loss_curve.png").exists()

    again = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert again.exit_code == 0, again.output
    assert json.loads((run / "result.json").read_text())["steps"] == 6

    refused = CliRunner().invoke(app, ["train", str(REPO / "configs" / "smoke-spine.yaml"), "--run-dir", str(run)])
    assert refused.exit_code == 1 and "--resume" in refused.output


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(spine_manifest, tmp_path):
    from radscribe.cli.main import app
    from radscribe.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint

    recipe = str(REPO / "configs" / "smoke-spine.yaml")
    settings = ["--set", f"data.train={spine_manifest}", "--set", f"data.valid={spine_manifest}",
                "--set", "optim.batch_size=2", "--set", "eval.max_examples_per_task=2", "--set", "checkpoint.every=1",
                "--set", "model.overrides={max_length: 96}", "--set", "stages=[{name: only, kind: pairing, steps: 6}]"]
    straight = CliRunner().invoke(app, ["train", recipe, "--run-dir", str(tmp_path / "straight"), *settings])
    assert straight.exit_code == 0, straight.output

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "radscribe.cli.main", "train", recipe, "--run-dir", str(killed), *settings],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list_checkpoints(killed) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list_checkpoints(killed) and not (killed / "result.json").exists(), "the kill must land mid-run"

    resumed = CliRunner().invoke(app, ["train", "--resume", str(killed)])
    assert resumed.exit_code == 0, resumed.output
    expected = load_checkpoint(latest_checkpoint(tmp_path / "straight"))["model"]
    got = load_checkpoint(latest_checkpoint(killed))["model"]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)


def test_several_manifests_train_together_and_micro_batches_group_by_length(spine_manifest, tmp_path):
    from conftest import shared_path
    from radscribe.data import read_manifest, write_manifest
    from radscribe.data.importers.base import import_dataset
    from radscribe.train.data import load_split, micro_batches

    import_dataset("vqa-rad", shared_path("vqa-rad"), tmp_path / "all.jsonl")
    vqa = read_manifest(tmp_path / "all.jsonl")[:3]
    write_manifest([dataclasses.replace(study, split="train") for study in vqa], tmp_path / "vqa.jsonl")
    tasks = ["structured_report", "vqa"]
    both = load_split([spine_manifest, tmp_path / "vqa.jsonl"], tasks, "radscribe", "train")
    spine = load_split(spine_manifest, tasks, "radscribe", "train")
    assert len(both.studies) == len(spine.studies) + 3
    assert {e.task for e in both.examples} == {"structured_report", "vqa"}
    assert all(Path(image).is_absolute() for e in both.examples for image in e.images)

    batch = both.examples[:4] + [e for e in both.examples if e.task == "vqa"][:4]
    groups = micro_batches(batch, 2)
    assert sorted(map(id, batch)) == sorted(id(e) for g in groups for e in g)
    assert [{e.task for e in g} for g in groups] == [{"vqa"}, {"structured_report"}]
