"""Small pieces several importers share: reading CSV/JSON with locations, images, splits, report sections."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radscribe.data.images import ImageReadError, read_image_size
from radscribe.data.importers.base import ImportContext, RecordError
from radscribe.types import ImageRef

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")

_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "valid", "valid": "valid", "validate": "valid", "validation": "valid", "dev": "valid",
    "test": "test", "testing": "test",
}


def canonical_split(name: str) -> str | None:
    """Map the split names datasets use (``validate``, ``val``...) to train/valid/test; None if unknown."""
    return _SPLIT_NAMES.get(name.strip().lower())


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz`` (MIMIC ships its tables compressed)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def find_table(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def csv_rows(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield ``("file:line", row)`` for each CSV row; a missing required column fails at once."""
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in required if name not in columns]
        if missing:
            found = ", ".join(columns) or "nothing"
            raise RecordError(f"{path}:1", f"expected the column(s) {', '.join(missing)} in the header, found {found}")
        for row in reader:
            yield f"{path}:{reader.line_num}", {key: (value or "").strip() for key, value in row.items() if key is not None}


def load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{error.lineno}", f"expected valid JSON ({error.msg} at column {error.colno})") from None


def image_ref(context: ImportContext, path: Path, where: str, **fields: Any) -> ImageRef:
    """An :class:`ImageRef` with the size read from the file header; a bad image becomes a RecordError."""
    try:
        width, height = read_image_size(path)
    except ImageReadError as error:
        raise RecordError(where, f"unreadable image {path.name}: {error.reason}") from None
    return ImageRef(path=context.image_path(path), width=width, height=height, **fields)


def images_folder(context: ImportContext, *defaults: Path) -> Path | None:
    """The ``--images`` folder if given (it must exist), else the first default that exists."""
    given = context.options.get("images")
    if given:
        folder = Path(given)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        return folder
    return next((folder for folder in defaults if folder.is_dir()), None)


def find_image(folder: Path, stem: str) -> Path | None:
    """The image called ``stem`` with any usual suffix (or ``stem`` itself when it has one)."""
    direct = folder / stem
    if direct.suffix.lower() in IMAGE_SUFFIXES and direct.is_file():
        return direct
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


SECTION_ALIASES = {
    "findings": "findings",
    "impression": "impression", "impressions": "impression", "conclusion": "impression",
    "indication": "indication", "indications": "indication", "clinical history": "indication",
    "history": "indication", "reason for exam": "indication", "clinical information": "indication",
    "comparison": "comparison", "comparisons": "comparison",
    "technique": "technique", "examination": "examination", "exam": "examination",
}
# A heading is a known section name followed by a colon: in any case at the start of a line
# ("Findings:"), or in capitals anywhere ("... lungs. IMPRESSION: Normal."), as one-line reports have.
_KNOWN = "|".join(sorted((re.escape(name) for name in SECTION_ALIASES), key=len, reverse=True))
_HEADING = re.compile(
    rf"(?:^[ \t]*(?i:({_KNOWN}))|\b({_KNOWN.upper()}))[ \t]*:",
    re.MULTILINE,
)


def report_sections(text: str) -> dict[str, str]:
    """Split a free-text report at its headings (FINDINGS:, IMPRESSION:...).

    A report with no known heading at all is kept whole as ``findings`` (plain reports are mostly
    findings); with headings, text before the first one (banners like FINAL REPORT) is dropped.
    """
    sections: dict[str, str] = {}
    preamble: list[str] = []
    current: str | None = None
    position = 0
    for match in _HEADING.finditer(text):
        name = SECTION_ALIASES[(match.group(1) or match.group(2)).lower()]
        chunk = text[position:match.start()]
        if current is None:
            preamble.append(chunk)
        else:
            sections[current] = _join(sections.get(current, ""), chunk)
        current, position = name, match.end()
    tail = text[position:]
    if current is None:
        preamble.append(tail)
    else:
        sections[current] = _join(sections.get(current, ""), tail)
    if not sections:
        sections["findings"] = " ".join(preamble)
    return {name: value for name, value in ((name, _clean(value)) for name, value in sections.items()) if value}


def _join(first: str, second: str) -> str:
    return f"{first} {second}" if first else second


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
