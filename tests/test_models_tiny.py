"""radscribe-tiny: the embedded model's structure, batching, loss masking, generation and saving."""

from __future__ import annotations


import pytest
import torch

from model_inputs import example as make_example, radiograph
from radscribe.models import IGNORE_INDEX, MemoryAdapter, create_model, describe_size, list_models, load_config
from radscribe.models.tokenizer import ANSWER, EOS


@pytest.fixture(scope="module")
def model():
    return create_model("radscribe-tiny-test", device="cpu")


def test_registry_lists_every_family_and_rejects_unknown_names():
    names = list_models()
    for name in ("radscribe-tiny", "radscribe-tiny-test", "llava", "qwen2.5-vl", "paligemma2"):
        assert name in names
    with pytest.raises(FileNotFoundError, match="not a registered model"):
        create_model("no-such-model")
    with pytest.raises(ValueError, match="unknown model config field"):
        create_model("radscribe-tiny-test", not_a_field=1)


def test_hf_family_without_local_checkpoint_fails_clearly():
    with pytest.raises(ValueError, match="needs a local checkpoint folder"):
        create_model("qwen2.5-vl")


def test_default_config_fits_the_shipping_budget():
    config = load_config("radscribe-tiny")
    assert config.save_dtype == "bfloat16"
    model = create_model("radscribe-tiny", device="cpu")
    size = describe_size(model)
    assert size["weights_mb_bf16"] <= 30.0, size  # the detector ships beside it; both within 40 MB
    assert model.image_tokens_per_image == 8 * 26  # 256 x 416 input, stride 16, 2 x 1 pooling


def test_labels_cover_only_target_tokens(model):
    examples = [
        make_example((radiograph(229, 416, 0),), "Describe the spine.", "Sixteen vertebrae. <box>T1<loc_3><loc_4><loc_5><loc_6></box>"),
        make_example((radiograph(300, 300, 1),), "Q?", "No.", task="vqa"),
    ]
    batch = model.collate(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    answer_id = model.tokenizer.token_to_id(ANSWER)
    eos_id = model.tokenizer.token_to_id(EOS)
    for row, example in enumerate(examples):
        start = int((ids[row] == answer_id).nonzero()[0]) + 1
        assert (labels[row, :start] == IGNORE_INDEX).all()  # image, task, prompt tokens
        assert (labels[row][mask[row] == 0] == IGNORE_INDEX).all()  # padding
        target = labels[row][labels[row] != IGNORE_INDEX].tolist()
        assert target[-1] == eos_id
        assert model.decode(target) == example.target  # location tokens survive decoding
    assert mask[1].sum() < mask[0].sum() and mask[1, -1] == 0  # right padding for training
    output = model(**batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vision_tower().parameters())
    model.zero_grad()


def test_generation_batches_are_left_padded_and_generate_returns_strings(model):
    batch = model.collate([make_example((radiograph(64, 64, 2),), "a", ""), make_example((radiograph(64, 64, 3),), "a longer prompt here", "")], with_targets=False)
    assert "labels" not in batch
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    texts = model.generate([radiograph(229, 416, 4), radiograph(100, 80, 5)], ["Describe.", "Any fracture?"], max_new_tokens=6, tasks=["report", "vqa"])
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_init_is_deterministic_from_the_seed():
    first = create_model("radscribe-tiny-test", device="cpu")
    second = create_model("radscribe-tiny-test", device="cpu")
    other = create_model("radscribe-tiny-test", device="cpu", seed=1)
    state, same, different = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(state[key], same[key]) for key in state)
    assert not all(torch.equal(state[key], different[key]) for key in state)


def test_save_and_load_round_trip_gives_identical_logits(model, tmp_path):
    batch = model.collate([make_example((radiograph(229, 416, 6),), "Describe.", "Normal alignment.")])
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    assert {p.name for p in (tmp_path / "saved").iterdir()} >= {"radscribe.json", "config.json", "tokenizer.json", "model.safetensors"}
    loaded = create_model(tmp_path / "saved")
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, expected)
    model.train()


def test_bfloat16_save_halves_the_file_and_stays_close(tmp_path):
    model = create_model("radscribe-tiny-test", device="cpu")
    model.save_pretrained(tmp_path / "fp32")
    model.config.save_dtype = "bfloat16"
    model.save_pretrained(tmp_path / "bf16")
    fp32, bf16 = (tmp_path / "fp32" / "model.safetensors").stat().st_size, (tmp_path / "bf16" / "model.safetensors").stat().st_size
    assert bf16 < 0.55 * fp32
    loaded = create_model(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # upcast for CPU compute
    batch = model.collate([make_example((radiograph(64, 64, 7),), "x", "y")])
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=0.05)


def test_memory_adapter_starts_as_identity_and_is_trainable(model):
    adapter = MemoryAdapter(dim=32, slots=8, heads=4)
    tokens = torch.randn(2, 5, 32)
    assert torch.equal(adapter(tokens), tokens)
    flat = torch.randn(7, 32)
    assert torch.equal(adapter(flat), flat)  # Qwen2.5-VL's flat (patches, width) layout
    adapter(tokens).sum().backward()
    assert adapter.gate.grad is not None and adapter.gate.grad.abs().sum() > 0

    plain = create_model("radscribe-tiny-test", device="cpu")
    with_memory = create_model("radscribe-tiny-test", device="cpu", memory_slots=8)
    assert with_memory.memory is not None and plain.memory is None
    batch = plain.collate([make_example((radiograph(64, 64, 8),), "x", "y")])
    plain.eval(), with_memory.eval()
    with torch.no_grad():  # same seed, zero gate: the adapter changes nothing until it is trained
        assert torch.allclose(plain(**batch).logits, with_memory(**batch).logits, atol=1e-6)


def test_freeze_vision_and_lora_change_what_trains(tmp_path):
    model = create_model("radscribe-tiny-test", device="cpu", freeze_vision=True, memory_slots=4)
    assert not any(p.requires_grad for p in model.vision_parameters())
    assert all(p.requires_grad for p in model.memory.parameters())
    model.add_lora(r=4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in name for name in trainable)
    assert not any("vision_tower" in name for name in trainable)
    assert not any("lora" in name for name in trainable if "vision" in name)
    assert any("multi_modal_projector" in name for name in trainable)
    assert not any(name.endswith("q_proj.base_layer.weight") for name in trainable)
    batch = model.collate([make_example((radiograph(64, 64, 9),), "x", "y")])
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "lora")
    loaded = create_model(tmp_path / "lora")
    assert loaded.config.lora == {"r": 4} and loaded.config.freeze_vision
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, expected)


def test_image_embeddings_and_flop_estimate(model):
    images = [radiograph(229, 416, 10), radiograph(229, 416, 10), radiograph(512, 512, 11)]
    embeddings = model.image_embeddings(images)
    assert embeddings.shape[0] == 3
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(embeddings[0], embeddings[1])
    batch = model.collate([make_example((images[0],), "Describe.", "Normal.")])
    flops = model.estimate_flops(batch)
    dense_lower_bound = 6 * model.parameter_breakdown()["language"] * batch["input_ids"].numel()
    assert flops > dense_lower_bound
    frozen = create_model("radscribe-tiny-test", device="cpu", freeze_vision=True)
    assert frozen.estimate_flops(batch) < flops  # a frozen vision tower has no backward pass


def test_real_spine_film_is_letterboxed(model, cadma_dir):
    path = sorted((cadma_dir / "train" / "images").glob("*.jpg"))[0]
    batch = model.collate([make_example((path,), "Describe the spine.", "Normal.", task="structured_report")])
    width, height = model.config.input_size
    assert batch["pixel_values"].shape == (1, 1, height, width)
    assert torch.isfinite(model(**batch).loss)


def test_inputs_follow_the_weights_not_the_configured_device(model):
    """A model built for cuda and moved to cpu (or the other way) runs where its weights are."""
    model.config.device = "cuda"  # what a GPU-trained config says; the weights are on the cpu here
    example = make_example((radiograph(48, 64, 0),), "Locate the spine column.", "<box>spine column</box>", task="region")
    try:
        assert model.device.type == "cpu"
        assert torch.isfinite(model(**model.collate([example])).loss)
    finally:
        model.config.device = "cpu"
