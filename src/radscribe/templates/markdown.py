"""Markdown for filled templates: :func:`render` writes it, :func:`parse` reads it back.

The layout is deliberately regular, one value per line::

    # <template title>

    ## <section title>
    - **<field label>:** <value>
    - **<findings label>:** none                 (an empty findings list)
    - **<findings label>:**                      (a non-empty one: nested items follow)
      - **<item label> 1:**
        - **<sub-field label>:** <value>

Numbers are written with their unit (``23.5 degrees``); a blank value leaves nothing after the
label. Parsing is tolerant of whitespace (extra spaces, blank lines, tabs, indentation depth, ``*``
instead of ``-``) and of letter case in headers, labels and enum values; it is strict about
structure: every line must be the title, a section header, a field line, or (under a findings
field) an item header or sub-field line, else :class:`TemplateParseError` names the line and
what was expected. Unknown sections and fields, missing fields and bad values are *not* parse
errors: they are kept (or left out) so that :func:`~radscribe.templates.validate` can name them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from radscribe.templates.filled import FilledTemplate, GroundedFinding, ItemValue, Value
from radscribe.templates.spec import INDENT, Field, Template, load_template
from radscribe.types import Box

BoxText = Callable[[Sequence[Box]], str]
BoxParser = Callable[[str], list[Box]]

_FIELD_LINE = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\*\*(?P<label>.+?):\*\*(?P<value>.*)$")
_HEADER = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<title>.*?)[ \t#]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class TemplateParseError(ValueError):
    """Markdown that does not have the template's structure; ``line`` is 1-based (0: the whole text)."""

    def __init__(self, line: int, reason: str):
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}" if line else reason)


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (line breaks included) into one space."""
    return " ".join(text.split())


def _key(text: str) -> str:
    return normalize_space(text).casefold()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", _key(text)).strip("_") or "_"


# ----------------------------------------------------------------------------------------------- render


def format_value(spec: Field, value: ItemValue) -> str:
    """One scalar value as written in markdown ("" for blank)."""
    if value is None:
        return ""
    if spec.kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and (spec.integer and float(value).is_integer()):
            text = str(int(value))
        elif math.isfinite(value) and not spec.integer:
            text = f"{value:.{spec.decimals}f}"
        else:
            text = repr(value)  # an invalid value is written as is, for validate to name
        return f"{text} {spec.unit}" if spec.unit else text
    if spec.kind == "enum" and isinstance(value, str):
        for allowed in spec.values:
            if _key(allowed) == _key(value):
                return allowed
    return normalize_space(str(value))


def render(filled: FilledTemplate, template: Template | str | None = None, *, box_text: BoxText | None = None) -> str:
    """The markdown of a filled template, in template order.

    Sections and fields the template does not know are not written (:func:`validate` reports them);
    missing fields render blank. ``box_text`` (e.g. a grounding codec) writes a findings item's boxes
    after its item header.
    """
    spec = load_template(template if template is not None else filled.template)
    lines = [f"# {spec.title}"]
    for section in spec.sections:
        lines += ["", f"## {section.title}"]
        values = filled.sections.get(section.id, {})
        for item in section.fields:
            value = values.get(item.id)
            if item.kind != "findings":
                lines.append(_line(0, item.label, format_value(item, value)))  # type: ignore[arg-type]
            elif value is None:
                lines.append(_line(0, item.label, ""))
            elif isinstance(value, list) and not value:
                lines.append(_line(0, item.label, item.empty))
            elif isinstance(value, list):
                lines.append(_line(0, item.label, ""))
                for index, finding in enumerate(value, start=1):
                    grounding = box_text(finding.boxes) if box_text is not None and finding.boxes else ""
                    lines.append(_line(1, f"{item.item_label} {index}", grounding))
                    for sub in item.fields:
                        lines.append(_line(2, sub.label, format_value(sub, finding.values.get(sub.id))))
            else:
                lines.append(_line(0, item.label, normalize_space(str(value))))
    return "\n".join(lines) + "\n"


def _line(depth: int, label: str, value: str) -> str:
    line = f"{INDENT * depth}- **{label}:**"
    return f"{line} {value}" if value else line


# ----------------------------------------------------------------------------------------------- parse


def parse_value(spec: Field, text: str) -> ItemValue:
    """One scalar value from its markdown text; text that does not fit is returned as written."""
    text = normalize_space(text)
    if not text:
        return None
    if spec.kind == "enum":
        for allowed in spec.values:
            if _key(allowed) == text.casefold():
                return allowed
        return text
    if spec.kind == "number":
        number = text
        if spec.unit and number.casefold().endswith(spec.unit.casefold()):
            number = number[: -len(spec.unit)].strip()
        if not _NUMBER.match(number):
            return text
        value = float(number)
        if spec.integer and value.is_integer():
            return int(value)
        return value
    return text


def parse(markdown: str, template: Template | str, *, box_parser: BoxParser | None = None) -> FilledTemplate:
    """Read markdown written in ``template``'s layout (see the module docstring)."""
    spec = load_template(template)
    if not isinstance(markdown, str):
        raise TypeError(f"parse() needs markdown text (str), got {type(markdown).__name__}")
    if not markdown.strip():
        raise TemplateParseError(0, f"empty text: expected a '{spec.name}' report starting with '# {spec.title}'")
    return _Parser(spec, box_parser).run(markdown)


class _Parser:
    def __init__(self, spec: Template, box_parser: BoxParser | None):
        self.spec = spec
        self.box_parser = box_parser
        self.sections_by_title = {_key(s.title): s for s in spec.sections}
        self.filled = FilledTemplate(spec.name, {})
        self.section_id: str | None = None
        self.section_fields: dict[str, Field] = {}
        self.list_field: Field | None = None  # the findings field whose nested lines may follow
        self.list_items: list[GroundedFinding] | None = None
        self.item: GroundedFinding | None = None

    def run(self, markdown: str) -> FilledTemplate:
        seen_title = False
        for number, raw in enumerate(markdown.splitlines(), start=1):
            line = raw.expandtabs(4).rstrip()
            if not line.strip():
                continue
            header = _HEADER.match(line.strip())
            if not seen_title:
                if header is None or len(header.group("hashes")) != 1 or _key(header.group("title")) != _key(self.spec.title):
                    raise TemplateParseError(number, f"expected the title '# {self.spec.title}', got {line.strip()[:80]!r}")
                seen_title = True
                continue
            if header is not None:
                self._section(number, header)
                continue
            match = _FIELD_LINE.match(line)
            if match is None:
                raise TemplateParseError(
                    number, f"expected a section header '## Title' or a field line '- **Label:** value', got {line.strip()[:80]!r}"
                )
            if self.section_id is None:
                raise TemplateParseError(number, f"expected a section header '## Title' before the first field, got {line.strip()[:80]!r}")
            if match.group("indent"):
                self._nested(number, match.group("label"), match.group("value"))
            else:
                self._field(number, match.group("label"), match.group("value"))
        return self.filled

    def _section(self, number: int, header: re.Match[str]) -> None:
        if len(header.group("hashes")) != 2:
            raise TemplateParseError(number, f"expected a section header with '## ', got {header.group(0)[:80]!r}")
        title = header.group("title")
        section = self.sections_by_title.get(_key(title))
        section_id = section.id if section is not None else _slug(title)
        if section_id in self.filled.sections:
            raise TemplateParseError(number, f"section '{normalize_space(title)}' appears twice")
        self.section_id = section_id
        self.section_fields = {_key(f.label): f for f in section.fields} if section is not None else {}
        self.filled.sections[section_id] = {}
        self._close_list()

    def _field(self, number: int, label: str, text: str) -> None:
        self._close_list()
        assert self.section_id is not None
        values = self.filled.sections[self.section_id]
        spec = self.section_fields.get(_key(label))
        field_id = spec.id if spec is not None else _slug(label)
        if field_id in values:
            raise TemplateParseError(number, f"field '{normalize_space(label)}' appears twice in this section")
        if spec is None:
            values[field_id] = normalize_space(text) or None
            return
        if spec.kind != "findings":
            values[field_id] = parse_value(spec, text)
            return
        value = normalize_space(text)
        if not value:
            values[field_id] = None  # blank until nested items say otherwise
        elif _key(value) == _key(spec.empty):
            values[field_id] = []
            return
        else:
            raise TemplateParseError(
                number, f"expected '{spec.empty}' or nothing after '{spec.label}:' (items go on nested lines), got {value[:80]!r}"
            )
        self.list_field = spec
        self.list_items = None

    def _nested(self, number: int, label: str, text: str) -> None:
        spec = self.list_field
        if spec is None:
            raise TemplateParseError(number, f"expected a field line without indentation (only findings lists have nested items), got '{label}'")
        item_header = re.fullmatch(rf"{re.escape(_key(spec.item_label))}\s*(\d+)", _key(label))
        if item_header is not None:
            self._item(number, spec, text)
            return
        if self.item is None:
            raise TemplateParseError(number, f"expected an item header '- **{spec.item_label} 1:**' before its fields, got '{label}'")
        sub = next((f for f in spec.fields if _key(f.label) == _key(label)), None)
        sub_id = sub.id if sub is not None else _slug(label)
        if sub_id in self.item.values:
            raise TemplateParseError(number, f"'{normalize_space(label)}' appears twice in this {spec.item_label.lower()}")
        self.item.values[sub_id] = parse_value(sub, text) if sub is not None else (normalize_space(text) or None)

    def _item(self, number: int, spec: Field, text: str) -> None:
        if self.list_items is None:
            self.list_items = []
            assert self.section_id is not None
            self.filled.sections[self.section_id][spec.id] = self.list_items
        boxes: list[Box] = []
        grounding = text.strip()
        if grounding:
            if self.box_parser is None:
                raise TemplateParseError(number, f"expected nothing after the item header '{spec.item_label}' (pass box_parser to read grounding), got {grounding[:80]!r}")
            try:
                boxes = list(self.box_parser(grounding))
            except ValueError as error:
                raise TemplateParseError(number, f"unreadable grounding after the item header: {error}") from None
        self.item = GroundedFinding({}, boxes)
        self.list_items.append(self.item)

    def _close_list(self) -> None:
        self.list_field = None
        self.list_items = None
        self.item = None


def filled_from_values(template: Template | str, values: dict[str, Value]) -> FilledTemplate:
    """A filled template from ``{"section.field": value}``; other fields are blank."""
    spec = load_template(template)
    filled = spec.blank()
    for field_id, value in values.items():
        spec.field(field_id)  # KeyError for a field the template does not have
        filled.set(field_id, value)
    return filled
