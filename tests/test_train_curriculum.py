"""S2D-Align curriculum: reference retrieval, stages on one model, and the ablation table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radscribe.train import ReferenceIndex, config_from_dict, run_ablation, train
from radscribe.train.ablation import ablation_settings, setting_config
from radscribe.train.reference import REFERENCE_HEADER
from train_standin import make_datasets, make_split, tiny_factory


def test_the_nearest_report_is_never_the_study_itself_or_its_patient():
    embeddings = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.4], [0.0, 1.0]])
    index = ReferenceIndex(embeddings, ["a", "b", "c", "d"], ["p1", "p1", "p2", None], ["ra", "rb", "rc", "rd"])
    assert index.nearest(np.array([1.0, 0.0])).study_id == "a"
    neighbour = index.nearest(np.array([1.0, 0.0]), study_id="a", patient_id="p1")
    assert neighbour.study_id == "c" and neighbour.report == "rc"
    assert neighbour.similarity == pytest.approx(0.9 / np.hypot(0.9, 0.4))
    assert index.nearest(np.array([0.0, 1.0]), study_id="d").study_id == "c"


def test_the_index_round_trips_through_its_file(tmp_path):
    index = ReferenceIndex(np.random.default_rng(0).normal(size=(5, 3)), list("abcde"), [None] * 5, ["x"] * 5)
    index.save(tmp_path / "index.npz")
    loaded = ReferenceIndex.load(tmp_path / "index.npz")
    np.testing.assert_allclose(loaded.embeddings, index.embeddings)
    assert loaded.study_ids == list("abcde") and loaded.reports == ["x"] * 5


def test_the_index_built_from_a_model_excludes_the_same_patient(tmp_path):
    split = make_split(tmp_path, "train", 6, seed=0, same_patient_pairs=True)
    model = tiny_factory("stand-in")
    index = ReferenceIndex.build(model, split.studies)
    assigned = index.assign(model, split.studies)
    patients = {s.id: s.patient_id for s in split.studies}
    assert set(assigned) == {s.id for s in split.studies}
    assert all(patients[n.study_id] != patients[sid] for sid, n in assigned.items())


def curriculum(**extra):
    return config_from_dict({
        "model": {"name": "stand-in", "memory_slots": 4},
        "data": {"tasks": {"report": 1.0}},
        "optim": {"lr": 0.05, "batch_size": 4, "warmup_steps": 1},
        "eval": {"every": 100, "max_examples_per_task": 4},
        "checkpoint": {"every": 100},
        "logging": {"tensorboard": "off"},
        "stages": [
            {"name": "pair", "kind": "pairing", "steps": 4},
            {"name": "ref", "kind": "reference", "steps": 4},
            {"name": "ground", "kind": "grounding", "steps": 4, "tasks": {"report": 1.0, "region": 1.0}},
        ],
        **extra,
    })


def test_stages_run_in_order_and_reference_prompts_carry_a_training_report(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    run = tmp_path / "run"
    result = train(curriculum(), run, model_factory=tiny_factory, datasets=datasets)

    assert [s["stage"] for s in result.stages] == ["pair", "ref", "ground"] and result.steps == 12
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stages = [(r["step"], r["stage"], r["reference"]) for r in records if r["kind"] == "stage"]
    assert stages == [(0, "pair", False), (4, "ref", True), (8, "ground", True)]
    assert set(records[-1]["task_loss"]) == {"report", "region"}
    references = json.loads((run / "references.json").read_text())
    train_ids = {s.id for s in datasets.train.studies}
    assert set(references) == train_ids | {s.id for s in datasets.valid.studies}
    assert all(n["study_id"] in train_ids and n["study_id"] != sid for sid, n in references.items())
    assert len(ReferenceIndex.load(run / "reference_index.npz")) == len(train_ids)


def test_resuming_inside_the_reference_stage_reuses_the_saved_retrieval(tmp_path):
    datasets = make_datasets(tmp_path / "data")
    straight = train(curriculum(), tmp_path / "straight", model_factory=tiny_factory, datasets=datasets)
    train(curriculum(), tmp_path / "cut", model_factory=tiny_factory, datasets=datasets, stop_at_step=6)
    resumed = train(curriculum(), tmp_path / "cut", resume=True, model_factory=tiny_factory, datasets=datasets)
    assert resumed.last_valid["loss"] == pytest.approx(straight.last_valid["loss"], abs=1e-6)
    assert (tmp_path / "cut" / "references.json").read_text() == (tmp_path / "straight" / "references.json").read_text()


def test_reference_prompt_layout():
    from radscribe.train import with_reference

    assert with_reference("Describe.", " curve left ") == f"{REFERENCE_HEADER}\ncurve left\n\nDescribe."
    report = "line one\nline two\nline three"
    assert with_reference("Go.", report, max_chars=17) == f"{REFERENCE_HEADER}\nline one\nline two\n\nGo."
    assert with_reference("Go.", "abcdefgh", max_chars=3) == f"{REFERENCE_HEADER}\nabc\n\nGo."


def test_ablation_settings_share_one_budget():
    config = curriculum()
    settings = ablation_settings(config)
    assert [s["name"] for s in settings] == ["pair", "pair+ref", "pair+ref+ground", "pair+ref+ground no-memory"]
    for setting in settings:
        derived = setting_config(config, setting)
        assert sum(stage.steps for stage in derived.stages) == 12
    assert [s.steps for s in setting_config(config, settings[1]).stages] == [6, 6]
    assert setting_config(config, settings[3]).model.memory_slots == 0


def test_ablation_trains_each_setting_and_tabulates_validation(tmp_path):
    datasets = make_datasets(tmp_path / "data", train=8, valid=4)
    config = curriculum(ablation=[{"name": "pair", "stages": ["pair"]}, {"name": "all-no-mem", "memory_slots": 0}])
    rows = run_ablation(config, tmp_path / "ablate", model_factory=tiny_factory, datasets=datasets)
    assert [r["setting"] for r in rows] == ["pair", "all-no-mem"]
    assert all(r["steps"] == 12 and r["valid"]["loss"] > 0 for r in rows)
    table = (tmp_path / "ablate" / "ablation.md").read_text()
    assert "| pair | pair:12 | 4 | - |" in table and "| all-no-mem |" in table
    assert json.loads((tmp_path / "ablate" / "ablation.json").read_text()) == rows


def test_an_ablation_setting_can_change_any_recipe_key():
    config = curriculum(ablation=[{"name": "slow", "set": ["optim.lr=0.001", "model.overrides.vision={pretrained: false}"]}])
    derived = setting_config(config, ablation_settings(config)[0])
    assert derived.optim.lr == 0.001 and derived.model.overrides == {"vision": {"pretrained": False}}
    assert sum(stage.steps for stage in derived.stages) == 12
    with pytest.raises(ValueError, match=r"ablation\[0\]\.set"):
        curriculum(ablation=[{"name": "bad", "set": ["optim.lr"]}])


def test_model_overrides_merge_into_the_architecture_sections():
    from radscribe.models import load_config

    config = load_config("radscribe-tiny-test").replace(vision={"frozen_stages": 2})
    assert config.vision["frozen_stages"] == 2 and config.vision["backbone"] == "efficientnet-lite0"
