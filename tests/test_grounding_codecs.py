"""Box codecs: round trips within each format's quantisation, the reference's own examples, bad output."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radscribe.grounding import (
    LOCATION_TOKENS,
    DecodedBoxes,
    centre_crop,
    create_codec,
    list_codecs,
    smart_resize,
    square_padding,
)
from radscribe.types import Box

ALL = ("maira2", "medgemma", "paligemma", "qwen2-vl", "qwen2.5-vl", "radgrounder", "radscribe")


def test_registry_lists_every_backbone_format() -> None:
    assert set(ALL) <= set(list_codecs())
    with pytest.raises(KeyError, match="known: maira2"):
        create_codec("florence")


coords = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
sizes = st.tuples(st.integers(32, 4096), st.integers(32, 4096)).filter(lambda s: max(s) / min(s) < 20)


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    x0, x1 = sorted((draw(coords), draw(coords)))
    y0, y1 = sorted((draw(coords), draw(coords)))
    return Box("finding", x0, y0, x1, y1)


def _within(decoded: Box, box: Box, tolerance: tuple[float, float]) -> None:
    tx, ty = tolerance
    eps = 1e-9
    assert abs(decoded.x_min - box.x_min) <= tx + eps
    assert abs(decoded.x_max - box.x_max) <= tx + eps
    assert abs(decoded.y_min - box.y_min) <= ty + eps
    assert abs(decoded.y_max - box.y_max) <= ty + eps


@pytest.mark.parametrize("name", [n for n in ALL if n != "maira2"])
@settings(max_examples=150, deadline=None)
@given(box=boxes(), size=sizes)
def test_round_trip_within_quantisation(name: str, box: Box, size: tuple[int, int]) -> None:
    codec = create_codec(name)
    decoded = codec.decode(codec.encode(box, size), size)
    assert decoded.errors == []
    assert len(decoded.boxes) == 1 and decoded.boxes[0].label == "finding"
    _within(decoded.boxes[0], box, codec.tolerance(size))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=sizes)
def test_maira2_round_trip_inside_the_centre_square(data: st.DataObject, size: tuple[int, int]) -> None:
    width, height = size
    side, dx, dy = centre_crop(size)
    u = st.floats(0.0, 1.0)
    x0, x1 = sorted(((dx + data.draw(u) * side) / width, (dx + data.draw(u) * side) / width))
    y0, y1 = sorted(((dy + data.draw(u) * side) / height, (dy + data.draw(u) * side) / height))
    box = Box("finding", x0, y0, x1, y1)
    codec = create_codec("maira2")
    decoded = codec.decode(codec.encode(box, size), size)
    assert decoded.errors == [] and len(decoded.boxes) == 1
    _within(decoded.boxes[0], box, codec.tolerance(size))


def test_maira2_clips_boxes_to_the_square_it_sees() -> None:
    codec = create_codec("maira2")
    size = (229, 416)  # a CADMA spine film: the square is rows 93..322
    top = Box("vertebra", 0.4, 0.0, 0.6, 0.05)
    assert codec.encode(top, size) == "<obj>vertebra <box><x40><y0><x60><y0></box></obj>"
    decoded = codec.decode(codec.encode(top, size), size).boxes[0]
    assert decoded.y_min == pytest.approx((0.005 * 229 + 93) / 416)


@pytest.mark.parametrize("name", ALL)
def test_several_boxes_of_one_phrase_come_back_in_order(name: str) -> None:
    codec = create_codec(name)
    size = (512, 512)
    vertebrae = [Box("vertebra", 0.4, 0.1 * i, 0.6, 0.1 * i + 0.08) for i in range(1, 6)]
    decoded = codec.decode(codec.encode_phrase("vertebra", vertebrae, size), size)
    assert decoded.errors == []
    assert [b.label for b in decoded.boxes] == ["vertebra"] * 5
    tolerance = codec.tolerance(size)
    for got, want in zip(decoded.boxes, vertebrae, strict=True):
        _within(got, want, tolerance)


@pytest.mark.parametrize("name", ALL)
def test_inline_phrases_in_a_report_decode_with_their_labels(name: str) -> None:
    codec = create_codec(name)
    size = (400, 300)
    heart = Box("cardiomegaly", 0.3, 0.4, 0.7, 0.8)
    nodule = Box("nodule", 0.6, 0.2, 0.7, 0.3)
    report = f"Findings:\n{codec.encode(heart, size)}\n{codec.encode(nodule, size)}\nNo effusion."
    decoded = codec.decode(report, size)
    assert decoded.errors == []
    assert [b.label for b in decoded.boxes] == ["cardiomegaly", "nodule"]


@pytest.mark.parametrize("name", ALL)
def test_programming_errors_raise(name: str) -> None:
    codec = create_codec(name)
    box = Box("x", 0.1, 0.1, 0.2, 0.2)
    for bad_size in [(0, 10), (10.5, 10), (10,), "10x10"]:
        with pytest.raises(ValueError, match="image_size"):
            codec.encode(box, bad_size)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="image_size"):
            codec.decode("", bad_size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one box"):
        codec.encode_phrase("x", [], (10, 10))
    with pytest.raises(TypeError):
        codec.decode(None, (10, 10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("paligemma", "a ; b"), ("radgrounder", "a</p>"), ("qwen2-vl", "<|box_end|>"), ("qwen2.5-vl", "{x}"),
     ("maira2", "a</obj>"), ("medgemma", "{x}"), ("radscribe", "a<loc_3>")],
)
def test_phrases_that_would_break_the_format_are_refused(name: str, phrase: str) -> None:
    with pytest.raises(ValueError, match="reserves"):
        create_codec(name).encode(Box(phrase, 0.1, 0.1, 0.2, 0.2), (100, 100))


# --- The reference's own examples (peers-and-formats.md, section D) --------------------------------


def test_paligemma_reference_example_is_y_first_over_1023() -> None:
    codec = create_codec("paligemma")
    text = "<loc0000><loc0000><loc0930><loc1012> <seg114><seg003> wall ; <loc0722><loc0100><loc0800><loc0200> door"
    decoded = codec.decode(text, (640, 480))
    assert decoded.errors == []
    wall, door = decoded.boxes
    assert (wall.label, door.label) == ("wall", "door")
    assert wall.xyxy == pytest.approx((0.0, 0.0, 1012 / 1023, 930 / 1023))
    assert door.xyxy == pytest.approx((100 / 1023, 722 / 1023, 200 / 1023, 800 / 1023))
    # round(coord * 1023): 0.5 -> 511.5 rounds to 512; the order is y_min, x_min, y_max, x_max.
    assert codec.encode(Box("a", 0.25, 0.5, 1.0, 1.0), (640, 480)) == "<loc0512><loc0256><loc1023><loc1023> a"


def test_radgrounder_reference_example_is_xyxy_over_512() -> None:
    codec = create_codec("radgrounder", class_ids={"liver": 42})
    text = "The <p bbox=<loc0100><loc0200><loc0300><loc0400> id=<seg042>>liver</p> is enlarged"
    decoded = codec.decode(text, (224, 224))
    assert decoded.errors == []
    assert decoded.boxes[0].label == "liver"
    assert decoded.boxes[0].xyxy == pytest.approx((100 / 512, 200 / 512, 300 / 512, 400 / 512))
    liver = Box("liver", 100 / 512, 200 / 512, 300 / 512, 400 / 512)
    assert codec.encode(liver, (224, 224)) == "<p bbox=<loc0100><loc0200><loc0300><loc0400> id=<seg042>>liver</p>"
    # int(coord * 512) as the released code does: exactly 1.0 becomes <loc0512>.
    assert "<loc0512><loc0512>" in codec.encode(Box("body", 0.0, 0.0, 1.0, 1.0), (224, 224))
    with pytest.raises(ValueError, match="0..127"):
        create_codec("radgrounder", class_ids={"liver": 200})


def test_qwen2vl_reference_example_is_per_mille() -> None:
    codec = create_codec("qwen2-vl")
    text = "<|object_ref_start|>the eyes on a giraffe<|object_ref_end|><|box_start|>(176,106),(232,160)<|box_end|>"
    decoded = codec.decode(text, (1000, 700))
    assert decoded.boxes[0].label == "the eyes on a giraffe"
    assert decoded.boxes[0].xyxy == pytest.approx((0.176, 0.106, 0.232, 0.160))
    assert codec.encode(Box("a", 0.0, 0.0, 1.0, 1.0), (10, 10)).endswith("(0,0),(999,999)<|box_end|>")


def test_qwen25_smart_resize_matches_the_reference_arithmetic() -> None:
    assert smart_resize(416, 229) == (420, 224)  # rounds each side to a multiple of 28
    assert smart_resize(1024, 1024, max_pixels=14 * 14 * 4 * 1280) == (980, 980)  # shrinks under max_pixels
    assert smart_resize(20, 20) == (56, 56)  # grows to min_pixels 4*28*28
    height, width = smart_resize(3000, 2500)
    assert height % 28 == 0 and width % 28 == 0 and height * width <= 16384 * 28 * 28
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 5000)


def test_qwen25_uses_pixels_of_the_resized_input() -> None:
    codec = create_codec("qwen2.5-vl")
    assert codec.input_size((229, 416)) == (224, 420)
    encoded = codec.encode(Box("spine", 0.25, 0.5, 0.75, 1.0), (229, 416))
    assert json.loads(encoded) == {"bbox_2d": [56, 210, 168, 420], "label": "spine"}
    fenced = '```json\n[\n  {"bbox_2d": [56, 210, 168, 420], "label": "spine"},\n  {"point_2d": [3, 4], "label": "tip"}\n]\n```'
    decoded = codec.decode(fenced, (229, 416))
    assert decoded.errors == [] and decoded.boxes[0].xyxy == pytest.approx((0.25, 0.5, 0.75, 1.0))
    small = create_codec("qwen2.5-vl", max_pixels=14 * 14 * 4 * 1280)
    assert small.input_size((1024, 1024)) == (980, 980)


def test_medgemma_reference_example_is_y_first_per_mille_of_the_padded_square() -> None:
    codec = create_codec("medgemma")
    # A tall 200 x 400 film sits in a 400 x 400 square with 100 px of padding left and right.
    assert square_padding((200, 400)) == (400, 100, 0)
    text = codec.encode(Box("spine", 0.0, 0.25, 1.0, 0.75), (200, 400))
    assert json.loads(text) == [{"box_2d": [250, 250, 750, 750], "label": "spine"}]
    fenced = 'The lumbar spine:\n```json\n[{"box_2d": [250, 0, 750, 1000], "label": "spine"}]\n```'
    (box,) = create_codec("medgemma").decode(fenced, (200, 400)).boxes  # reaches into the padding: clipped
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (0.0, 0.25, 1.0, 0.75)


def test_maira2_reference_example_decodes_bin_centres_on_the_centre_square() -> None:
    codec = create_codec("maira2")
    text = "<obj>grounded phrase <box><x55><y45><x70><y56></box></obj><obj>ungrounded phrase</obj>"
    square = codec.decode(text, (512, 512))
    assert square.errors == [] and len(square.boxes) == 1
    assert square.boxes[0].label == "grounded phrase"
    assert square.boxes[0].xyxy == pytest.approx((0.555, 0.455, 0.705, 0.565))
    wide = codec.decode(text, (600, 400)).boxes[0]  # square side 400, x offset 100
    assert wide.x_min == pytest.approx((0.555 * 400 + 100) / 600)
    assert wide.y_min == pytest.approx(0.455)


def test_radscribe_tokens_and_bin_centres() -> None:
    assert len(LOCATION_TOKENS) == 258 and LOCATION_TOKENS[0] == "<loc_0>" and LOCATION_TOKENS[255] == "<loc_255>"
    assert set(LOCATION_TOKENS[-2:]) == {"<box>", "</box>"}
    codec = create_codec("radscribe")
    assert codec.special_tokens == LOCATION_TOKENS
    assert codec.encode(Box("spine column", 0.0, 0.0, 1.0, 1.0), (229, 416)) == (
        "<box>spine column<loc_0><loc_0><loc_255><loc_255></box>"
    )
    decoded = codec.decode("<box>x<loc_0><loc_10><loc_20><loc_255></box>", (10, 10)).boxes[0]
    assert decoded.xyxy == pytest.approx((0.5 / 256, 10.5 / 256, 20.5 / 256, 255.5 / 256))


# --- Malformed model output: dropped with a reason, never raised ------------------------------------

MALFORMED = [
    ("paligemma", "<loc0100><loc0200><loc0300> wall", "expected 4 location tokens"),
    ("paligemma", "<loc0100><loc0200><loc1300><loc0400> wall", "above 1023"),
    ("paligemma", "<loc0500><loc0200><loc0300><loc0400> wall", "min > max"),
    ("radgrounder", "<p bbox=<loc0100><loc0200><loc0300> id=<seg001>>liver</p>", "expected 4 location tokens"),
    ("radgrounder", "<p bbox=<loc0100><loc0200><loc0300><loc0900> id=<seg001>>liver</p>", "above 512"),
    ("radgrounder", "The <p bbox=<loc0100><loc0200><loc0300><loc0400> id=<seg001>>liver is", "not closed"),
    ("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3)<|box_end|>", "expected '(x1,y1),(x2,y2)'"),
    ("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,2000)<|box_end|>", "above 1000"),
    ("qwen2-vl", "<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4", "not closed"),
    ("qwen2.5-vl", '[{"bbox_2d": [1, 2, 3], "label": "a"}]', "4 numbers"),
    ("qwen2.5-vl", '[{"bbox_2d": [1, 2, 3, 9000], "label": "a"}]', "outside the image"),
    ("qwen2.5-vl", '[{"bbox_2d": [1, 2, 3, 4], "label": "a",}]', "not valid JSON"),
    ("qwen2.5-vl", '[{"bbox_2d": [50, 2, 3, 4], "label": "a"}]', "min > max"),
    ("maira2", "<obj>a <box><x1><y2><x3></box></obj>", "expected <xNN><yNN><xNN><yNN>"),
    ("maira2", "<obj>a <box><x1><y2><x300><y4></box></obj>", "above 99"),
    ("maira2", "<obj>a <box><x1><y2><x3><y4></box>", "not closed"),
    ("medgemma", '[{"box_2d": [1, 2, 3], "label": "a"}]', "4 numbers"),
    ("medgemma", '[{"box_2d": [1, 2, 3, 1001], "label": "a"}]', "outside 0..1000"),
    ("medgemma", '[{"box_2d": [50, 2, 3, 4], "label": "a"}]', "min > max"),
    ("radscribe", "<box>a<loc_1><loc_2><loc_3></box>", "not a multiple of 4"),
    ("radscribe", "<box>a<loc_1><loc_2><loc_3><loc_999></box>", "above 255"),
    ("radscribe", "<box>a<loc_1><loc_2>x<loc_3><loc_4></box>", "text between"),
    ("radscribe", "<box>a</box>", "no location tokens"),
    ("radscribe", "<box>a<loc_1><loc_2><loc_3><loc_4>", "not closed"),
]


@pytest.mark.parametrize(("name", "text", "reason"), MALFORMED)
def test_malformed_output_is_reported_not_raised(name: str, text: str, reason: str) -> None:
    codec = create_codec(name)
    good = codec.encode(Box("good", 0.1, 0.1, 0.4, 0.4), (256, 256))
    decoded = codec.decode(f"{good}\n{text}", (256, 256))
    assert isinstance(decoded, DecodedBoxes)
    assert [b.label for b in decoded.boxes] == ["good"], decoded
    assert len(decoded.errors) == 1 and reason in decoded.errors[0], decoded.errors


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("<>/(),;{}[]\"' 0123456789abxylocpsegbox_|:=")), max_size=80))
def test_decode_never_raises_on_noise(name: str, text: str) -> None:
    decoded = create_codec(name).decode(text, (300, 200))
    for box in decoded.boxes:
        assert 0 <= box.x_min <= box.x_max <= 1 and 0 <= box.y_min <= box.y_max <= 1
