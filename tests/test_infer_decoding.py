"""Our constrained decoding loop and the canonical token ids it writes for fixed template text.

The central check runs on real CADMA targets built the way training builds them (shared data ->
manifest -> spine annotation -> task examples): when the model picks the reference values, the ids the
decoder writes itself plus the ids the model picks are exactly ``tokenizer.encode(target)``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from radscribe.annotate import annotate_spine_manifest
from radscribe.data.images import Radiograph
from radscribe.data.importers.cadma import read_yolo_labels
from radscribe.data.manifest import read_manifest, write_manifest
from radscribe.grounding import create_codec
from radscribe.infer import ConstraintLimits, TokenConstraint, Vocabulary, constrained_generate_kwargs, grounding_grammar, template_grammar
from radscribe.infer.constraint import RowCursor
from radscribe.infer.decoding import DraftMemory, generate_constrained
from radscribe.infer.tokens import SpanTokenizer, token_texts
from radscribe.models.radscribe_tiny import DEFAULT_TOKENIZER
from radscribe.models.tokenizer import load_tokenizer
from radscribe.tasks import build_examples
from radscribe.templates import parse, validate
from radscribe.types import ImageRef, Study

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPINE = "spine-ap-alignment"
SMALL = ConstraintLimits(text_tokens=6, max_items=2, max_elements=1, max_boxes=1, phrase_tokens=3)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_TOKENIZER)


@pytest.fixture(scope="module")
def vocabulary(tokenizer):
    return Vocabulary(token_texts(tokenizer), [tokenizer.token_to_id("<eos>")], SpanTokenizer(tokenizer))


@pytest.fixture(scope="module")
def cadma_examples(tmp_path_factory):
    """Structured-report and phrase-grounding examples of 24 CADMA valid films, built as for training."""
    from conftest import shared_path

    cadma = shared_path("spine-cadma")
    studies = []
    for label_file in sorted((cadma / "valid" / "labels").glob("*.txt"))[:24]:
        image = cadma / "valid" / "images" / f"{label_file.stem}.jpg"
        width, height = Image.open(image).size
        boxes = read_yolo_labels(label_file, ("vertebra",), "cadma")
        studies.append(Study(label_file.stem, [ImageRef(str(image), width, height, view="AP")], split="valid", boxes=boxes))
    folder = tmp_path_factory.mktemp("cadma")
    write_manifest(studies, folder / "cadma.jsonl")
    annotate_spine_manifest(folder / "cadma.jsonl", folder / "spine.jsonl")
    return build_examples(read_manifest(folder / "spine.jsonl"), folder, ["structured_report", "phrase_grounding"], create_codec("radscribe"))


def teach(constraint: TokenConstraint, reference: list[int], budget: int = 2000) -> tuple[list[int], int]:
    """Run a cursor whose every choice is the reference's next id; (ids written, choices made)."""
    cursor = RowCursor(constraint, budget)
    choices = 0
    while cursor.prepare():
        assert cursor.ids == reference[: len(cursor.ids)], "fixed text written with other ids than the tokenizer's"
        wanted = reference[len(cursor.ids)]
        assert wanted in set(cursor.allowed().tolist()), f"reference id {wanted} not allowed after {cursor.text[-40:]!r}"
        cursor.choose(wanted)
        choices += 1
    return cursor.ids, choices


def test_fixed_text_uses_the_tokenizers_ids_on_real_cadma_targets(cadma_examples, tokenizer, vocabulary):
    eos = tokenizer.token_to_id("<eos>")
    report = TokenConstraint(template_grammar(SPINE), vocabulary)
    grounding: dict[str, TokenConstraint] = {}
    reports = [e for e in cadma_examples if e.task == "structured_report"]
    phrases = [e for e in cadma_examples if e.task == "phrase_grounding"]
    assert len(reports) == 24 and {e.metadata["phrase"] for e in phrases} >= {"vertebra", "spine column", "L5"}
    total_ids = total_choices = 0
    for example in reports + phrases:
        constraint = report
        if example.task == "phrase_grounding":
            phrase = example.metadata["phrase"]
            constraint = grounding.setdefault(phrase, TokenConstraint(grounding_grammar(phrase), vocabulary))
        reference = tokenizer.encode(example.target, add_special_tokens=False).ids
        ids, choices = teach(constraint, reference + [eos])
        assert ids == reference, example.target
        total_ids, total_choices = total_ids + len(ids), total_choices + choices
    assert total_choices < 0.5 * total_ids  # most of every target is fixed text, written without the model


def test_a_space_before_a_value_is_written_with_the_value(tokenizer, vocabulary):
    cursor = RowCursor(TokenConstraint(template_grammar(SPINE), vocabulary), 800)
    assert cursor.prepare()
    assert cursor.text.endswith("**Projection:**") and cursor.pending == " "
    assert cursor.ids == tokenizer.encode(cursor.text, add_special_tokens=False).ids
    allowed = {vocabulary.texts[i] for i in cursor.allowed()}
    assert {" AP", " PA"} <= allowed and "AP" not in allowed  # training wrote " AP", one token


def test_a_split_the_tokenizer_would_not_write_is_retokenized(tokenizer, vocabulary):
    def write_projection(retokenize: bool) -> list[str]:
        cursor = RowCursor(TokenConstraint(template_grammar(SPINE), vocabulary), 800, retokenize=retokenize)
        cursor.prepare()
        cursor.choose(tokenizer.token_to_id("ĠA"))  # the model starts " AP" with " A"; the grammar fixes "P"
        cursor.prepare()
        if not retokenize:  # ids only grow: the model writes "P" itself, then the header follows
            assert cursor.pending.startswith("P\n")
            cursor.choose(tokenizer.token_to_id("P"))
            cursor.prepare()
        texts = [vocabulary.texts[i] for i in cursor.ids]
        return texts[texts.index(":**") :][:6]

    assert write_projection(True) == [":**", " AP", "\n", "\n", "##", " V"]
    assert write_projection(False) == [":**", " A", "P", "\n", "\n", "##"]


def test_location_tokens_are_written_whole(vocabulary):
    cursor = RowCursor(TokenConstraint(grounding_grammar("vertebra", max_boxes=2), vocabulary), 100)
    assert cursor.prepare() and cursor.pending == "<loc_"
    allowed = {vocabulary.texts[i] for i in cursor.allowed()}
    assert len(allowed) == 256 and all(text.startswith("<loc_") and text.endswith(">") for text in allowed)


def test_span_tokenizer_holds_back_only_what_may_merge(tokenizer):
    spans = SpanTokenizer(tokenizer)
    assert spans.stable_length("**Projection:** ", frozenset("AP")) == len("**Projection:**")
    assert spans.stable_length("**Projection:**", frozenset(" \n")) == len("**Projection:**")
    assert spans.stable_length("<box>vertebra<loc_", frozenset("0123456789")) == len("<box>vertebra")
    assert spans.stable_length("levels are", frozenset()) == len("levels are")  # the document ends


def test_draft_memory_guesses_from_the_row_then_from_earlier_outputs(vocabulary):
    constraint = TokenConstraint(grounding_grammar("vertebra"), vocabulary)
    memory = DraftMemory()
    assert memory.draft(constraint, [5, 6, 7, 5, 6], 3) == [7, 5, 6]
    memory.add(constraint, [1, 2, 3, 4, 9])
    assert memory.draft(constraint, [8, 2, 3], 2) == [4, 9]
    assert memory.draft(constraint, [8, 2, 3], 0) == [] and memory.draft(constraint, [7, 7, 7, 8], 2) == []


# ------------------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def tiny():
    from radscribe.models import create_model

    return create_model("radscribe-tiny-test")


def _images(n: int, seed: int = 0) -> list[Radiograph]:
    generator = np.random.default_rng(seed)
    return [Radiograph(generator.random((96, 64), dtype=np.float32), path=f"synthetic-{i}.png") for i in range(n)]


def _rows(tiny, n: int):
    """n images x (report, vertebra grounding): constraints, prompts, budgets, tasks."""
    vocabulary = Vocabulary.from_model(tiny)
    report = TokenConstraint(template_grammar(SPINE, limits=SMALL), vocabulary)
    grounding = TokenConstraint(grounding_grammar("vertebra", max_boxes=3), vocabulary)
    images = _images(n) * 2
    constraints = [report] * n + [grounding] * n
    prompts = ["Complete the structured report for this radiograph."] * n + ["Locate: vertebra"] * n
    return images, prompts, constraints, [400] * n + [60] * n, ["structured_report"] * n + ["phrase_grounding"] * n


def test_loop_writes_the_reference_when_the_model_agrees(tiny, cadma_examples):
    vocabulary = Vocabulary.from_model(tiny)
    chosen = [e for e in cadma_examples if e.task == "structured_report"][:2]
    chosen += [e for e in cadma_examples if e.task == "phrase_grounding" and e.metadata["phrase"] == "vertebra"][:2]
    constraints = [TokenConstraint(template_grammar(SPINE), vocabulary)] * 2 + [TokenConstraint(grounding_grammar("vertebra"), vocabulary)] * 2
    references = [tiny.tokenizer.encode(e.target, add_special_tokens=False).ids for e in chosen]

    def agree(row, cursor, logits):  # the model prefers the reference's next id
        logits = logits.clone()
        logits[(references[row] + tiny.eos_token_ids)[len(cursor.ids)]] += 1e4
        return logits

    outputs, stats = generate_constrained(
        tiny, [e.images[0] for e in chosen], [e.prompt for e in chosen], constraints, [768, 768, 400, 400],
        tasks=[e.task for e in chosen], logits_hook=agree,
    )
    assert [output.ids for output in outputs] == references
    assert all(output.complete for output in outputs)
    assert stats.forward_passes < stats.written_tokens / 4  # fixed text goes in whole spans, drafts check several choices


def test_constrained_loop_output_always_parses_and_validates_on_a_random_model(tiny):
    images, prompts, constraints, budgets, tasks = _rows(tiny, 4)
    template_outputs, grounding_outputs = [], []
    for seed in range(2):
        outputs, _ = generate_constrained(
            tiny, images, prompts, constraints, budgets, tasks=tasks, temperature=1.5, generator=torch.Generator().manual_seed(seed)
        )
        template_outputs += outputs[:4]
        grounding_outputs += outputs[4:]
    greedy, _ = generate_constrained(tiny, images, prompts, constraints, budgets, tasks=tasks)
    template_outputs += greedy[:4]
    grounding_outputs += greedy[4:]
    codec = create_codec("radscribe")
    for output in template_outputs:
        filled = parse(output.text, SPINE, box_parser=lambda s: codec.decode(s, (64, 96)).boxes)
        assert validate(filled) == [], output.text
    for output in grounding_outputs:  # the grammar fixes the syntax; a random model may still put x_max left of x_min
        assert re.fullmatch(r"<box>vertebra(<loc_\d+>){4,12}</box>", output.text) and output.text.count("<loc_") % 4 == 0, output.text


def test_batched_rows_decode_as_they_would_alone(tiny):
    images, prompts, constraints, budgets, tasks = _rows(tiny, 3)
    together, _ = generate_constrained(tiny, images, prompts, constraints, budgets, tasks=tasks)
    for index in range(len(images)):
        alone, _ = generate_constrained(tiny, [images[index]], [prompts[index]], [constraints[index]], budgets[index], tasks=[tasks[index]])
        assert alone[0].ids == together[index].ids


@pytest.mark.parametrize("draft_tokens", [0, 8])
def test_loop_matches_transformers_generate_with_the_logits_processor(tiny, draft_tokens):
    """Same cursor, two loops: ours (fixed text in one pass, drafts) and generate (one token per step).

    Without re-tokenisation (generate cannot take tokens back) both write the same ids.
    """
    images, prompts, constraints, budgets, tasks = _rows(tiny, 2)
    ours, _ = generate_constrained(tiny, images, prompts, constraints, budgets, tasks=tasks, retokenize=False, draft_tokens=draft_tokens)
    for index in range(len(images)):
        expected = tiny.generate([images[index]], [prompts[index]], tasks=[tasks[index]], **constrained_generate_kwargs(constraints[index], budgets[index]))
        assert ours[index].text == expected[0]


def test_llava_backbone_decodes_like_generate(tmp_path):
    from radscribe.models import create_model
    from radscribe.models.checkpoints import write_tiny_checkpoint

    model = create_model(write_tiny_checkpoint("llava", tmp_path / "llava"), device="cpu")
    constraint = TokenConstraint(template_grammar(SPINE, model.codec_name, SMALL), Vocabulary.from_model(model))
    images, prompts = _images(2), ["Complete the structured report."] * 2
    ours, _ = generate_constrained(model, images, prompts, [constraint] * 2, 400, retokenize=False)
    assert [output.text for output in ours] == model.generate(images, prompts, **constrained_generate_kwargs(constraint, 400))
