"""VinDr-SpineXR (``vindr-spinexr``): spine radiographs with radiologists' lesion boxes.

Layout (PhysioNet, credentialed: https://physionet.org/content/vindr-spinexr/1.0.0/)::

    SRC/annotations/train.csv   image_id, study_id, series_id, rad_id, lesion_type, xmin, ymin, xmax, ymax
    SRC/annotations/test.csv
    SRC/train_images/<image_id>.dicom   (or .dcm / .png / .jpg: converted copies work too)
    SRC/test_images/<image_id>.dicom

    radscribe data import vindr-spinexr /data/vindr-spinexr --out spine.jsonl

Rows are grouped by image into one study. Box pixels are normalised by the image size read from the
file header (DICOM Rows/Columns). A ``No finding`` row adds the finding ``No finding`` and no box;
every lesion type with a box becomes a positive finding. The box source names the reader
(``vindr-spinexr:R5``). Images without any annotation row are not imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import canonical_split, csv_rows, find_image, image_ref
from radscribe.types import Box, Finding, Study

NO_FINDING = "no finding"
COLUMNS = ("image_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
# Pixel coordinates this far past the border are drawing slop; further means the wrong image or format.
BORDER_SLACK = 0.02


@register("vindr-spinexr", options=("images",))
def import_vindr_spinexr(source: Path, context: ImportContext) -> Iterator[Study]:
    tables = sorted((source / "annotations").glob("*.csv")) if (source / "annotations").is_dir() else sorted(source.glob("*.csv"))
    if not tables:
        raise FileNotFoundError(f"no annotation tables in {source}: expected annotations/train.csv, annotations/test.csv")
    seen: set[str] = set()
    for table in tables:
        split = canonical_split(table.stem)
        folder = _image_folder(source, context, table.stem)
        rows: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for where, row in csv_rows(table, required=COLUMNS):
            rows.setdefault(row["image_id"], []).append((where, row))
        for image_id, image_rows in rows.items():
            try:
                if image_id in seen:
                    raise RecordError(image_rows[0][0], f"the image {image_id} also appears in an earlier table")
                yield _study(context, folder, image_id, image_rows, split)
            except RecordError as error:
                context.reject(error)
                continue
            seen.add(image_id)


def _image_folder(source: Path, context: ImportContext, table_stem: str) -> Path:
    if context.options.get("images"):
        return Path(context.options["images"])
    for name in (f"{table_stem}_images", table_stem, "images"):
        if (source / name).is_dir():
            return source / name
    raise FileNotFoundError(f"no image folder for {table_stem}.csv: expected {source / f'{table_stem}_images'} or --images DIR")


def _study(context: ImportContext, folder: Path, image_id: str, rows: list[tuple[str, dict[str, str]]], split: str | None) -> Study:
    first = rows[0][0]
    if not image_id:
        raise RecordError(first, "expected an image_id")
    image = find_image(folder, image_id)
    if image is None:
        raise RecordError(first, f"expected the image {folder / image_id}.dicom (or .dcm/.png/.jpg)")
    reference = image_ref(context, image, first, modality="XR")
    width, height = reference.width or 0, reference.height or 0
    boxes, labels = [], []
    for where, row in rows:
        lesion = row["lesion_type"]
        if not lesion:
            raise RecordError(where, "expected a lesion_type")
        labels.append(lesion)
        if lesion.lower() == NO_FINDING:
            continue
        try:
            x0, y0, x1, y1 = (float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise RecordError(where, f"expected pixel coordinates xmin ymin xmax ymax for '{lesion}'") from None
        slack_x, slack_y = BORDER_SLACK * width, BORDER_SLACK * height
        if x1 <= x0 or y1 <= y0 or x0 < -slack_x or y0 < -slack_y or x1 > width + slack_x or y1 > height + slack_y:
            raise RecordError(where, f"expected a box inside the {width}x{height} image, got ({x0}, {y0}, {x1}, {y1})")
        reader = row.get("rad_id", "")
        source = f"vindr-spinexr:{reader}" if reader else "vindr-spinexr"
        boxes.append(Box.from_pixels(lesion, (x0, y0, x1, y1), width, height, source=source))
    positive = list(dict.fromkeys(labels))
    if len(positive) > 1:  # a reader's "No finding" next to another reader's lesion: the lesion stands
        positive = [label for label in positive if label.lower() != NO_FINDING]
    metadata = {"dataset": "vindr-spinexr"}
    if rows[0][1].get("study_id"):
        metadata["study_id"] = rows[0][1]["study_id"]
    return Study(
        id=image_id,
        images=[reference],
        split=split,
        findings=[Finding(label, "positive", "vindr-spinexr") for label in positive],
        boxes=sorted(boxes, key=lambda box: (box.center[1], box.center[0])),
        metadata=metadata,
    )
