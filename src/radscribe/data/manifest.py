"""The versioned JSONL manifest: one :class:`~radscribe.types.Study` per line.

Every line carries ``"version": 1``. Image paths are stored relative to the manifest's folder, so a
manifest and its images can be moved together. Writes are atomic: a temporary file in the same
folder is renamed over the target only once every line is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from radscribe.types import SchemaError, Study

MANIFEST_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("study.schema.json")


class ManifestError(ValueError):
    """A manifest line that does not fit the schema; names the file, line, field and expectation."""

    def __init__(self, path: Path | str, line: int, field: str, expected: str, got: object = None):
        self.path = Path(path)
        self.line = line
        self.field = field
        self.expected = expected
        location = f"{self.path}:{line}"
        detail = f"field '{field}': expected {expected}" if field else f"expected {expected}"
        if got is not None:
            detail += f", got {got!r}"[:200]
        super().__init__(f"{location}: {detail}")


def parse_line(text: str, path: Path | str, line: int) -> Study:
    """Parse one manifest line into a study, or raise :class:`ManifestError`."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(path, line, "", f"one JSON object per line ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ManifestError(path, line, "", "a JSON object", type(record).__name__)
    version = record.get("version")
    if version != MANIFEST_VERSION:
        raise ManifestError(path, line, "version", f"the manifest version {MANIFEST_VERSION}", version)
    try:
        return Study.from_dict(record)
    except SchemaError as error:
        raise ManifestError(path, line, error.field, error.expected, error.got) from None


def iter_manifest(path: Path | str) -> Iterator[Study]:
    """Yield the studies of a manifest, lazily; blank lines are allowed."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {path}") from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield parse_line(text, path, number)


def read_manifest(path: Path | str) -> list[Study]:
    """Read a whole manifest; duplicate study ids are an error naming both lines."""
    studies = list(iter_manifest(path))
    seen: dict[str, int] = {}
    for index, study in enumerate(studies):
        if study.id in seen:
            raise ManifestError(path, _line_of(path, index), "id", f"a unique id (also on study {seen[study.id] + 1})", study.id)
        seen[study.id] = index
    return studies


def _line_of(path: Path | str, study_index: int) -> int:
    with Path(path).open(encoding="utf-8") as handle:
        count = -1
        for number, text in enumerate(handle, start=1):
            count += bool(text.strip())
            if count == study_index:
                return number
    return 0


def study_to_line(study: Study) -> str:
    return json.dumps({"version": MANIFEST_VERSION, **study.to_dict()}, ensure_ascii=False, separators=(",", ":"))


def write_manifest(studies: Iterable[Study], path: Path | str) -> int:
    """Write studies atomically; returns how many were written."""
    count = 0
    with atomic_write(path) as handle:
        for study in studies:
            handle.write(study_to_line(study) + "\n")
            count += 1
    return count


@contextmanager
def atomic_write(path: Path | str, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` and rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(target: Path | str) -> Iterator[Path]:
    """A fresh hidden sibling folder to fill; renamed over ``target`` only when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp"
    if temporary.exists():
        shutil.rmtree(temporary)  # left by a run killed mid-write
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)  # a folder cannot be renamed over a non-empty one
    os.replace(temporary, target)
    if old.exists():
        shutil.rmtree(old)


def resolve_image_path(manifest_path: Path | str, image_path: str) -> Path:
    """An image path from a manifest, resolved against the manifest's folder."""
    candidate = Path(image_path)
    return candidate if candidate.is_absolute() else Path(manifest_path).resolve().parent / candidate


def relative_image_path(manifest_path: Path | str, image_path: Path | str) -> str:
    """The path to store for an image: relative to the manifest's folder (POSIX separators)."""
    return Path(os.path.relpath(Path(image_path).resolve(), Path(manifest_path).resolve().parent)).as_posix()
