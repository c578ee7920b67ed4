"""NIH ChestX-ray14 (``nih-cxr14``): a labels table, an optional boxes table, and a folder of PNGs.

Two table dialects are read:

* the shared subset: ``labels.csv`` (image, finding_labels, patient_age, patient_sex, view_position,
  original_width, original_height) and ``boxes.csv`` (image, finding, x, y, w, h, coordinate_space);
* the original release: ``Data_Entry_2017.csv`` (Image Index, Finding Labels, Follow-up #, Patient ID,
  Patient Age, Patient Gender, View Position, OriginalImage[Width, ...) and ``BBox_List_2017.csv``
  (Image Index, Finding Label, Bbox [x, y, w, h]).

Box pixels are in the released 1024 x 1024 image (``coordinate_space`` says so); they are normalised
by that space, so they land right on any resized copy. Findings are the NLP-mined labels
(source ``nih-nlp``, noisy); "No Finding" is kept as its own positive label. The box list calls
Infiltration "Infiltrate"; it is renamed so boxes and findings agree.
NIH Clinical Center, Wang et al., CVPR 2017: public with citation.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import find_image, image_ref, images_folder, open_text
from radscribe.types import Box, Finding, Study

LABEL_TABLES = ("labels.csv", "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
BOX_TABLES = ("boxes.csv", "BBox_List_2017.csv")
RELEASED_SIZE = 1024
BOX_LABEL_FIXES = {"Infiltrate": "Infiltration"}
# Column names in the two dialects, first found wins.
COLUMNS = {
    "image": ("image", "Image Index"),
    "labels": ("finding_labels", "Finding Labels"),
    "patient": ("patient_id", "Patient ID"),
    "age": ("patient_age", "Patient Age"),
    "sex": ("patient_sex", "Patient Gender"),
    "view": ("view_position", "View Position"),
    "width": ("original_width", "OriginalImage[Width"),
    "height": ("original_height", "Height]"),
}
_PATIENT_IN_NAME = re.compile(r"^(\d{8})_\d{3}$")


@register("nih-cxr14", options=("images",))
def import_nih(source: Path, context: ImportContext) -> Iterator[Study]:
    label_table = next((source / name for name in LABEL_TABLES if (source / name).is_file()), None)
    if label_table is None:
        raise FileNotFoundError(f"no NIH label table in {source}: expected one of {', '.join(LABEL_TABLES)}")
    folder = images_folder(context, source / "images")
    if folder is None:
        raise FileNotFoundError(f"NIH images not found: expected {source / 'images'} or --images DIR")
    boxes = _read_boxes(source, context)

    seen: set[str] = set()
    with open_text(label_table) as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        column = {key: next((header.index(name) for name in names if name in header), None) for key, names in COLUMNS.items()}
        for key in ("image", "labels"):
            if column[key] is None:
                raise RecordError(f"{label_table}:1", f"expected a column {' or '.join(COLUMNS[key])}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{label_table}:{reader.line_num}"
            try:
                study = _study(row, column, where, folder, context, boxes)
                if study.id in seen:
                    raise RecordError(where, f"a second row for the image {study.id}")
            except RecordError as error:
                context.reject(error)
                continue
            seen.add(study.id)
            yield study
    for name, (where, _) in boxes.items():
        if Path(name).stem not in seen:
            context.reject(RecordError(where, f"a box on {name}, which is not in {label_table.name} (or was skipped)"))


def _study(row: list[str], column: dict, where: str, folder: Path, context: ImportContext, boxes: dict) -> Study:
    def cell(key: str) -> str:
        index = column[key]
        return row[index].strip() if index is not None and index < len(row) else ""

    name = cell("image")
    if not name:
        raise RecordError(where, "expected an image file name")
    image = find_image(folder, name)
    if image is None:
        raise RecordError(where, f"expected the image {folder / name} to exist")
    view = cell("view") or None
    reference = image_ref(context, image, where, view=view, modality="XR")
    labels = [label.strip() for label in cell("labels").split("|") if label.strip()]
    if not labels:
        raise RecordError(where, "expected finding labels ('|'-separated, or 'No Finding')")
    metadata: dict = {"dataset": "nih-cxr14", "label_source": "nih-nlp"}
    if cell("age"):
        metadata["age"] = _number(cell("age"), where, "age")
    for key in ("sex", "view"):
        if cell(key):
            metadata[key] = cell(key)
    for key in ("width", "height"):
        if cell(key):
            metadata[f"original_{key}"] = _number(cell(key), where, f"original_{key}")
    stem = Path(name).stem
    patient = cell("patient") or (match.group(1) if (match := _PATIENT_IN_NAME.match(stem)) else None)
    return Study(
        id=stem,
        images=[reference],
        patient_id=patient.zfill(8) if patient and patient.isdigit() else patient,
        findings=[Finding(label, "positive", "nih-nlp") for label in dict.fromkeys(labels)],
        boxes=boxes.get(name, (None, []))[1],
        metadata=metadata,
    )


def _read_boxes(source: Path, context: ImportContext) -> dict[str, tuple[str, list[Box]]]:
    """Boxes by image file name, with the location of the first row for error messages."""
    table = next((source / name for name in BOX_TABLES if (source / name).is_file()), None)
    if table is None:
        return {}
    boxes: dict[str, tuple[str, list[Box]]] = {}
    with open_text(table) as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        original = "Bbox [x" in header
        if original:  # Image Index, Finding Label, Bbox [x, y, w, h] spread over four cells
            image_at, label_at, x_at = 0, 1, header.index("Bbox [x")
        else:
            missing = [name for name in ("image", "finding", "x", "y", "w", "h") if name not in header]
            if missing:
                raise RecordError(f"{table}:1", f"expected the column(s) {', '.join(missing)}")
            image_at, label_at, x_at = header.index("image"), header.index("finding"), header.index("x")
        space_at = header.index("coordinate_space") if "coordinate_space" in header else None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{table}:{reader.line_num}"
            try:
                name, label = row[image_at].strip(), row[label_at].strip()
                x, y, w, h = (_number(row[x_at + offset], where, "x y w h"[2 * offset]) for offset in range(4))
                width, height = _space(row[space_at] if space_at is not None else "", where)
                if w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
                    raise RecordError(where, f"expected a box inside the {width}x{height} image, got x={x} y={y} w={w} h={h}")
                box = Box.from_pixels(BOX_LABEL_FIXES.get(label, label), (x, y, x + w, y + h), width, height, source="nih-expert")
            except IndexError:
                context.reject(RecordError(where, f"expected {x_at + 4} cells, got {len(row)}"))
                continue
            except RecordError as error:
                context.reject(error)
                continue
            boxes.setdefault(name, (where, []))[1].append(box)
    return boxes


def _space(text: str, where: str) -> tuple[int, int]:
    """The pixel space of a box row: 'original 1024x1024 pixels', or the released 1024 when unsaid."""
    if not text:
        return RELEASED_SIZE, RELEASED_SIZE
    match = re.search(r"(\d+)\s*x\s*(\d+)", text)
    if not match:
        raise RecordError(where, f"expected coordinate_space like 'original 1024x1024 pixels', got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _number(text: str, where: str, field: str) -> float | int:
    try:
        value = float(text.rstrip("Y"))  # the 2017 table writes ages as "058Y"
    except ValueError:
        raise RecordError(where, f"expected a number for {field}, got {text!r}") from None
    return int(value) if value.is_integer() else value
