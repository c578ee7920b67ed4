"""Tasks: each turns one :class:`~radscribe.types.Study` into examples (prompt -> target).

A task is ``(study, manifest_dir, codec, **options) -> list[Example]`` in :data:`TASKS`. A study that
lacks what a task needs (no report, no boxes...) gives that task no examples. Report tasks use the
study's image 0; box and QA tasks use the image each box or QA names. Grounding targets are written
with the backbone's :class:`~radscribe.grounding.BoxCodec`, and their metadata carries the boxes and
the original image size an evaluator needs to decode and score a prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from radscribe.data.images import read_image_size
from radscribe.grounding import BoxCodec, create_codec
from radscribe.tasks.example import Example
from radscribe.tasks.prompts import prompt, region_rules
from radscribe.types import Box, Study

Task = Callable[..., list[Example]]
TASKS: dict[str, Task] = {}


def register_task(name: str) -> Callable[[Task], Task]:
    def decorate(function: Task) -> Task:
        TASKS[name] = function
        return function

    return decorate


def _image(study: Study, manifest_dir: Path, index: int) -> tuple[Path, tuple[int, int]] | None:
    """Absolute path and (width, height) of image ``index``, or None if the study has no such image."""
    if index >= len(study.images):
        return None
    ref = study.images[index]
    path = Path(ref.path)
    path = path if path.is_absolute() else (Path(manifest_dir) / path).resolve()
    size = (ref.width, ref.height) if ref.width and ref.height else read_image_size(path)
    return path, size


def reading_order(boxes: Iterable[Box]) -> list[Box]:
    """Top to bottom, then left to right: the order a radiologist counts vertebrae in."""
    return sorted(boxes, key=lambda box: (box.center[1], box.center[0]))


def union_box(label: str, boxes: Sequence[Box]) -> Box:
    return Box.enclosing(label, boxes, source="union", image=boxes[0].image)


def region_boxes(study: Study, image: int) -> list[Box]:
    """The region boxes of one image (e.g. the spine column), annotated or derived from their parts."""
    on_image = [box for box in study.boxes if box.image == image]
    found = []
    for region, (part, min_parts) in region_rules().items():
        annotated = [box for box in on_image if box.label == region]
        parts = [box for box in on_image if box.label == part]
        if annotated:
            found.append(annotated[0])
        elif len(parts) >= min_parts:
            found.append(union_box(region, parts))
    return found


def _grouped(boxes: Iterable[Box]) -> dict[str, list[Box]]:
    """Boxes per label, labels in order of first appearance in reading order."""
    groups: dict[str, list[Box]] = {}
    for box in reading_order(boxes):
        groups.setdefault(box.label, []).append(box)
    return groups


def _box_metadata(codec: BoxCodec, size: tuple[int, int], boxes: Iterable[Box], **extra: Any) -> dict[str, Any]:
    return {"codec": codec.name, "image_size": list(size), "boxes": [box.to_dict() for box in boxes], **extra}


@lru_cache(maxsize=16)
def _skeleton(template: str) -> str:
    from radscribe.templates import load_template

    return load_template(template).skeleton()


@register_task("structured_report")
def structured_report(
    study: Study, manifest_dir: Path, codec: BoxCodec, skeleton_in_prompt: bool = False, allow_text_only: bool = False,
    templates: Sequence[str] | None = None,
) -> list[Example]:
    """MGSL: the target is the filled markdown template; optionally the prompt shows its blank skeleton.

    ``templates`` keeps only studies filled with one of these templates (e.g. ``[chest-pa]`` when the
    spine template is computed from boxes instead of generated).
    """
    if not (study.structured or "").strip() or (templates is not None and study.template not in templates):
        return []
    image = _image(study, manifest_dir, 0)
    if image is None and not allow_text_only:
        return []
    if skeleton_in_prompt:
        if not study.template:
            return []
        text = prompt("structured_report_skeleton", skeleton=_skeleton(study.template).strip())
    else:
        text = prompt("structured_report")
    images = (image[0],) if image else ()
    return [Example("structured_report", study.id, images, text, study.structured.strip(), {"template": study.template})]


@register_task("report")
def report(study: Study, manifest_dir: Path, codec: BoxCodec, allow_text_only: bool = False) -> list[Example]:
    """Free text: findings then impression; the indication, when known, goes into the prompt."""
    target = study.report_text
    image = _image(study, manifest_dir, 0)
    if not target or (image is None and not allow_text_only):
        return []
    indication = study.report.get("indication", "").strip()
    text = prompt("report_indication", indication=indication) if indication else prompt("report")
    return [Example("report", study.id, (image[0],) if image else (), text, target, {})]


@register_task("grounded_report")
def grounded_report(study: Study, manifest_dir: Path, codec: BoxCodec) -> list[Example]:
    """The report (if any) followed by one grounded line per label of image 0's boxes, in reading order.

    Without report text, positive findings that have no box follow as plain lines, so that the
    target still says everything known about the study (MAIRA-2's ungrounded sentences).
    """
    image = _image(study, manifest_dir, 0)
    boxes = [box for box in study.boxes if box.image == 0]
    if image is None or not boxes:
        return []
    path, size = image
    groups = _grouped(boxes)
    lines = [codec.encode_phrase(label, group, size) for label, group in groups.items()]
    if study.report_text:
        lines.insert(0, study.report_text)
    else:
        lines += [label for label in dict.fromkeys(study.positive_labels()) if label not in groups]
    metadata = _box_metadata(codec, size, reading_order(boxes))
    return [Example("grounded_report", study.id, (path,), prompt("grounded_report"), "\n".join(lines), metadata)]


@register_task("phrase_grounding")
def phrase_grounding(study: Study, manifest_dir: Path, codec: BoxCodec, labels: Sequence[str] | None = None) -> list[Example]:
    """One example per distinct label and image: the phrase in, all its boxes (reading order) out.

    Regions missing from the boxes but derivable from their parts (the spine column) count as labels.
    ``labels`` keeps only these phrases (e.g. ``[vertebra]`` without the level names).
    """
    examples = []
    for index in sorted({box.image for box in study.boxes}):
        image = _image(study, manifest_dir, index)
        if image is None:
            continue
        path, size = image
        groups = _grouped(box for box in study.boxes if box.image == index)
        for region in region_boxes(study, index):
            groups.setdefault(region.label, [region])
        for label, group in groups.items():
            if not label.strip() or (labels is not None and label not in labels):
                continue
            target = codec.encode_phrase(label, group, size)
            metadata = _box_metadata(codec, size, group, phrase=label, image=index)
            examples.append(Example("phrase_grounding", study.id, (path,), prompt("phrase_grounding", phrase=label), target, metadata))
    return examples


@register_task("detected_grounding")
def detected_grounding(
    study: Study, manifest_dir: Path, codec: BoxCodec, labels: Sequence[str] = ("vertebra",), jitter: float = 0.1,
    drop: float = 0.05, extra: float = 0.1, seed: int = 0,
) -> list[Example]:
    """Phrase grounding with a detector's boxes in the prompt (PromptMRG-style); the target is the true boxes.

    Training data has no detector output, so the prompt holds the true boxes perturbed the way a
    detector errs (:func:`perturb_boxes`; seeded by ``seed`` and the study, and drawn afresh by the
    trainer's augmentation); at inference the detector's boxes take their place.
    """
    examples = []
    for example in phrase_grounding(study, manifest_dir, codec, labels):
        phrase = example.metadata["phrase"]
        boxes = [Box.from_dict(box) for box in example.metadata["boxes"]]
        rng = np.random.default_rng([seed, *study.id.encode()])
        proposals = perturb_boxes(boxes, rng, jitter, drop, extra)
        size = tuple(example.metadata["image_size"])
        metadata = {**example.metadata, "perturbation": {"jitter": jitter, "drop": drop, "extra": extra}}
        examples.append(Example("detected_grounding", study.id, example.images,
                                detected_prompt(phrase, proposals, size, codec), example.target, metadata))
    return examples


def detected_prompt(phrase: str, proposals: Sequence[Box], image_size: tuple[int, int], codec: BoxCodec) -> str:
    """The detected-grounding prompt for ``proposals`` (normalised on the image the model sees)."""
    detected = codec.encode_phrase(phrase, reading_order(proposals), image_size) if proposals else "none"
    return prompt("detected_grounding", phrase=phrase, proposals=detected)


def perturb_boxes(boxes: Sequence[Box], rng: np.random.Generator, jitter: float, drop: float, extra: float) -> list[Box]:
    """Boxes as a detector might return them: each edge moved by N(0, ``jitter`` x box height), each box
    missed with probability ``drop``, and with probability ``extra`` at each end of the chain one more box
    one spacing beyond it (detectors add the unlabelled vertebra past either end of a labelled chain)."""
    ordered = reading_order(boxes)
    out = []
    for box in ordered:
        if rng.random() < drop:
            continue
        noise = rng.normal(0.0, jitter * box.height, 4)
        out.append(Box.from_xyxy(box.label, [v + n for v, n in zip(box.xyxy, noise)], source="perturbed"))
    if len(ordered) >= 2:
        for end, neighbour in ((ordered[0], ordered[1]), (ordered[-1], ordered[-2])):
            if rng.random() < extra:
                dx, dy = end.center[0] - neighbour.center[0], end.center[1] - neighbour.center[1]
                shifted = (end.x_min + dx, end.y_min + dy, end.x_max + dx, end.y_max + dy)
                if all(0.0 <= v <= 1.0 for v in shifted):
                    out.append(Box.from_xyxy(end.label, shifted, source="perturbed"))
    return [box for box in out if box.width > 0 and box.height > 0]


@register_task("vqa")
def vqa(study: Study, manifest_dir: Path, codec: BoxCodec) -> list[Example]:
    """One example per question, on the image the question is about."""
    examples = []
    for qa in study.qa:
        image = _image(study, manifest_dir, qa.image)
        if image is None or not qa.question.strip() or not qa.answer.strip():
            continue
        metadata = {"answer_type": qa.answer_type, "question_type": qa.question_type, "qa_id": qa.id}
        examples.append(Example("vqa", study.id, (image[0],), prompt("vqa", question=qa.question.strip()), qa.answer.strip(), metadata))
    return examples


@register_task("region")
def region(study: Study, manifest_dir: Path, codec: BoxCodec) -> list[Example]:
    """Image -> region box (spine column, organ): the target Region-Focused Inference crops to."""
    examples = []
    for index in sorted({box.image for box in study.boxes}):
        image = _image(study, manifest_dir, index)
        if image is None:
            continue
        path, size = image
        for box in region_boxes(study, index):
            metadata = _box_metadata(codec, size, [box], region=box.label, image=index)
            examples.append(Example("region", study.id, (path,), prompt("region", region=box.label), codec.encode(box, size), metadata))
    return examples


class BuiltExamples(list[Example]):
    """The examples of :func:`build_examples`, with how many each task gave (zeros included)."""

    def __init__(self, examples: Iterable[Example], counts: dict[str, int], studies: int):
        super().__init__(examples)
        self.counts = counts
        self.studies = studies

    def by_task(self) -> dict[str, list[Example]]:
        grouped: dict[str, list[Example]] = {task: [] for task in self.counts}
        for example in self:
            grouped[example.task].append(example)
        return grouped


def build_examples(
    studies: Iterable[Study],
    manifest_dir: Path | str,
    tasks: Sequence[str],
    codec: BoxCodec | str,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> BuiltExamples:
    """Every example of ``tasks`` from ``studies``; ``options`` per task name (e.g.
    ``{"structured_report": {"skeleton_in_prompt": True}}``). ``.counts`` gives examples per task."""
    unknown = [task for task in [*tasks, *(options or {})] if task not in TASKS]
    if unknown:
        raise KeyError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    codec = create_codec(codec) if isinstance(codec, str) else codec
    manifest_dir = Path(manifest_dir)
    examples: list[Example] = []
    counts = dict.fromkeys(tasks, 0)
    studies_seen = 0
    for study in studies:
        studies_seen += 1
        for task in tasks:
            made = TASKS[task](study, manifest_dir, codec, **dict((options or {}).get(task, {})))
            counts[task] += len(made)
            examples.extend(made)
    return BuiltExamples(examples, counts, studies_seen)
