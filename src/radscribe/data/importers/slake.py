"""SLAKE (``slake``): bilingual medical VQA (Liu et al., ISBI 2021), https://www.med-vqa.com/slake/.

SRC is the Slake1.0 folder (``train.json``, ``validate.json``, ``test.json``, ``imgs/xmlabN/source.jpg``)
or one of its json files. Each record: ``img_id, img_name, question, answer, q_lang (en/zh),
answer_type (OPEN/CLOSED), content_type, modality, location, qid``. One study per image holds its
questions; ``content_type`` becomes the question type. English questions only by default
(``--option lang=all`` keeps both, ``lang=zh`` Chinese). Images are attached when ``imgs/`` (or
``--images DIR``) exists; without them the studies carry questions only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import canonical_split, image_ref, images_folder, load_json
from radscribe.types import QA, SchemaError, Study

SPLIT_FILES = ("train.json", "validate.json", "test.json")
REQUIRED = ("img_name", "question", "answer")


@register("slake", options=("lang", "images"))
def import_slake(source: Path, context: ImportContext) -> Iterator[Study]:
    files = [source] if source.is_file() else [source / name for name in SPLIT_FILES if (source / name).is_file()]
    if not files:
        raise FileNotFoundError(f"no SLAKE question files in {source}: expected {', '.join(SPLIT_FILES)}")
    lang = context.options.get("lang", "en").lower()
    if lang not in ("en", "zh", "all"):
        raise ValueError(f"--option lang: expected en, zh or all, got {lang!r}")
    folder = images_folder(context, files[0].parent / "imgs")

    groups: dict[str, dict] = {}
    for path in files:
        records = load_json(path)
        if not isinstance(records, list):
            raise RecordError(str(path), f"expected a list of question records, got {type(records).__name__}")
        split = canonical_split(path.stem)
        for index, record in enumerate(records):
            where = f"{path}: record {index}"
            if isinstance(record, dict) and lang != "all" and str(record.get("q_lang", "en")).lower() != lang:
                continue
            name = str(record.get("img_name", "")) if isinstance(record, dict) else ""
            group = groups.setdefault(name, {"where": where, "split": split, "records": []})
            group["records"].append((where, record, split))

    for name, group in groups.items():
        try:
            yield _study(context, folder, name, group)
        except RecordError as error:
            context.reject(error)


def _study(context: ImportContext, folder: Path | None, name: str, group: dict) -> Study:
    questions, modalities, locations = [], set(), set()
    for where, record, split in group["records"]:
        if split != group["split"]:
            raise RecordError(where, f"image {name} is in two splits ({group['split']} and {split}); expected one")
        questions.append(_qa(where, record))
        modalities.add(str(record.get("modality", "")).strip())
        locations.add(str(record.get("location", "")).strip())
    images = []
    if folder is not None:
        image = folder / name
        if not image.is_file():
            raise RecordError(group["where"], f"expected the image {image}")
        modality = next(iter(modalities - {""}), None) if len(modalities - {""}) == 1 else None
        images = [image_ref(context, image, group["where"], modality=modality)]
    path = Path(name)
    metadata: dict = {"dataset": "slake", "image_name": name}
    if locations - {""}:
        metadata["location"] = sorted(locations - {""})[0] if len(locations - {""}) == 1 else sorted(locations - {""})
    return Study(
        id=path.parent.name or path.stem,  # Slake names images xmlabN/source.jpg: the folder is the id
        images=images,
        split=group["split"],
        qa=questions,
        metadata=metadata,
    )


def _qa(where: str, record: object) -> QA:
    if not isinstance(record, dict):
        raise RecordError(where, f"expected an object, got {type(record).__name__}")
    missing = [key for key in REQUIRED if record.get(key) in (None, "")]
    if missing:
        raise RecordError(where, f"expected the field(s) {', '.join(missing)}")
    content_type = record.get("content_type")
    try:
        return QA(
            question=str(record["question"]).strip(),
            answer=str(record["answer"]).strip(),
            answer_type=str(record.get("answer_type", "OPEN")).strip().lower(),  # type: ignore[arg-type]
            question_type=str(content_type).strip() if content_type else None,
            id=str(record["qid"]) if record.get("qid") is not None else None,
        )
    except SchemaError as error:
        raise RecordError(where, f"field '{error.field}': expected {error.expected}, got {error.got!r}") from None
