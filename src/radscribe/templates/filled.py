"""A filled template: the template's name plus ``{section: {field: value}}``.

Values are ``str`` (enum and text), ``int``/``float`` (number), ``list[GroundedFinding]`` (findings)
or ``None`` (blank). A section or field that is absent from the dict is *missing*, which
:func:`~radscribe.templates.validate` reports; a field present with ``None`` is *blank*. Values that
do not fit the field (a number written as words, an enum value not allowed) are kept as written so
that validation can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from radscribe.types import Box, SchemaError

ItemValue = Union[str, int, float, None]
Value = Union[str, int, float, list["GroundedFinding"], None]


@dataclass
class GroundedFinding:
    """One item of a findings list: its sub-field values, and the boxes that ground it.

    Boxes are not part of the plain markdown; :func:`~radscribe.templates.render` writes them only
    through its ``box_text`` hook (a grounding codec), and :func:`~radscribe.templates.parse` reads
    them back only through ``box_parser``.
    """

    values: dict[str, ItemValue] = field(default_factory=dict)
    boxes: list[Box] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": dict(self.values)}
        if self.boxes:
            out["boxes"] = [box.to_dict() for box in self.boxes]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> GroundedFinding:
        if not isinstance(data, dict):
            raise SchemaError("", "a finding object with 'values' (and optional 'boxes')", data)
        # A bare {sub_field: value} mapping is accepted too: it is how people write findings by hand.
        values = data["values"] if "values" in data else {k: v for k, v in data.items() if k != "boxes"}
        if not isinstance(values, dict):
            raise SchemaError("values", "an object of sub-field values", values)
        boxes = []
        for index, box in enumerate(data.get("boxes") or []):
            try:
                boxes.append(Box.from_dict(box))
            except SchemaError as error:
                raise error.prefixed(f"boxes[{index}]") from None
        return cls(dict(values), boxes)


@dataclass
class FilledTemplate:
    template: str
    sections: dict[str, dict[str, Value]] = field(default_factory=dict)

    def get(self, field_id: str) -> Value:
        """A value by ``section.field`` id; ``KeyError`` when missing."""
        section, _, name = field_id.partition(".")
        return self.sections[section][name]

    def set(self, field_id: str, value: Value) -> None:
        section, _, name = field_id.partition(".")
        self.sections.setdefault(section, {})[name] = value

    def copy(self) -> FilledTemplate:
        return FilledTemplate(
            self.template,
            {
                section: {
                    name: [GroundedFinding(dict(i.values), list(i.boxes)) for i in value]
                    if isinstance(value, list)
                    else value
                    for name, value in fields.items()
                }
                for section, fields in self.sections.items()
            },
        )

    def boxes(self) -> list[Box]:
        """Every box grounding a finding, in field order."""
        found: list[Box] = []
        for fields in self.sections.values():
            for value in fields.values():
                if isinstance(value, list):
                    for item in value:
                        found.extend(item.boxes)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "sections": {
                section: {
                    name: [item.to_dict() for item in value] if isinstance(value, list) else value
                    for name, value in fields.items()
                }
                for section, fields in self.sections.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> FilledTemplate:
        """From ``{"template": name, "sections": {section: {field: value}}}`` (JSON or YAML data)."""
        if not isinstance(data, dict):
            raise SchemaError("", "an object with 'template' and 'sections'", type(data).__name__)
        name = data.get("template")
        if not isinstance(name, str) or not name:
            raise SchemaError("template", "a template name", name)
        sections = data.get("sections")
        if not isinstance(sections, dict):
            raise SchemaError("sections", "an object of sections", sections)
        parsed: dict[str, dict[str, Value]] = {}
        for section, fields in sections.items():
            if not isinstance(fields, dict):
                raise SchemaError(f"sections.{section}", "an object of field values", fields)
            parsed[section] = {}
            for name_, value in fields.items():
                where = f"sections.{section}.{name_}"
                if isinstance(value, list):
                    items = []
                    for index, item in enumerate(value):
                        try:
                            items.append(GroundedFinding.from_dict(item))
                        except SchemaError as error:
                            raise error.prefixed(f"{where}[{index}]") from None
                    parsed[section][name_] = items
                elif value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    parsed[section][name_] = value
                else:
                    raise SchemaError(where, "a string, number, list of findings or null", value)
        return cls(name, parsed)
