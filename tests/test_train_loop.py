"""The training loop on a tiny stand-in model: it learns, records, checkpoints and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from radscribe.train import config_from_dict, train
from radscribe.train.checkpoint import list_checkpoints
from train_standin import TinyVLM, make_datasets, tiny_factory


def recipe(**sections):
    raw = {
        "model": {"name": "stand-in"},
        "optim": {"lr": 0.05, "batch_size": 4, "grad_accum": 2, "warmup_steps": 2, "max_steps": 12},
        "data": {"tasks": {"report": 2.0, "region": 1.0}},
        "eval": {"every": 4, "max_examples_per_task": 4},
        "checkpoint": {"every": 3, "keep_last": 2},
        "logging": {"tensorboard": "off"},
        "seed": 7,
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(raw)


def parameters(model_dir):
    return torch.load(model_dir / "weights.pt", weights_only=True)


def test_training_lowers_the_loss_and_writes_the_run_folder(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    run = tmp_path / "run"
    result = train(recipe(), run, model_factory=tiny_factory, datasets=datasets)

    assert result.steps == 12 and not result.stopped_early
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert len(train_losses) == 12
    assert sum(train_losses[-3:]) / 3 < sum(train_losses[:3]) / 3
    assert [r["step"] for r in valid] == [4, 8, 12]
    assert set(valid[-1]["task_loss"]) == {"report", "region"}
    assert any(set(r["task_loss"]) == {"report", "region"} for r in records if r["kind"] == "train")
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in list_checkpoints(run)] == ["step-00000009", "step-00000012"]
    assert (run / "final" / "weights.pt").exists() and (run / "best" / "weights.pt").exists()
    saved = json.loads((run / "result.json").read_text())
    assert saved["steps"] == 12 and saved["best_valid_loss"] == min(r["loss"] for r in valid)


def test_a_run_stopped_midway_and_resumed_matches_an_uninterrupted_run(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    straight = train(recipe(), tmp_path / "straight", model_factory=tiny_factory, datasets=datasets)

    cut = tmp_path / "cut"
    interrupted = train(recipe(), cut, model_factory=tiny_factory, datasets=datasets, stop_at_step=5)
    assert interrupted.final_model is None and interrupted.steps == 5
    resumed = train(recipe(), cut, resume=True, model_factory=tiny_factory, datasets=datasets)

    assert resumed.steps == 12
    expected, got = parameters(straight.final_model), parameters(resumed.final_model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
    losses = lambda run: [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()  # noqa: E731
                          if json.loads(line)["kind"] in ("train", "valid")]
    assert losses(cut) == pytest.approx(losses(tmp_path / "straight"), abs=1e-6)


def test_a_fresh_run_refuses_a_folder_that_holds_checkpoints(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    train(recipe(), tmp_path / "run", model_factory=tiny_factory, datasets=datasets, stop_at_step=3)
    with pytest.raises(FileExistsError, match="resume"):
        train(recipe(), tmp_path / "run", model_factory=tiny_factory, datasets=datasets)


def test_early_stopping_ends_the_run_when_validation_stops_improving(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    # a learning rate this large makes validation loss climb after the first evaluations
    config = recipe(optim={"lr": 3.0, "max_steps": 40, "warmup_steps": 0}, eval={"every": 1},
                    early_stopping={"patience": 2})
    result = train(config, tmp_path / "run", model_factory=tiny_factory, datasets=datasets)
    assert result.stopped_early and result.steps < 40
    valid = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"valid"' in l]
    assert all(r["loss"] >= result.best_valid_loss for r in valid[-2:])


def test_frozen_vision_stays_unchanged(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    torch.manual_seed(7)
    initial = TinyVLM().vision.weight.detach().clone()
    result = train(recipe(model={"freeze_vision": True}, optim={"max_steps": 3}), tmp_path / "run",
                   model_factory=tiny_factory, datasets=datasets)
    trained = parameters(result.final_model)
    torch.testing.assert_close(trained["vision.weight"], initial, rtol=0, atol=0)
    assert not torch.equal(trained["head.weight"], TinyVLM().head.weight)


def test_the_trainer_samples_tasks_by_radgrounder_dynamic_sampling(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    sizes = {task: len(examples) for task, examples in datasets.train.by_task().items()}
    config = recipe(optim={"max_steps": 2}, data={"tasks": {"report": 2.0, "region": 1.0}, "temperature": 2.0})
    train(config, tmp_path / "run", model_factory=tiny_factory, datasets=datasets)

    stage = next(json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"stage"' in l)
    mass = {task: (weight * sizes[task]) ** (1 / 2.0) for task, weight in {"report": 2.0, "region": 1.0}.items()}
    assert stage["tasks"] == pytest.approx({task: value / sum(mass.values()) for task, value in mass.items()})
    state = torch.load(list_checkpoints(tmp_path / "run")[-1] / "state.pt", weights_only=False)
    assert state["mixture"]["drawn"] == 2 * 4  # TaskMixture's resumable state: two steps of four examples


def test_in_training_generation_uses_the_training_prompt_with_its_task(tmp_path, monkeypatch):
    datasets = make_datasets(tmp_path / "data")
    seen: list[list[str]] = []
    original = TinyVLM.generate

    def recording(self, images, prompts, max_new_tokens=8, tasks=None, **kwargs):
        seen.append(list(tasks) if tasks is not None else [])
        return original(self, images, prompts, max_new_tokens)

    monkeypatch.setattr(TinyVLM, "generate", recording)
    config = recipe(optim={"max_steps": 4}, eval={"every": 4, "generation": {"metrics": ["bleu"], "max_examples": 4}})
    train(config, tmp_path / "run", model_factory=tiny_factory, datasets=datasets)
    assert seen and all(tasks and set(tasks) <= {"report", "region"} for tasks in seen)
