"""The radscribe tokenizer (deterministic offline build, radscribe codec tokens) and letterboxing."""

from __future__ import annotations

import numpy as np
import pytest

from radscribe.data.images import Radiograph
from radscribe.grounding import LOCATION_TOKENS
from radscribe.models import Letterbox, build_tokenizer, letterbox, load_tokenizer
from radscribe.models.radscribe_tiny import DEFAULT_TOKENIZER
from radscribe.models.tokenizer import CONTROL_TOKENS, tokenizer_corpus
from radscribe.types import Box

TEXTS = ["The lungs are clear.", "No pleural effusion.", "Sixteen vertebrae are visible.", "Mild scoliosis of the thoracic spine."] * 3


def test_build_is_deterministic_and_keeps_codec_tokens_whole():
    first, second = build_tokenizer(TEXTS, vocab_size=600), build_tokenizer(list(TEXTS), vocab_size=600)
    assert first.to_str() == second.to_str()
    text = "Curve <box>apex<loc_12><loc_40><loc_255><loc_0></box> seen."
    encoding = first.encode(text)
    for token in ("<box>", "<loc_12>", "<loc_255>", "</box>"):
        assert token in encoding.tokens
    assert first.decode(encoding.ids, skip_special_tokens=True) == text
    assert [first.token_to_id(token) for token in CONTROL_TOKENS] == list(range(len(CONTROL_TOKENS)))


def test_build_rejects_empty_corpus_and_tiny_vocab():
    with pytest.raises(ValueError, match="non-empty"):
        build_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="no room"):
        build_tokenizer(TEXTS, vocab_size=300)


def test_shipped_tokenizer_matches_a_fresh_build_from_the_real_corpus(iu_dir, vqa_rad_dir):
    shipped = load_tokenizer(DEFAULT_TOKENIZER)
    assert shipped.get_vocab_size() == 4096
    rebuilt = build_tokenizer(tokenizer_corpus(iu_dir.parent))
    assert rebuilt.to_str() == shipped.to_str(), "rebuild the asset: python -m radscribe.models.build_tokenizer"
    report = "The cardiac silhouette and mediastinum size are within normal limits."
    assert len(shipped.encode(report).ids) < 20  # the vocabulary has learned report language


def test_every_grounding_codec_token_is_one_kept_token():
    tokenizer = load_tokenizer(DEFAULT_TOKENIZER)
    for token in LOCATION_TOKENS:
        encoding = tokenizer.encode(f"x{token}y")
        assert token in encoding.tokens
        assert tokenizer.decode(encoding.ids, skip_special_tokens=True) == f"x{token}y"


def test_letterbox_keeps_aspect_and_maps_boxes_both_ways():
    image = Radiograph(pixels=np.ones((416, 229), dtype=np.float32), path=None)
    pixels, transform = letterbox(image, 224)
    assert pixels.shape == (1, 224, 224)
    content_w, content_h = transform.content_size
    assert content_h == 224 and content_w == round(229 * 224 / 416)
    assert pixels[0, :, : transform.pad_x].sum() == 0 and pixels[0, :, transform.pad_x + 1].min() > 0.99
    box = Box("T1", 0.1, 0.2, 0.6, 0.9)
    inside = transform.to_input(box)
    assert inside.x_min > box.x_min * content_w / 224
    back = transform.to_original(inside)
    assert np.allclose(back.xyxy, box.xyxy, atol=1e-9)
    assert Letterbox.fit(400, 200, 100).pad_y == 25
