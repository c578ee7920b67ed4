"""Tasks on studies imported from the real data sets (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radscribe.data import read_manifest
from radscribe.data.importers import import_dataset
from radscribe.grounding import create_codec
from radscribe.tasks import TASKS, Example, ExampleDataset, build_examples, prompt
from radscribe.types import QA, Box, Finding, ImageRef, Study


def _import(kind: str, source: Path, folder: Path) -> list[Study]:
    out = folder / f"{kind}.jsonl"
    import_dataset(kind, source, out)
    return read_manifest(out)


@pytest.fixture(scope="module")
def cadma_valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Study], Path]:
    from conftest import shared_path

    folder = tmp_path_factory.mktemp("cadma")
    return _import("cadma", shared_path("spine-cadma", "valid"), folder), folder


def _close(got: Box, want: Box, tolerance: tuple[float, float]) -> bool:
    tx, ty = tolerance
    return all(abs(a - b) <= t + 1e-9 for a, b, t in zip(got.xyxy, want.xyxy, (tx, ty, tx, ty), strict=True))


@pytest.mark.parametrize("codec_name", ["radscribe", "paligemma", "qwen2.5-vl"])
def test_cadma_phrase_grounding_gives_vertebrae_top_to_bottom_and_the_column(cadma_valid, codec_name: str) -> None:
    studies, folder = cadma_valid
    codec = create_codec(codec_name)
    built = build_examples(studies[:40], folder, ["phrase_grounding"], codec)
    with_boxes = [s for s in studies[:40] if s.boxes]
    assert built.counts == {"phrase_grounding": 2 * len(with_boxes)}  # "vertebra" and "spine column"
    study = with_boxes[0]
    vertebra, column = [e for e in built if e.study_id == study.id]
    assert vertebra.prompt == prompt("phrase_grounding", phrase="vertebra") and column.prompt.endswith("spine column")
    assert vertebra.images[0].is_absolute() and vertebra.images[0].exists()
    size = tuple(vertebra.metadata["image_size"])
    decoded = codec.decode(vertebra.target, size)
    assert decoded.errors == [] and len(decoded.boxes) == len(study.boxes) >= 11
    centres = [b.center[1] for b in decoded.boxes]
    assert centres == sorted(centres)  # reading order: top to bottom
    assert all(_close(g, w, codec.tolerance(size)) for g, w in zip(decoded.boxes, study.boxes, strict=True))
    (col,) = codec.decode(column.target, size).boxes
    union = (min(b.x_min for b in study.boxes), min(b.y_min for b in study.boxes),
             max(b.x_max for b in study.boxes), max(b.y_max for b in study.boxes))
    assert _close(col, Box("spine column", *union), codec.tolerance(size))


def test_cadma_region_and_grounded_report(cadma_valid) -> None:
    studies, folder = cadma_valid
    codec = create_codec("radscribe")
    built = build_examples(studies[:20], folder, ["region", "grounded_report", "report", "vqa"], codec)
    with_boxes = sum(bool(s.boxes) for s in studies[:20])
    assert built.counts == {"region": with_boxes, "grounded_report": with_boxes, "report": 0, "vqa": 0}
    region = next(e for e in built if e.task == "region")
    assert region.prompt == "Locate the spine column." and region.metadata["region"] == "spine column"
    assert region.metadata["boxes"][0]["source"] == "union"
    report = next(e for e in built if e.task == "grounded_report" and e.study_id == region.study_id)
    decoded = codec.decode(report.target, tuple(report.metadata["image_size"]))
    assert decoded.errors == [] and {b.label for b in decoded.boxes} == {"vertebra"}
    assert len(decoded.boxes) == len(report.metadata["boxes"])


def test_vqa_rad_gives_one_example_per_question(vqa_rad_dir: Path, tmp_path: Path) -> None:
    studies = _import("vqa-rad", vqa_rad_dir, tmp_path)
    built = build_examples(studies, tmp_path, ["vqa", "phrase_grounding"], "radscribe")
    assert built.counts["vqa"] == sum(len(s.qa) for s in studies) > 3000
    assert built.counts["phrase_grounding"] == 0
    first = studies[0].qa[0]
    example = next(e for e in built if e.study_id == studies[0].id)
    assert example.prompt == f"Question: {first.question.strip()}\nAnswer:" and example.target == first.answer.strip()
    assert example.metadata["answer_type"] in ("open", "closed") and example.images[0].exists()


def test_nih_boxes_ground_their_findings(nih_dir: Path, tmp_path: Path) -> None:
    studies = _import("nih-cxr14", nih_dir, tmp_path)
    boxed = [s for s in studies if s.boxes]
    built = build_examples(studies, tmp_path, ["grounded_report", "phrase_grounding", "region"], "maira2")
    assert built.counts["grounded_report"] == len(boxed) > 0 and built.counts["region"] == 0
    codec = create_codec("maira2")
    for example in (e for e in built if e.task == "grounded_report"):
        study = next(s for s in boxed if s.id == example.study_id)
        labels = {b.label for b in codec.decode(example.target, tuple(example.metadata["image_size"])).boxes}
        assert labels == {b.label for b in study.boxes}
        unboxed = set(study.positive_labels()) - labels
        assert all(label in example.target.splitlines() for label in unboxed)


def test_iu_reports_are_text_only_examples_on_request(iu_dir: Path, tmp_path: Path) -> None:
    studies = _import("iu-xray", iu_dir, tmp_path)[:200]
    assert build_examples(studies, tmp_path, ["report"], "radscribe").counts == {"report": 0}  # no images here
    built = build_examples(studies, tmp_path, ["report"], "radscribe", options={"report": {"allow_text_only": True}})
    assert built.counts["report"] == sum(bool(s.report_text) for s in studies) > 100
    assert all(e.images == () and e.target for e in built)
    with_indication = [e for e in built if e.prompt.startswith("Indication: ")]
    assert with_indication and all(e.prompt.endswith(prompt("report")) for e in with_indication)


# --- Studies built in the test, for what no shared data set carries ---------------------------------


def _spine_study(cadma_valid, **fields) -> tuple[Study, Path]:
    studies, folder = cadma_valid
    base = next(s for s in studies if s.boxes)
    return Study(id=base.id, images=base.images, boxes=base.boxes, **fields), folder


def test_structured_report_targets_the_filled_template(cadma_valid) -> None:
    from radscribe.templates import load_template, render

    template = load_template("spine-ap-alignment")
    markdown = render(template.normal())
    study, folder = _spine_study(cadma_valid, template="spine-ap-alignment", structured=markdown)
    plain = build_examples([study], folder, ["structured_report"], "radscribe")
    assert [e.target for e in plain] == [markdown.strip()] and plain[0].prompt == prompt("structured_report")
    guided = build_examples([study], folder, ["structured_report"], "radscribe", options={"structured_report": {"skeleton_in_prompt": True}})
    assert template.skeleton().strip() in guided[0].prompt and guided[0].metadata["template"] == "spine-ap-alignment"
    nameless, _ = _spine_study(cadma_valid, structured=markdown)
    assert build_examples([nameless], folder, ["structured_report"], "radscribe", options={"structured_report": {"skeleton_in_prompt": True}}).counts == {"structured_report": 0}
    empty, _ = _spine_study(cadma_valid, template="spine-ap-alignment", structured="  ")
    assert build_examples([empty], folder, ["structured_report"], "radscribe").counts == {"structured_report": 0}


def test_report_puts_the_indication_in_the_prompt(cadma_valid) -> None:
    study, folder = _spine_study(cadma_valid, report={"findings": "Mild dextroscoliosis.", "impression": "Scoliosis.", "indication": "Back pain."})
    (report,) = build_examples([study], folder, ["report"], "radscribe")
    assert report.target == "Mild dextroscoliosis. Scoliosis."
    assert report.prompt == prompt("report_indication", indication="Back pain.")
    (grounded,) = build_examples([study], folder, ["grounded_report"], "radscribe")
    assert grounded.target.splitlines()[0] == "Mild dextroscoliosis. Scoliosis."


def test_boxes_and_questions_use_the_image_they_name(tmp_path: Path) -> None:
    images = [ImageRef("a.png", 200, 100), ImageRef("b.png", 300, 300)]
    study = Study(
        id="two-views",
        images=images,
        boxes=[Box("nodule", 0.1, 0.1, 0.2, 0.2, image=1)],
        qa=[QA("Is there a nodule?", "yes", "closed", image=1)],
        findings=[Finding("Nodule")],
    )
    built = build_examples([study], tmp_path, ["phrase_grounding", "vqa", "grounded_report"], "radscribe")
    assert built.counts == {"phrase_grounding": 1, "vqa": 1, "grounded_report": 0}  # no box on image 0
    assert all(e.images == ((tmp_path / "b.png").resolve(),) for e in built)
    assert built[0].metadata["image_size"] == [300, 300] and built[0].metadata["image"] == 1


def test_build_examples_checks_task_names_and_reports_counts(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known: structured_report"):
        build_examples([], tmp_path, ["captioning"], "radscribe")
    with pytest.raises(KeyError, match="unknown task"):
        build_examples([], tmp_path, ["vqa"], "radscribe", options={"segment": {}})
    built = build_examples([Study(id="empty")], tmp_path, list(TASKS), "radscribe")
    assert built == [] and built.counts == dict.fromkeys(TASKS, 0) and built.studies == 1


def test_examples_round_trip_and_dataset_groups_them(tmp_path: Path) -> None:
    example = Example("vqa", "s1", (tmp_path / "x.png",), "Question: q\nAnswer:", "yes", {"answer_type": "closed"})
    assert Example.from_dict(example.to_dict()) == example
    with pytest.raises(ValueError, match="lacks target"):
        Example.from_dict({"task": "vqa", "study_id": "s", "images": [], "prompt": "p"})
    dataset = ExampleDataset([example, Example("report", "s1", (), "p", "t")])
    assert len(dataset) == 2 and dataset[1].task == "report" and dataset.counts() == {"vqa": 1, "report": 1}
    assert list(dataset.by_task()) == ["vqa", "report"]
