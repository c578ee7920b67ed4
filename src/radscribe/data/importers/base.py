"""The importer registry and the machinery every importer shares (error policy, summary, atomic output)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from radscribe.data.manifest import write_manifest
from radscribe.types import Study

OnError = Literal["fail", "skip"]
Importer = Callable[[Path, "ImportContext"], Iterator[Study]]

IMPORTERS: dict[str, Importer] = {}
# The --option keys each importer understands (``images`` is --images); anything else is a typo to report.
IMPORTER_OPTIONS: dict[str, frozenset[str]] = {}


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
    _manifest_folder: Path | None = field(default=None, init=False, repr=False)

    def image_path(self, image: Path) -> str:
        """The image path to store: relative to the output manifest's folder."""
        if self._manifest_folder is None:  # resolved once: realpath per image is a third of an import's time
            self._manifest_folder = self.out.resolve().parent
        return Path(os.path.relpath(os.path.abspath(image), self._manifest_folder)).as_posix()

    def reject(self, error: RecordError) -> None:
        """Apply the error policy to one bad record: raise it, or note it and go on."""
        if self.on_error == "fail":
            raise error
        self.summary.skipped.append(error)


def register(*names: str, options: tuple[str, ...] = ()) -> Callable[[Importer], Importer]:
    """Register an importer under ``names``; ``options`` lists the ``--option`` keys it reads."""

    def decorate(function: Importer) -> Importer:
        for name in names:
            IMPORTERS[name] = function
            IMPORTER_OPTIONS[name] = frozenset(options)
        return function

    return decorate


def get_importer(name: str) -> Importer:
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
    """Import ``source`` with the importer ``kind`` into the manifest ``out`` (written atomically).

    A failure (an error with ``on_error="fail"``, or any exception) leaves no partial manifest and
    leaves an existing ``out`` untouched.
    """
    importer = get_importer(kind)
    options = dict(options or {})
    unknown = sorted(set(options) - IMPORTER_OPTIONS[kind])
    if unknown == ["images"]:
        raise ValueError(f"importer '{kind}' finds the images from its source layout; it takes no --images")
    if unknown:
        known = ", ".join(sorted(IMPORTER_OPTIONS[kind])) or "none"
        raise ValueError(f"importer '{kind}' has no option '{unknown[0]}'; its options: {known}")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"import source not found: {source}")
    context = ImportContext(out=Path(out), on_error=on_error, options=options)
    studies = importer(source, context)
    if progress is not None:
        studies = progress(studies)
    context.summary.imported = write_manifest(studies, out)
    return context.summary
