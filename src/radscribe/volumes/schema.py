"""The class schema of a segmentation: label id -> class name, class groups, and the mention lexicon.

A schema is a YAML file (see ``schemas/totalsegmentator.yaml``, shipped as ``totalsegmentator``)::

    name: my-tool
    classes: {1: liver, 2: kidney_left, 3: kidney_right}
    groups: {abdomen: [liver, "kidney_*"]}            # optional, for per-group scores
    lexicon:                                           # optional; phrase -> classes or glob patterns
      renal: ["kidney_*"]
      nephrectomy: {classes: ["kidney_*"], absent: true}
    plurals: {kidney: kidneys}                         # optional irregular plurals

Without a lexicon, every class name is its own phrase (``kidney_left`` -> "kidney left"), so a user
schema works out of the box. Sides: a class whose name has the word ``left`` or ``right`` (split at
``_``) belongs to that side of the patient.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Side = Literal["left", "right"]
SCHEMAS_DIR = Path(__file__).with_name("schemas")
SHIPPED_SCHEMAS = ("totalsegmentator",)


class SchemaFileError(ValueError):
    """A schema file that cannot be used; the message names the file, the field and what was expected."""

    def __init__(self, path: Path | str, field: str, expected: str, got: Any = None):
        detail = f"field '{field}': expected {expected}" + (f", got {got!r}"[:200] if got is not None else "")
        super().__init__(f"{path}: {detail}")


@dataclass(frozen=True)
class LexiconEntry:
    """One phrase of the lexicon and the classes it names; ``absent`` marks a removed structure."""

    phrase: str
    classes: tuple[str, ...]
    absent: bool = False


@dataclass(frozen=True)
class ClassSchema:
    name: str
    classes: dict[int, str]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lexicon: tuple[LexiconEntry, ...] = ()
    plurals: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> dict[str, int]:
        return {name: class_id for class_id, name in self.classes.items()}

    def group_of(self, class_name: str) -> str:
        for group, members in self.groups.items():
            if class_name in members:
                return group
        return "other"


def side_of(class_name: str) -> Side | None:
    """The patient side a class name states (``kidney_left`` -> left), or None for a midline/unsided class."""
    words = class_name.lower().split("_")
    if "left" in words:
        return "left"
    if "right" in words:
        return "right"
    return None


def load_schema(name_or_path: str | Path) -> ClassSchema:
    """A shipped schema by name (``totalsegmentator``) or a user's YAML file."""
    path = Path(name_or_path)
    if str(name_or_path) in SHIPPED_SCHEMAS:
        path = SCHEMAS_DIR / f"{name_or_path}.yaml"
    elif not path.is_file():
        raise FileNotFoundError(f"schema not found: {path} (a YAML file, or one of the shipped: {', '.join(SHIPPED_SCHEMAS)})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SchemaFileError(path, "", "valid YAML", str(error)) from None
    return parse_schema(data, path)


def parse_schema(data: Any, path: Path | str = "<schema>") -> ClassSchema:
    if not isinstance(data, dict):
        raise SchemaFileError(path, "", "a mapping with 'name' and 'classes'", type(data).__name__)
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, dict) or not raw_classes:
        raise SchemaFileError(path, "classes", "a non-empty mapping of label id -> class name", raw_classes)
    classes: dict[int, str] = {}
    for key, value in raw_classes.items():
        try:
            class_id = int(key)
        except (TypeError, ValueError):
            raise SchemaFileError(path, f"classes.{key}", "an integer label id", key) from None
        if not 0 < class_id < 65536:
            raise SchemaFileError(path, f"classes.{key}", "a label id in 1..65535 (0 is background)", class_id)
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
            raise SchemaFileError(path, f"classes.{key}", "a class name of letters, digits, '_' or '-'", value)
        classes[class_id] = value
    names = list(classes.values())
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SchemaFileError(path, "classes", "unique class names", duplicates[0])

    def expand(field_name: str, patterns: Any) -> tuple[str, ...]:
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise SchemaFileError(path, field_name, "a list of class names or glob patterns", patterns)
        found: list[str] = []
        for pattern in patterns:
            matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                raise SchemaFileError(path, field_name, "patterns that match classes of the schema", pattern)
            found.extend(name for name in matched if name not in found)
        return tuple(found)

    groups = {str(group): expand(f"groups.{group}", members) for group, members in (data.get("groups") or {}).items()}
    raw_lexicon = data.get("lexicon")
    if raw_lexicon is None:
        lexicon = tuple(LexiconEntry(name.replace("_", " ").replace("-", " ").lower(), (name,)) for name in names)
    elif not isinstance(raw_lexicon, dict):
        raise SchemaFileError(path, "lexicon", "a mapping of phrase -> classes", type(raw_lexicon).__name__)
    else:
        entries = []
        for phrase, target in raw_lexicon.items():
            where = f"lexicon.{phrase}"
            absent = False
            if isinstance(target, dict):
                absent = bool(target.get("absent", False))
                target = target.get("classes")
            if not isinstance(phrase, str) or not phrase.strip():
                raise SchemaFileError(path, where, "a non-empty phrase", phrase)
            entries.append(LexiconEntry(" ".join(phrase.lower().split()), expand(where, target), absent))
        lexicon = tuple(entries)
    plurals = data.get("plurals") or {}
    if not isinstance(plurals, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in plurals.items()):
        raise SchemaFileError(path, "plurals", "a mapping of phrase -> plural", plurals)
    name = data.get("name") or Path(path).stem
    return ClassSchema(str(name), classes, groups, lexicon, {k.lower(): v.lower() for k, v in plurals.items()})
