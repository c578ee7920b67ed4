"""YOLO detection folders (``cadma`` and ``yolo``): images plus ``class cx cy w h`` label files.

Layouts accepted, as Roboflow and Ultralytics export them::

    SRC/{train,valid,test}/{images,labels}/     one folder per split (the split is the folder name)
    SRC/{images,labels}/                        a single split; the split is SRC's own name if it is one

A label file holds one object per line, ``class cx cy w h`` normalised to [0, 1] (an optional sixth
number is a confidence score; a longer line is a polygon, boxed by its extent). An image without a
label file has no objects, as in YOLO. Class names come from ``--option names=a,b`` or a
``data.yaml`` in SRC or its parent; ``cadma`` (CADMA "Spine Region > Vertebrae Detection V.1",
CC BY 4.0) names its single class ``vertebra``. Boxes are sorted top to bottom, the order a
radiologist counts vertebrae in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import IMAGE_SUFFIXES, canonical_split, image_ref
from radscribe.types import Box, Study

CADMA_NAMES = ("vertebra",)
# Coordinates this far outside [0, 1] are annotation rounding; anything further is a wrong format.
TOLERANCE = 0.01


@register("cadma", options=("names",))
def import_cadma(source: Path, context: ImportContext) -> Iterator[Study]:
    names = _option_names(context) or CADMA_NAMES
    metadata = {"dataset": "spine-cadma", "license": "CC BY 4.0"}
    return _import_yolo(source, context, names, metadata, view="AP", modality="XR", box_source="cadma")


@register("yolo", options=("names", "view", "modality"))
def import_yolo(source: Path, context: ImportContext) -> Iterator[Study]:
    names = _option_names(context) or _yaml_names(source)
    return _import_yolo(
        source, context, names, {}, view=context.options.get("view"), modality=context.options.get("modality"), box_source="yolo"
    )


def split_folders(source: Path) -> list[tuple[str | None, Path]]:
    """(split, folder with images/) pairs found under ``source``."""
    if not source.is_dir():
        raise FileNotFoundError(f"expected a folder with images/ and labels/ (or train/, valid/ ... holding them): {source}")
    if (source / "images").is_dir():
        return [(canonical_split(source.name), source)]
    found = [
        (canonical_split(child.name), child)
        for child in sorted(source.iterdir())
        if child.is_dir() and canonical_split(child.name) and (child / "images").is_dir()
    ]
    if not found:
        raise FileNotFoundError(f"no images/ folder in {source} nor in a train/, valid/ or test/ folder below it")
    return found


def _import_yolo(
    source: Path,
    context: ImportContext,
    names: tuple[str, ...],
    metadata: dict,
    view: str | None,
    modality: str | None,
    box_source: str,
) -> Iterator[Study]:
    seen: set[str] = set()
    for split, folder in split_folders(source):
        images = sorted(path for path in (folder / "images").iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        for image in images:
            label_file = folder / "labels" / f"{image.stem}.txt"
            try:
                if image.stem in seen:
                    raise RecordError(str(image), f"a second image with the id '{image.stem}' (ids come from file names)")
                reference = image_ref(context, image, str(image), view=view, modality=modality)
                boxes = read_yolo_labels(label_file, names, box_source) if label_file.exists() else []
            except RecordError as error:
                context.reject(error)
                continue
            seen.add(image.stem)
            yield Study(
                id=image.stem,
                images=[reference],
                split=split,
                boxes=sorted(boxes, key=lambda box: (box.center[1], box.center[0])),
                metadata=dict(metadata),
            )


def read_yolo_labels(path: Path, names: tuple[str, ...], source: str) -> list[Box]:
    """Parse one YOLO label file into boxes; a bad line raises RecordError naming ``file:line``."""
    boxes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise RecordError(where, f"expected numbers 'class cx cy w h', got {line.strip()!r}") from None
        if len(values) in (5, 6):
            class_id, cx, cy, w, h = values[:5]
            if not all(-TOLERANCE <= value <= 1 + TOLERANCE for value in (cx, cy, w, h)):
                raise RecordError(where, f"expected cx cy w h normalised to [0, 1], got {' '.join(fields[1:5])}")
            xyxy = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(values) >= 7 and len(values) % 2 == 1:
            class_id, points = values[0], values[1:]
            if not all(-TOLERANCE <= value <= 1 + TOLERANCE for value in points):
                raise RecordError(where, "expected polygon points normalised to [0, 1]")
            xs, ys = points[0::2], points[1::2]
            xyxy = (min(xs), min(ys), max(xs), max(ys))
        else:
            raise RecordError(where, f"expected 5 numbers 'class cx cy w h' (normalised), got {len(values)}")
        if class_id != int(class_id) or class_id < 0:
            raise RecordError(where, f"expected a class index (0, 1, ...), got {fields[0]}")
        boxes.append(
            Box.from_xyxy(
                _class_name(int(class_id), names, where),
                xyxy,
                source=source,
                score=values[5] if len(values) == 6 else None,
            )
        )
    return boxes


def _class_name(class_id: int, names: tuple[str, ...], where: str) -> str:
    if not names:
        return str(class_id)
    if class_id >= len(names):
        raise RecordError(where, f"expected a class index below {len(names)} ({', '.join(names)}), got {class_id}")
    return names[class_id]


def _option_names(context: ImportContext) -> tuple[str, ...]:
    value = context.options.get("names", "")
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _yaml_names(source: Path) -> tuple[str, ...]:
    for candidate in (source / "data.yaml", source.parent / "data.yaml"):
        if candidate.is_file():
            try:
                loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise RecordError(str(candidate), f"expected YAML ({error})") from None
            names = loaded.get("names") if isinstance(loaded, dict) else None
            if isinstance(names, dict):  # Ultralytics style: {0: name, 1: name}
                return tuple(str(names[key]) for key in sorted(names))
            if isinstance(names, list):
                return tuple(str(name) for name in names)
            raise RecordError(str(candidate), f"expected 'names' as a list or a mapping, got {names!r}")
    return ()
