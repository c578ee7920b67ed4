"""Hugging Face backbones (LLaVA, Qwen2.5-VL, PaliGemma 2, Gemma 3 / MedGemma) through the one RadscribeVLM interface.

Each test family runs on a tiny randomly initialised checkpoint of exactly that transformers class,
written offline by radscribe.models.checkpoints: create_model(folder) -> collate -> finite loss ->
backward -> generate -> save_pretrained/from_pretrained with identical logits.
"""

from __future__ import annotations


import pytest
import torch

from model_inputs import example as make_example, radiograph
from radscribe.models import IGNORE_INDEX, create_model
from radscribe.models.checkpoints import write_tiny_checkpoint
from radscribe.models.gemma3 import pad_to_square

FAMILIES = ("llava", "qwen2.5-vl", "paligemma2", "gemma3")


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    return request.param, write_tiny_checkpoint(request.param, tmp_path_factory.mktemp(request.param))


def test_end_to_end_on_a_tiny_checkpoint(checkpoint, tmp_path):
    family, folder = checkpoint
    model = create_model(folder, device="cpu", memory_slots=4)
    assert model.family == family and model.memory is not None
    examples = [
        make_example((radiograph(229, 416, 0),), "Describe the spine.", "Sixteen vertebrae, normal alignment."),
        make_example((radiograph(300, 200, 1),), "Is there a fracture?", "No."),
    ]
    batch = model.collate(examples)
    labels, ids = batch["labels"], batch["input_ids"]
    for row, example in enumerate(examples):
        target = labels[row][labels[row] != IGNORE_INDEX].tolist()
        assert model.decode(target) == example.target  # only target (+ end token) carries loss
        assert not (ids[row] == model.image_token_id)[labels[row] != IGNORE_INDEX].any()
    output = model(**batch)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert not any(p.requires_grad for p in model.vision_parameters())  # named configs freeze vision
    assert model.memory.gate.grad is not None

    texts = model.generate([radiograph(229, 416, 2), radiograph(128, 128, 3)], ["Describe.", "Any fracture?"], max_new_tokens=4)
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)
    embeddings = model.image_embeddings([radiograph(229, 416, 2), radiograph(128, 128, 3)])
    assert embeddings.shape[0] == 2 and torch.isfinite(embeddings).all()
    assert model.estimate_flops(batch) > 0

    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    loaded = create_model(tmp_path / "saved", device="cpu")
    assert loaded.family == family and loaded.config.memory_slots == 4 and loaded.config.lora is not None
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, expected)


def test_lora_targets_only_the_language_model(checkpoint):
    _, folder = checkpoint
    model = create_model(folder, device="cpu")
    lora = [name for name, _ in model.named_parameters() if "lora_" in name]
    assert lora and all("language_model" in name for name in lora)


def test_paligemma_marks_the_suffix_with_token_type_ids(tmp_path):
    model = create_model(write_tiny_checkpoint("paligemma2", tmp_path / "pg"), device="cpu")
    batch = model.collate([make_example((radiograph(64, 64, 4),), "caption", "clear lungs")])
    assert ((batch["token_type_ids"] == 1) == (batch["labels"] != IGNORE_INDEX)).all()


def test_gemma3_marks_image_tokens_pads_to_square_and_ends_turns(tmp_path):
    model = create_model(write_tiny_checkpoint("gemma3", tmp_path / "g3"), device="cpu")
    assert model.codec_name == "medgemma"
    batch = model.collate([make_example((radiograph(40, 80, 5),), "Describe the spine.", "Normal.")])
    image = batch["input_ids"] == model.image_token_id
    assert image.sum() == model.base_model().config.mm_tokens_per_image
    assert ((batch["token_type_ids"] == 1) == image).all()  # bidirectional attention over the image only
    assert model.tokenizer.convert_ids_to_tokens(int(batch["input_ids"][0, 0])) == "<bos>"  # one <bos>, from the template
    assert int((batch["input_ids"] == model.tokenizer.bos_token_id).sum()) == 1
    target = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    assert model.tokenizer.convert_ids_to_tokens(target[-1]) == "<end_of_turn>"
    square = pad_to_square(radiograph(40, 80, 5))
    assert (square.width, square.height) == (80, 80) and square.pixels[:, :20].max() == 0  # centred on black


def test_gradient_checkpointing_switch_reaches_the_language_model(tmp_path):
    model = create_model(write_tiny_checkpoint("gemma3", tmp_path / "g3"), device="cpu", gradient_checkpointing=True)
    language = model.base_model().model.language_model
    assert language.is_activation_checkpointing and model.config.gradient_checkpointing
    batch = model.collate([make_example((radiograph(64, 64, 6),), "Any fracture?", "No.")])
    model.train()
    model(**batch).loss.backward()
    assert any(p.grad is not None for name, p in model.named_parameters() if "lora_" in name)


def test_quantized_base_needs_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU refusal does not apply (benchmarks/gpu_check.py covers QLoRA)")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        create_model(write_tiny_checkpoint("gemma3", tmp_path / "g3"), quantization="nf4")


def test_unsupported_checkpoint_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert' is not supported"):
        create_model(tmp_path)
