"""IU X-ray / Open-i (``iu-xray``): chest X-ray reports, MeSH terms, and the R2Gen split.

Reports come from either

* ``reports.jsonl`` (uid, comparison, indication, findings, impression, mesh_major, mesh_automatic,
  images), or
* the original Open-i XML folder (``NLMCXR_reports.tgz`` unpacked: ``ecgen-radiology/*.xml``), where
  each file holds ``<AbstractText Label="FINDINGS|IMPRESSION|INDICATION|COMPARISON">``, ``<MeSH>``
  with ``<major>``/``<automatic>`` terms, ``<uId id="CXR1"/>`` and ``<parentImage id="...">`` per image.

The split is R2Gen's (``r2gen_annotation.json`` or ``annotation.json``: ``{"train": [{"id":
"CXR2384_IM-0942", ...}], "val": [...], "test": [...]}``; or ``r2gen_split.json``: lists of ids), looked
up by the report uid before the first underscore; ``--option split=FILE`` names another file. Reports
R2Gen leaves out (no findings, or not two images) get no split. With ``--images DIR`` each report's
images are attached when found as Open-i names (``CXR1_1_IM-0001-3001.png``) or in R2Gen folders
(``CXR2384_IM-0942/0.png``). Open-i: CC BY-NC-ND 4.0.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import canonical_split, find_image, image_ref, images_folder, load_json
from radscribe.types import ImageRef, Study

SPLIT_FILES = ("r2gen_annotation.json", "annotation.json", "r2gen_split.json")
SECTIONS = ("findings", "impression", "indication", "comparison")


@register("iu-xray", options=("split", "images"))
def import_iu_xray(source: Path, context: ImportContext) -> Iterator[Study]:
    folder = source if source.is_dir() else source.parent
    splits, split_file = _read_splits(folder, context)
    images = images_folder(context)
    attached = 0
    seen: set[str] = set()
    for where, load in _records(source):
        try:
            record = load()
            uid = record["uid"]
            if uid in seen:
                raise RecordError(where, f"a second report with the uid {uid}")
            study_images = _attach_images(context, images, record["images"], splits.get(uid, (None, None))[1], where)
        except RecordError as error:
            context.reject(error)
            continue
        seen.add(uid)
        attached += len(study_images)
        split, r2gen_id = splits.get(uid, (None, None))
        metadata = {
            "dataset": "iu-xray",
            "mesh_major": record["mesh_major"],
            "mesh_automatic": record["mesh_automatic"],
            "image_ids": record["images"],
        }
        if r2gen_id:
            metadata["r2gen_id"] = r2gen_id
        yield Study(
            id=uid,
            images=study_images,
            split=split,
            report={name: record[name] for name in SECTIONS if record.get(name)},
            metadata=metadata,
        )
    if images is not None and attached == 0:
        raise RecordError(
            str(images),
            "no image of any report found: expected Open-i names (CXR1_1_IM-0001-3001.png) or R2Gen folders (CXR1_IM-0001/0.png)",
        )
    if split_file is not None and not splits:
        raise RecordError(str(split_file), "expected train/val/test lists of study ids, found none")


def _records(source: Path) -> Iterator[tuple[str, Callable[[], dict]]]:
    """(location, loader) per report, so that one bad report is rejected on its own."""
    if source.is_file() and source.suffix == ".jsonl":
        yield from _jsonl_records(source)
    elif source.is_dir() and (source / "reports.jsonl").is_file():
        yield from _jsonl_records(source / "reports.jsonl")
    else:
        files = sorted(source.rglob("*.xml")) if source.is_dir() else [source] if source.suffix == ".xml" else []
        if not files:
            raise FileNotFoundError(f"no IU X-ray reports in {source}: expected reports.jsonl or Open-i *.xml files")
        for path in files:
            yield str(path), partial(parse_openi_xml, path)


def _jsonl_records(path: Path) -> Iterator[tuple[str, Callable[[], dict]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{path}:{number}", partial(_parse_jsonl_line, line, f"{path}:{number}")


def _parse_jsonl_line(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise RecordError(where, f"expected one JSON object per line ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("uid"), str) or not record["uid"]:
        raise RecordError(where, "expected an object with a string 'uid'")
    return {
        "uid": record["uid"],
        **{name: _text(record.get(name)) for name in SECTIONS},
        "mesh_major": _strings(record.get("mesh_major"), where, "mesh_major"),
        "mesh_automatic": _strings(record.get("mesh_automatic"), where, "mesh_automatic"),
        "images": _strings(record.get("images"), where, "images"),
    }


def parse_openi_xml(path: Path) -> dict:
    """One Open-i report file into the same record shape as a reports.jsonl line."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise RecordError(str(path), f"expected Open-i XML ({error})") from None
    uid_element = root.find(".//uId")
    if uid_element is None or not uid_element.get("id"):
        raise RecordError(str(path), "expected a <uId id=\"CXR...\"/> element")
    record: dict = {"uid": uid_element.get("id")}
    for name in SECTIONS:
        record[name] = ""
    for element in root.iter("AbstractText"):
        label = (element.get("Label") or "").strip().lower()
        if label in SECTIONS:
            record[label] = _text("".join(element.itertext()))
    mesh = root.find(".//MeSH")
    record["mesh_major"] = [_text(e.text) for e in mesh.findall("major")] if mesh is not None else []
    record["mesh_automatic"] = [_text(e.text) for e in mesh.findall("automatic")] if mesh is not None else []
    record["images"] = [element.get("id") for element in root.iter("parentImage") if element.get("id")]
    return record


def _read_splits(folder: Path, context: ImportContext) -> tuple[dict[str, tuple[str, str]], Path | None]:
    """uid -> (split, R2Gen study id) from an R2Gen annotation or split file, if there is one."""
    given = context.options.get("split")
    path = Path(given) if given else next((folder / name for name in SPLIT_FILES if (folder / name).is_file()), None)
    if path is None:
        return {}, None
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    data = load_json(path)
    if not isinstance(data, dict):
        raise RecordError(str(path), f"expected an object of split lists, got {type(data).__name__}")
    splits: dict[str, tuple[str, str]] = {}
    for key, entries in data.items():
        # The widely shared R2Gen annotation.json names its test list with four spaces instead of "test".
        key_split = canonical_split(key) or ("test" if not key.strip() else None)
        if not isinstance(entries, list):
            raise RecordError(f"{path}: '{key}'", "expected a list of studies")
        for index, entry in enumerate(entries):
            where = f"{path}: '{key}'[{index}]"
            study_id = entry.get("id") if isinstance(entry, dict) else entry
            split = canonical_split(str(entry.get("split", ""))) if isinstance(entry, dict) else None
            split = split or key_split
            if not isinstance(study_id, str) or split is None:
                raise RecordError(where, f"expected a study id under train/val/test, got {entry!r:.80}")
            splits[study_id.split("_")[0]] = (split, study_id)
    return splits, path


def _attach_images(
    context: ImportContext, folder: Path | None, image_ids: list[str], r2gen_id: str | None, where: str
) -> list[ImageRef]:
    if folder is None:
        return []
    found = [path for path in (find_image(folder, image_id) for image_id in image_ids) if path is not None]
    if not found and r2gen_id and (folder / r2gen_id).is_dir():
        found = sorted(path for path in (folder / r2gen_id).iterdir() if find_image(path.parent, path.name))
    return [image_ref(context, path, where, modality="XR") for path in found]


def _text(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _strings(value: object, where: str, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError(where, f"expected '{field}' as a list of strings")
    return value
