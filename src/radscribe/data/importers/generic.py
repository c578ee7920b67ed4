"""Your own data (``jsonl`` / ``csv``): one row per study with image path(s) and report text.

Column names are options (defaults in brackets)::

    radscribe data import csv reports.csv --out mine.jsonl --option image=path --option report=text

* ``image`` [image]: image path, relative to the table's folder (or ``--images DIR``); in JSONL it may
  be a list, in CSV several paths may be joined with ``;``.
* ``report`` [report]: free text; split at FINDINGS:/IMPRESSION:... headings, else kept as findings.
  Or give sections directly: ``findings``, ``impression``, ``indication``, ``comparison`` (column names).
* ``id`` [id]: study id (else the first image's file name without suffix, else the row number).
* ``split`` [split], ``patient`` [patient_id]: optional; splits train/val(idation)/test.
* ``labels`` [labels]: optional positive finding labels, ``|``-separated (source ``user``).
* ``view``, ``modality``: optional columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import canonical_split, csv_rows, image_ref, images_folder, report_sections
from radscribe.types import Finding, Study

SECTION_OPTIONS = ("findings", "impression", "indication", "comparison")
COLUMN_OPTIONS = ("image", "report", "id", "split", "patient", "labels", "view", "modality", *SECTION_OPTIONS)
OPTIONS = ("images", *COLUMN_OPTIONS)


@register("csv", options=OPTIONS)
def import_csv(source: Path, context: ImportContext) -> Iterator[Study]:
    return _import_rows(source, context, csv_rows(_table(source, ".csv")))


@register("jsonl", options=OPTIONS)
def import_jsonl(source: Path, context: ImportContext) -> Iterator[Study]:
    return _import_rows(source, context, _jsonl_rows(_table(source, ".jsonl")))


def _table(source: Path, suffix: str) -> Path:
    if source.is_file():
        return source
    tables = sorted(source.glob(f"*{suffix}"))
    if len(tables) != 1:
        raise FileNotFoundError(f"expected one {suffix} file in {source} (or its path), found {len(tables)}")
    return tables[0]


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                row = RecordError(where, f"expected one JSON object per line ({error.msg})")
            yield where, row


def _import_rows(source: Path, context: ImportContext, rows: Iterator[tuple[str, object]]) -> Iterator[Study]:
    table_folder = source if source.is_dir() else source.parent
    folder = images_folder(context) or table_folder
    column = {name: context.options.get(name, name) for name in COLUMN_OPTIONS}
    column["patient"] = context.options.get("patient", "patient_id")
    seen: set[str] = set()
    for number, (where, row) in enumerate(rows, start=1):
        try:
            if isinstance(row, RecordError):
                raise row
            if not isinstance(row, dict):
                raise RecordError(where, f"expected an object, got {type(row).__name__}")
            study = _study(context, folder, column, where, row, number)
            if study.id in seen:
                raise RecordError(where, f"expected a unique id, '{study.id}' was already used")
        except RecordError as error:
            context.reject(error)
            continue
        seen.add(study.id)
        yield study


def _study(context: ImportContext, folder: Path, column: dict[str, str], where: str, row: dict, number: int) -> Study:
    def value(key: str) -> str:
        cell = row.get(column[key])
        return "" if cell is None else str(cell).strip()

    paths = row.get(column["image"])
    if isinstance(paths, str):
        paths = [part.strip() for part in paths.split(";") if part.strip()]
    if not paths or not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise RecordError(where, f"expected image path(s) in the column '{column['image']}'")
    images = []
    for text in paths:
        path = Path(text) if Path(text).is_absolute() else folder / text
        if not path.is_file():
            raise RecordError(where, f"expected the image {path}")
        images.append(image_ref(context, path, where, view=value("view") or None, modality=value("modality") or None))

    report = {name: value(name) for name in SECTION_OPTIONS if name in context.options and value(name)}
    if not report and value("report"):
        report = report_sections(value("report"))
    split = None
    if value("split"):
        split = canonical_split(value("split"))
        if split is None:
            raise RecordError(where, f"expected split train, valid or test in '{column['split']}', got {value('split')!r}")
    labels = [label.strip() for label in value("labels").split("|") if label.strip()]
    return Study(
        id=value("id") or Path(paths[0]).stem or str(number),
        images=images,
        split=split,
        patient_id=value("patient") or None,
        report=report,
        findings=[Finding(label, "positive", "user") for label in dict.fromkeys(labels)],
    )
