"""Report templates as data: a YAML file describes sections and typed fields; :class:`Template` holds it.

A template file (``specs/<name>.yaml``) has ``name``, ``version``, ``title``, ``description`` and
``sections``; each section has an ``id``, a ``title`` and ``fields``; each field has an ``id``, a
``label`` (the text rendered in bold), a ``kind`` and kind-specific keys:

- ``enum``: ``values`` (allowed values, matched case-insensitively when parsing);
- ``number``: ``unit`` (rendered after the value), ``min``, ``max``, ``integer`` (bool), ``decimals``;
- ``text``: one line of free text;
- ``findings``: a list of grounded findings, ``item_label`` (items render as ``<item_label> 1``,
  ``<item_label> 2``...), ``empty`` (the word written for an empty list, default ``none``) and its
  own ``fields`` (enum, number or text; no nested lists).

Every field may carry ``normal`` (its value in a normal study, used by :meth:`Template.normal`),
``required`` (default true) and ``description``. The markdown layout these describe is fixed and
regular, so that a small model can learn it and a constrained decoder can force everything except
the values: see :mod:`radscribe.templates.markdown` and :meth:`Template.slots`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

FIELD_KINDS: tuple[str, ...] = ("enum", "number", "text", "findings")
ITEM_KINDS: tuple[str, ...] = ("enum", "number", "text")
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
SPECS_PACKAGE = "radscribe.templates"
SPECS_FOLDER = "specs"
# Files in specs/ that are not templates.
NON_TEMPLATE_SPECS = frozenset({"label-mapping"})

INDENT = "  "  # one nesting level in rendered markdown


class TemplateSpecError(ValueError):
    """A template YAML file that does not describe a valid template; names the file and the key."""

    def __init__(self, source: str, where: str, expected: str, got: Any = None):
        self.source = source
        self.where = where
        self.expected = expected
        detail = f"{source}: {where}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"[:200]
        super().__init__(detail)


@dataclass(frozen=True)
class Field:
    """One field of a section (or one sub-field of a findings item)."""

    id: str
    label: str
    kind: str
    required: bool = True
    normal: Any = None
    description: str = ""
    values: tuple[str, ...] = ()
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    decimals: int = 1
    item_label: str = "Finding"
    empty: str = "none"
    fields: tuple[Field, ...] = ()

    def subfield(self, field_id: str) -> Field:
        for sub in self.fields:
            if sub.id == field_id:
                return sub
        raise KeyError(f"field '{self.id}' has no sub-field '{field_id}'")


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    fields: tuple[Field, ...]
    description: str = ""

    def field(self, field_id: str) -> Field:
        for candidate in self.fields:
            if candidate.id == field_id:
                return candidate
        raise KeyError(f"section '{self.id}' has no field '{field_id}'")


@dataclass(frozen=True)
class Slot:
    """One step of a rendered template: fixed ``prefix`` text, then the value of ``field_id``.

    Concatenating ``prefix + value_text`` over :meth:`Template.slots` gives the rendered markdown, where
    ``value_text`` is ``""`` for a blank value, else a space and the value (a findings list renders
    its nested lines as its value; :meth:`Template.item_slots` describes them). The last slot has
    ``field_id=None`` and carries the closing newline.
    """

    prefix: str
    field_id: str | None
    field: Field | None


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    title: str
    sections: tuple[Section, ...]
    description: str = ""
    source: str = ""

    def section(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(f"template '{self.name}' has no section '{section_id}'")

    def field(self, field_id: str) -> Field:
        """A field by its ``section.field`` id."""
        section_id, _, name = field_id.partition(".")
        return self.section(section_id).field(name)

    def field_ids(self) -> list[str]:
        return [f"{section.id}.{item.id}" for section in self.sections for item in section.fields]

    def slots(self) -> list[Slot]:
        """Fixed text and value slots in rendering order (see :class:`Slot`)."""
        slots: list[Slot] = []
        pending = f"# {self.title}\n"
        for section in self.sections:
            pending += f"\n## {section.title}"
            for item in section.fields:
                slots.append(Slot(pending + f"\n- **{item.label}:**", f"{section.id}.{item.id}", item))
                pending = ""
            pending += "\n"
        slots.append(Slot(pending, None, None))
        return slots

    def item_slots(self, field_id: str, index: int) -> list[Slot]:
        """Slots of item ``index`` (0-based) of a findings list: header line, then one per sub-field."""
        parent = self.field(field_id)
        if parent.kind != "findings":
            raise KeyError(f"field '{field_id}' is a {parent.kind} field, not a findings list")
        header = f"\n{INDENT}- **{parent.item_label} {index + 1}:**"
        slots = []
        for position, sub in enumerate(parent.fields):
            prefix = (header if position == 0 else "") + f"\n{INDENT * 2}- **{sub.label}:**"
            slots.append(Slot(prefix, f"{field_id}[{index}].{sub.id}", sub))
        return slots

    def skeleton(self) -> str:
        """The markdown with every value blank (findings lists blank too)."""
        return "".join(slot.prefix for slot in self.slots())

    def normal(self):
        """The template filled with every field's ``normal`` value."""
        from radscribe.templates.filled import FilledTemplate

        return FilledTemplate(
            self.name,
            {
                section.id: {item.id: _copy_normal(item.normal) for item in section.fields}
                for section in self.sections
            },
        )

    def blank(self):
        """The template with every field present and blank (``None``)."""
        from radscribe.templates.filled import FilledTemplate

        return FilledTemplate(self.name, {s.id: {f.id: None for f in s.fields} for s in self.sections})


def _copy_normal(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# ----------------------------------------------------------------------------------------------- loading


def list_templates() -> list[str]:
    """Names of the templates shipped with radscribe."""
    folder = resources.files(SPECS_PACKAGE).joinpath(SPECS_FOLDER)
    names = [entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")]
    return sorted(name for name in names if name not in NON_TEMPLATE_SPECS)


def load_template(name_or_path: str | Path | Template) -> Template:
    """A shipped template by name, or a template YAML file by path."""
    if isinstance(name_or_path, Template):
        return name_or_path
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"template file not found: {path}")
        return _load_file(str(path.resolve()), path.stat().st_mtime_ns)
    return _load_shipped(text)


@lru_cache(maxsize=None)
def _load_shipped(name: str) -> Template:
    known = list_templates()
    if name not in known:
        raise KeyError(f"unknown template '{name}'; shipped templates: {', '.join(known)}")
    resource = resources.files(SPECS_PACKAGE).joinpath(SPECS_FOLDER, f"{name}.yaml")
    return template_from_yaml(resource.read_text(encoding="utf-8"), f"{SPECS_FOLDER}/{name}.yaml")


@lru_cache(maxsize=32)
def _load_file(path: str, _mtime: int) -> Template:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TemplateSpecError(path, "file", "UTF-8 text", f"undecodable byte at {error.start}") from None
    return template_from_yaml(text, path)


def template_from_yaml(text: str, source: str = "<string>") -> Template:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TemplateSpecError(source, "file", "valid YAML", str(error).splitlines()[0]) from None
    return template_from_dict(data, source)


def template_from_dict(data: Any, source: str = "<dict>") -> Template:
    record = _mapping(data, source, "template")
    name = _string(record, "name", source, "template")
    sections_data = record.get("sections")
    if not isinstance(sections_data, list) or not sections_data:
        raise TemplateSpecError(source, "sections", "a non-empty list of sections", sections_data)
    sections = tuple(_section(item, source, f"sections[{index}]") for index, item in enumerate(sections_data))
    _unique([s.id for s in sections], source, "sections", "unique section ids")
    _unique([s.title.casefold() for s in sections], source, "sections", "unique section titles")
    return Template(
        name=name,
        version=str(record.get("version", "1")),
        title=_string(record, "title", source, "template"),
        sections=sections,
        description=str(record.get("description", "")).strip(),
        source=source,
    )


def _section(data: Any, source: str, where: str) -> Section:
    record = _mapping(data, source, where)
    section_id = _identifier(record, source, where)
    fields_data = record.get("fields")
    if not isinstance(fields_data, list) or not fields_data:
        raise TemplateSpecError(source, f"{where}.fields", "a non-empty list of fields", fields_data)
    fields = tuple(_field(item, source, f"{where}.fields[{i}]", FIELD_KINDS) for i, item in enumerate(fields_data))
    _unique([f.id for f in fields], source, where, "unique field ids")
    _unique([f.label.casefold() for f in fields], source, where, "unique field labels")
    return Section(section_id, _string(record, "title", source, where), fields, str(record.get("description", "")).strip())


def _field(data: Any, source: str, where: str, kinds: tuple[str, ...]) -> Field:
    record = _mapping(data, source, where)
    field_id = _identifier(record, source, where)
    where = f"{where} ({field_id})"
    kind = record.get("kind")
    if kind not in kinds:
        raise TemplateSpecError(source, f"{where}.kind", f"one of {', '.join(kinds)}", kind)
    label = _string(record, "label", source, where)
    if ":**" in label or "\n" in label:
        raise TemplateSpecError(source, f"{where}.label", "a label without ':**' or line breaks", label)
    options: dict[str, Any] = {
        "id": field_id,
        "label": label,
        "kind": kind,
        "required": bool(record.get("required", True)),
        "description": str(record.get("description", "")).strip(),
    }
    if kind == "enum":
        values = record.get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise TemplateSpecError(source, f"{where}.values", "a non-empty list of strings", values)
        options["values"] = tuple(values)
        _unique([v.casefold() for v in values], source, f"{where}.values", "unique values")
    elif kind == "number":
        options["unit"] = record.get("unit")
        options["minimum"] = record.get("min")
        options["maximum"] = record.get("max")
        options["integer"] = bool(record.get("integer", False))
        options["decimals"] = int(record.get("decimals", 0 if options["integer"] else 1))
    elif kind == "findings":
        items = record.get("fields")
        if not isinstance(items, list) or not items:
            raise TemplateSpecError(source, f"{where}.fields", "a non-empty list of item fields", items)
        sub = tuple(_field(item, source, f"{where}.fields[{i}]", ITEM_KINDS) for i, item in enumerate(items))
        _unique([f.label.casefold() for f in sub], source, where, "unique item field labels")
        options["fields"] = sub
        options["item_label"] = str(record.get("item_label", "Finding"))
        options["empty"] = str(record.get("empty", "none"))
    normal = record.get("normal")
    if kind == "findings" and normal is None:
        normal = []
    if normal is not None:
        _check_normal(Field(**options), normal, source, where)
    options["normal"] = normal
    return Field(**options)


def _check_normal(spec: Field, normal: Any, source: str, where: str) -> None:
    from radscribe.templates.check import value_problem

    if spec.kind == "findings":
        if normal != []:
            raise TemplateSpecError(source, f"{where}.normal", "an empty list (a normal study has no findings)", normal)
        return
    problem = value_problem(spec, normal)
    if problem is not None:
        raise TemplateSpecError(source, f"{where}.normal", problem[1], normal)


def _mapping(data: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TemplateSpecError(source, where, "a mapping", type(data).__name__)
    return data


def _string(record: dict[str, Any], key: str, source: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TemplateSpecError(source, f"{where}.{key}", "a non-empty string", value)
    return value.strip()


def _identifier(record: dict[str, Any], source: str, where: str) -> str:
    value = record.get("id")
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise TemplateSpecError(source, f"{where}.id", "an id of lowercase letters, digits and '_'", value)
    return value


def _unique(values: list[str], source: str, where: str, expected: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise TemplateSpecError(source, where, expected, f"'{value}' twice")
        seen.add(value)
