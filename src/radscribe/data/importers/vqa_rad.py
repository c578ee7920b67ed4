"""VQA-RAD (``vqa-rad``) in the MEVF layout: ``trainset.json`` / ``testset.json`` plus ``images/``.

Each json record is one question: ``qid, image_name, image_organ, question, answer, answer_type
(CLOSED/OPEN), question_type, phrase_type``. One study per image carries all of its questions, in
file order. SRC is the folder (``--option file=testset.json`` picks another file, default
``trainset.json``) or the json file itself; the split follows the file name (train/test).
VQA-RAD: Lau et al., Scientific Data 2018, public (CC0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import image_ref, images_folder, load_json
from radscribe.types import QA, SchemaError, Study

REQUIRED = ("image_name", "question", "answer", "answer_type")


@register("vqa-rad", options=("file", "images"))
def import_vqa_rad(source: Path, context: ImportContext) -> Iterator[Study]:
    json_path = source if source.is_file() else source / context.options.get("file", "trainset.json")
    if not json_path.is_file():
        raise FileNotFoundError(f"VQA-RAD question file not found: {json_path}")
    folder = images_folder(context, json_path.parent / "images")
    if folder is None:
        raise FileNotFoundError(f"VQA-RAD images not found: expected {json_path.parent / 'images'} or --images DIR")
    records = load_json(json_path)
    if not isinstance(records, list):
        raise RecordError(str(json_path), f"expected a list of question records, got {type(records).__name__}")
    split = "test" if "test" in json_path.stem.lower() else "train" if "train" in json_path.stem.lower() else None

    # Group questions by image, keeping the first-seen image order; a bad question spoils its image.
    groups: dict[str, list[tuple[int, dict]]] = {}
    for index, record in enumerate(records):
        name = record.get("image_name") if isinstance(record, dict) else None
        groups.setdefault(str(name), []).append((index, record))

    for name, items in groups.items():
        try:
            questions = [_qa(json_path, index, record) for index, record in items]
            image = folder / name
            if not image.is_file():
                raise RecordError(f"{json_path}: record {items[0][0]}", f"expected the image {image} to exist")
            reference = image_ref(context, image, f"{json_path}: record {items[0][0]}")
        except RecordError as error:
            context.reject(error)
            continue
        organs = sorted({str(record.get("image_organ", "")).strip() for _, record in items} - {""})
        yield Study(
            id=Path(name).stem,
            images=[reference],
            split=split,
            qa=questions,
            metadata={"dataset": "vqa-rad", **({"organ": organs[0] if len(organs) == 1 else organs} if organs else {})},
        )


def _qa(path: Path, index: int, record: object) -> QA:
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
        raise RecordError(where, f"expected an object, got {type(record).__name__}")
    if "qid" in record:
        where += f" (qid {record['qid']})"
    missing = [key for key in REQUIRED if record.get(key) in (None, "")]
    if missing:
        raise RecordError(where, f"expected the field(s) {', '.join(missing)}")
    question_type = record.get("question_type")
    try:
        return QA(
            question=str(record["question"]).strip(),
            answer=str(record["answer"]).strip(),  # a few answers are numbers (counts)
            answer_type=str(record["answer_type"]).strip().lower(),  # type: ignore[arg-type]
            question_type=str(question_type).strip() if question_type not in (None, "") else None,
            id=str(record["qid"]) if "qid" in record else None,
        )
    except SchemaError as error:
        raise RecordError(where, f"field '{error.field}': expected {error.expected}, got {error.got!r}") from None
