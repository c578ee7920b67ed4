"""The importer registry and the machinery every importer shares (error policy, summary, atomic output)."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from radscribe.data.manifest import relative_image_path, write_manifest
from radscribe.types import Study

OnError = Literal["fail", "skip"]
Importer = Callable[[Path, "ImportContext"], Iterator[Study]]

IMPORTERS: dict[str, Importer] = {}
_IMPORTER_MODULES = ("cadma", "vqa_rad", "nih_cxr14", "iu_xray", "mimic_cxr", "vindr_spinexr", "slake", "generic")


class RecordError(ValueError):
    """One source record that cannot be imported; ``where`` names the file (and line or row)."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


@dataclass
class ImportSummary:
    imported: int = 0
    skipped: list[RecordError] = field(default_factory=list)

    def reasons(self) -> Counter[str]:
        return Counter(error.reason for error in self.skipped)


@dataclass
class ImportContext:
    """What an importer needs besides its source: where the manifest goes, options and the error policy."""

    out: Path
    on_error: OnError = "fail"
    options: dict[str, str] = field(default_factory=dict)
    summary: ImportSummary = field(default_factory=ImportSummary)

    def image_path(self, image: Path) -> str:
        """The image path to store: relative to the output manifest's folder."""
        return relative_image_path(self.out, image)

    def reject(self, error: RecordError) -> None:
        """Apply the error policy to one bad record: raise it, or note it and go on."""
        if self.on_error == "fail":
            raise error
        self.summary.skipped.append(error)


def register(*names: str) -> Callable[[Importer], Importer]:
    def decorate(function: Importer) -> Importer:
        for name in names:
            IMPORTERS[name] = function
        return function

    return decorate


def _load_all() -> None:
    for module in _IMPORTER_MODULES:
        importlib.import_module(f"radscribe.data.importers.{module}")


def get_importer(name: str) -> Importer:
    _load_all()
    if name not in IMPORTERS:
        raise KeyError(f"unknown importer '{name}'; known: {', '.join(sorted(IMPORTERS))}")
    return IMPORTERS[name]


def import_dataset(
    kind: str,
    source: Path | str,
    out: Path | str,
    on_error: OnError = "fail",
    options: dict[str, str] | None = None,
    progress: Callable[[Iterator[Study]], Iterator[Study]] | None = None,
) -> ImportSummary:
    """Import ``source`` with the importer ``kind`` into the manifest ``out`` (written atomically)."""
    importer = get_importer(kind)
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"import source not found: {source}")
    context = ImportContext(out=Path(out), on_error=on_error, options=dict(options or {}))
    studies = importer(source, context)
    if progress is not None:
        studies = progress(studies)
    context.summary.imported = write_manifest(studies, out)
    return context.summary
