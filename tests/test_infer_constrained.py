"""Template-constrained decoding: the grammar, and a random untrained model that must still write valid reports."""

from __future__ import annotations

import pytest
import torch

from radscribe.grounding import create_codec
from radscribe.infer import ConstraintLimits, TokenConstraint, Vocabulary, constrained_generate_kwargs, grounding_grammar, template_grammar
from radscribe.infer.grammar import NumberRule
from radscribe.templates import GroundedFinding, load_template, parse, render, validate
from radscribe.types import Box

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPINE = "spine-ap-alignment"
CURVE = {"region": "thoracic", "convexity": "right", "apex": "T8", "upper": "T5", "lower": "T11", "angle": 23.5, "severity": "mild"}


@pytest.mark.parametrize("name", ["spine-ap-alignment", "chest-pa", "spine-lumbar-vindr"])
def test_grammar_accepts_the_rendered_normal_report(name):
    template = load_template(name)
    assert template_grammar(template).accepts(render(template.normal()))


def test_grammar_accepts_grounded_curves_and_rejects_bad_values():
    template = load_template(SPINE)
    filled = template.normal()
    codec = create_codec("radscribe")
    box = Box("thoracic curve 1", 0.4, 0.2, 0.6, 0.5)
    filled.set("alignment.curves", [GroundedFinding(dict(CURVE), [box])])
    grammar = template_grammar(template)
    text = render(filled, box_text=lambda boxes: "".join(codec.encode(b, (229, 416)) for b in boxes))
    assert "<loc_" in text and grammar.accepts(text)
    assert not grammar.accepts(text.replace("**Projection:** AP", "**Projection:** LAT"))        # enum
    assert not grammar.accepts(text.replace("23.5 degrees", "230.5 degrees"))                   # range
    assert not grammar.accepts(text.replace("23.5 degrees", "23.55 degrees"))                   # decimals
    assert not grammar.accepts(text.replace("# Spine AP alignment report", "# Spine report"))   # fixed text


def test_number_rule_keeps_only_prefixes_that_can_end_in_range():
    rule = NumberRule(0, 30, 0)
    assert rule.viable("3") and rule.viable("30") and not rule.viable("31") and not rule.viable("-")
    assert not rule.viable("05") and not rule.viable("3.") and rule.complete("17") and not rule.complete("")
    angle = NumberRule(0, 180, 1)
    assert angle.viable("17") and angle.viable("179.") and not angle.viable("181") and not angle.viable("1.23")
    assert angle.extra_characters("") == 1 and angle.extra_characters("12.") == 1


@pytest.fixture(scope="module")
def tiny():
    from radscribe.models import create_model

    return create_model("radscribe-tiny-test")


def _images(n: int):
    import numpy as np

    from radscribe.data.images import Radiograph

    generator = np.random.default_rng(0)
    return [Radiograph(generator.random((96, 64), dtype=np.float32), path=f"synthetic-{i}.png") for i in range(n)]


def test_random_model_constrained_output_always_parses_and_validates(tiny):
    limits = ConstraintLimits(text_tokens=6, max_items=2, max_elements=1, max_boxes=1, phrase_tokens=3)
    template = load_template(SPINE)
    constraint = TokenConstraint(template_grammar(template, limits=limits), Vocabulary.from_model(tiny))
    prompts = ["Complete the structured report for this radiograph."] * 8
    outputs = []
    for seed in range(2):
        torch.manual_seed(seed)
        outputs += tiny.generate(_images(8), prompts, do_sample=True, temperature=1.5, **constrained_generate_kwargs(constraint, 400))
    codec = create_codec("radscribe")
    for text in outputs:
        filled = parse(text, template, box_parser=lambda s: codec.decode(s, (64, 96)).boxes)
        assert validate(filled) == [], text
    unconstrained = tiny.generate(_images(4), prompts[:4], max_new_tokens=60)
    failures = 0
    for text in unconstrained:
        try:
            failures += bool(validate(parse(text, template)))
        except Exception:
            failures += 1
    assert failures >= 3


def test_constrained_grounding_decodes_to_boxes(tiny):
    constraint = TokenConstraint(grounding_grammar("vertebra", max_boxes=3), Vocabulary.from_model(tiny))
    texts = tiny.generate(_images(2), ["Locate: vertebra"] * 2, **constrained_generate_kwargs(constraint, 60))
    for text in texts:
        decoded = create_codec("radscribe").decode(text, (64, 96))
        assert decoded.errors == [] and 1 <= len(decoded.boxes) <= 3
        assert all(box.label == "vertebra" for box in decoded.boxes)


def test_a_budget_too_small_for_the_template_is_refused(tiny):
    constraint = TokenConstraint(template_grammar(SPINE), Vocabulary.from_model(tiny))
    with pytest.raises(ValueError, match="too small"):
        constrained_generate_kwargs(constraint, 20)


def test_a_logits_processor_reused_for_a_second_generate_call_says_so(tiny):
    constraint = TokenConstraint(grounding_grammar("vertebra", max_boxes=1), Vocabulary.from_model(tiny))
    kwargs = constrained_generate_kwargs(constraint, 60)
    tiny.generate(_images(3), ["Locate: vertebra"] * 3, **kwargs)
    with pytest.raises(ValueError, match="one generate call"):
        tiny.generate(_images(2), ["Locate: vertebra"] * 2, **kwargs)
