"""Training recipes: YAML in, clear errors naming the file and key out."""

from __future__ import annotations

from pathlib import Path

import pytest

from radscribe.train import ConfigError, load_config
from radscribe.train.config import recipe_kind
from radscribe.train.detector import load_detector_recipe

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_recipe_loads_with_defaults_and_resolves_manifest_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, "model: {name: radscribe-tiny, memory_slots: 8}\ndata: {train: m/train.jsonl}\n"))
    assert config.model.memory_slots == 8
    assert config.data.train == str(tmp_path / "m" / "train.jsonl")
    assert config.optim.betas == [0.9, 0.95] and config.optim.precision == "auto"
    (stage,) = config.resolved_stages()
    assert stage.steps == config.optim.max_steps and stage.tasks == {"structured_report": 1.0}


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("optim: {lr: fast}\n", "optim.lr", "a number"),
        ("optim: {learning_rate: 0.1}\n", "optim.learning_rate", "unknown key"),
        ("modle: {name: x}\n", "modle", "unknown key"),
        ("optim: {batch_size: 6, grad_accum: 4}\n", "optim.batch_size", "multiple of optim.grad_accum"),
        ("stages: [{name: a, kind: deep}]\n", "stages[0].kind", "one of pairing"),
        ("stages: [{kind: pairing}]\n", "stages[0].name", "required"),
        ("data: {tasks: {report: -1}}\n", "data.tasks.report", "positive"),
        ("optim: {precision: fp16}\n", "optim.precision", "one of auto"),
        ("data: {train: 5}\n", "data.train", "a string or a list"),
        ("data: {train: [a.jsonl, 3]}\n", "data.train[1]", "a string"),
        ("stages: [{name: a}]\nablation: [{name: x, stages: [b]}]\n", "ablation[0].stages", "stage names"),
    ],
)
def test_bad_recipes_name_the_file_and_the_key(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and f"'{key}'" in str(error.value) and expected in str(error.value)


def test_a_recipe_reads_several_manifests_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, "data: {train: [spine.jsonl, chest.jsonl], valid: spine.jsonl}\n"))
    assert config.data.train == [str(tmp_path / "spine.jsonl"), str(tmp_path / "chest.jsonl")]
    assert config.data.valid == str(tmp_path / "spine.jsonl")


def test_overrides_set_nested_keys_and_are_checked_like_the_file(tmp_path):
    path = write(tmp_path, "optim: {lr: 0.1}\n")
    config = load_config(path, ["optim.lr=2e-4", "data.tasks={region: 1, report: 3}", "model.lora=null"])
    assert config.optim.lr == 2e-4 and config.data.tasks == {"region": 1.0, "report": 3.0}
    with pytest.raises(ConfigError, match="'optim.warmup'"):
        load_config(path, ["optim.warmup=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["optim.lr"])


def test_stages_inherit_tasks_and_turn_reference_guidance_on_from_the_reference_stage(tmp_path):
    config = load_config(write(tmp_path, """
data: {tasks: {structured_report: 1}}
optim: {lr: 0.001}
stages:
  - {name: pair, kind: pairing, steps: 5}
  - {name: ref, kind: reference, steps: 5, lr: 0.0005}
  - {name: ground, kind: grounding, steps: 5, tasks: {phrase_grounding: 1, structured_report: 1}}
"""))
    pair, ref, ground = config.resolved_stages()
    assert (pair.reference, ref.reference, ground.reference) == (False, True, True)
    assert pair.lr == 0.001 and ref.lr == 0.0005
    assert ref.tasks == {"structured_report": 1.0} and "phrase_grounding" in ground.tasks


def test_the_shipped_recipes_load():
    recipes = sorted((REPO / "configs").glob("*.yaml"))
    assert recipes, "configs/*.yaml: the repository ships training recipes"
    kinds = {path.name: recipe_kind(path) for path in recipes}
    assert set(kinds.values()) == {"vlm", "detector"}
    for path in recipes:
        if kinds[path.name] == "detector":
            recipe = load_detector_recipe(path)
            assert recipe.optim.max_steps > 0 and recipe.data.train
        else:
            assert load_config(path).resolved_stages()


def test_detector_recipes_name_the_file_and_key_of_a_mistake(tmp_path):
    with pytest.raises(ConfigError, match="key 'augment.rotat'"):
        load_detector_recipe(write(tmp_path, "kind: detector\ndata: {train: [m.jsonl]}\naugment: {rotat: 5}\n"))
    with pytest.raises(ConfigError, match="key 'model'.*input_size"):
        load_detector_recipe(write(tmp_path, "kind: detector\ndata: {train: [m.jsonl]}\nmodel: {input_size: [250, 416]}\n"))
    with pytest.raises(ConfigError, match="key 'kind': one of vlm, detector"):
        recipe_kind(write(tmp_path, "kind: segmenter\n"))


def test_a_misspelt_generation_metric_fails_at_load(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: {name: radscribe-tiny-test}\n"
        "data: {train: a.jsonl}\n"
        "eval: {generation: {metrics: [bleu, rouge-l]}}\n"
    )
    with pytest.raises(ConfigError, match="eval.generation.metrics"):
        load_config(recipe)
