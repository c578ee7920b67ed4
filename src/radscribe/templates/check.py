"""Checking filled templates against their template (:func:`validate`) and comparing two (:func:`diff`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from radscribe.templates.filled import FilledTemplate, GroundedFinding, Value
from radscribe.templates.spec import Field, Template, load_template

ISSUE_CODES: tuple[str, ...] = (
    "wrong-template",
    "unknown-section",
    "missing-section",
    "unknown-field",
    "missing-field",
    "blank-required",
    "not-allowed",
    "not-a-number",
    "not-an-integer",
    "out-of-range",
    "not-text",
    "not-a-list",
)


@dataclass(frozen=True)
class TemplateIssue:
    """One problem: ``field`` is a ``section.field`` id (``section`` alone, ``alignment.curves[0].angle``)."""

    field: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.code}]"


@dataclass(frozen=True)
class FieldDiff:
    """A field whose value differs: ``a`` and ``b`` as held (``None`` when blank or absent)."""

    field: str
    a: Any
    b: Any


def value_problem(spec: Field, value: Any) -> tuple[str, str] | None:
    """``(code, expectation)`` when a non-blank scalar value does not fit ``spec``, else None."""
    if spec.kind == "enum":
        if not isinstance(value, str) or value not in spec.values:
            return "not-allowed", f"one of {', '.join(spec.values)}"
        return None
    if spec.kind == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            unit = f" (in {spec.unit})" if spec.unit else ""
            return "not-a-number", f"a number{unit}"
        if spec.integer and not float(value).is_integer():
            return "not-an-integer", "a whole number"
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if not low <= value <= high:
            return "out-of-range", f"a value in [{_number(spec.minimum)}, {_number(spec.maximum)}]{' ' + spec.unit if spec.unit else ''}"
        return None
    if spec.kind == "text":
        if not isinstance(value, str) or any(mark in value for mark in "\n\r"):
            return "not-text", "one line of text"
        return None
    return None


def _number(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def validate(filled: FilledTemplate, template: Template | str | None = None) -> list[TemplateIssue]:
    """Every problem with ``filled`` against its template; an empty list means valid."""
    issues: list[TemplateIssue] = []
    try:
        spec = load_template(template if template is not None else filled.template)
    except KeyError as error:
        return [TemplateIssue("template", "wrong-template", str(error).strip("'\""))]
    if filled.template != spec.name:
        issues.append(TemplateIssue("template", "wrong-template", f"filled for '{filled.template}', checked against '{spec.name}'"))
    known = {section.id for section in spec.sections}
    for section_id in filled.sections:
        if section_id not in known:
            issues.append(TemplateIssue(section_id, "unknown-section", f"section '{section_id}' is not in template '{spec.name}'"))
    for section in spec.sections:
        if section.id not in filled.sections:
            issues.append(TemplateIssue(section.id, "missing-section", f"section '{section.title}' is missing"))
            continue
        values = filled.sections[section.id]
        field_ids = {item.id for item in section.fields}
        for name in values:
            if name not in field_ids:
                issues.append(TemplateIssue(f"{section.id}.{name}", "unknown-field", f"section '{section.title}' has no field '{name}'"))
        for item in section.fields:
            field_id = f"{section.id}.{item.id}"
            if item.id not in values:
                issues.append(TemplateIssue(field_id, "missing-field", f"field '{item.label}' is missing"))
                continue
            issues += _check_value(field_id, item, values[item.id])
    return issues


def _check_value(field_id: str, spec: Field, value: Value) -> list[TemplateIssue]:
    if value is None or value == "":
        if spec.required:
            return [TemplateIssue(field_id, "blank-required", f"field '{spec.label}' is required but blank")]
        return []
    if spec.kind == "findings":
        if not isinstance(value, list) or not all(isinstance(item, GroundedFinding) for item in value):
            return [TemplateIssue(field_id, "not-a-list", f"field '{spec.label}' expects a list of findings, got {value!r}"[:200])]
        issues = []
        for index, finding in enumerate(value):
            item_id = f"{field_id}[{index}]"
            sub_ids = {sub.id for sub in spec.fields}
            for name in finding.values:
                if name not in sub_ids:
                    issues.append(TemplateIssue(f"{item_id}.{name}", "unknown-field", f"{spec.item_label} items have no field '{name}'"))
            for sub in spec.fields:
                if sub.id not in finding.values:
                    issues.append(TemplateIssue(f"{item_id}.{sub.id}", "missing-field", f"field '{sub.label}' is missing"))
                else:
                    issues += _check_value(f"{item_id}.{sub.id}", sub, finding.values[sub.id])
        return issues
    problem = value_problem(spec, value)
    if problem is None:
        return []
    code, expected = problem
    return [TemplateIssue(field_id, code, f"field '{spec.label}': expected {expected}, got {value!r}"[:300])]


def diff(a: FilledTemplate, b: FilledTemplate) -> list[FieldDiff]:
    """Field-by-field differences (findings compared item by item and sub-field by sub-field).

    Fields are visited in template order when ``a``'s template is known, then any others; numbers
    compare by value (``2 == 2.0``), text and enum values exactly.
    """
    order: list[tuple[str, str]] = []
    try:
        spec = load_template(a.template)
        order = [(s.id, f.id) for s in spec.sections for f in s.fields]
    except KeyError:
        pass
    for filled in (a, b):
        for section, fields in filled.sections.items():
            for name in fields:
                if (section, name) not in order:
                    order.append((section, name))
    diffs: list[FieldDiff] = []
    if a.template != b.template:
        diffs.append(FieldDiff("template", a.template, b.template))
    for section, name in order:
        left = a.sections.get(section, {}).get(name)
        right = b.sections.get(section, {}).get(name)
        field_id = f"{section}.{name}"
        if isinstance(left, list) and isinstance(right, list):
            diffs += _diff_findings(field_id, left, right)
        elif not _same(left, right):
            diffs.append(FieldDiff(field_id, left, right))
    return diffs


def _diff_findings(field_id: str, left: list[GroundedFinding], right: list[GroundedFinding]) -> list[FieldDiff]:
    diffs = []
    for index in range(max(len(left), len(right))):
        item_id = f"{field_id}[{index}]"
        if index >= len(left) or index >= len(right):
            present = left[index] if index < len(left) else right[index]
            diffs.append(
                FieldDiff(item_id, present.values if index < len(left) else None, present.values if index < len(right) else None)
            )
            continue
        names = list(dict.fromkeys([*left[index].values, *right[index].values]))
        for name in names:
            x, y = left[index].values.get(name), right[index].values.get(name)
            if not _same(x, y):
                diffs.append(FieldDiff(f"{item_id}.{name}", x, y))
    return diffs


def _same(x: Any, y: Any) -> bool:
    numbers = (int, float)
    if isinstance(x, numbers) and isinstance(y, numbers) and not isinstance(x, bool) and not isinstance(y, bool):
        return float(x) == float(y)
    if isinstance(x, list) and isinstance(y, list):
        return not _diff_findings("", x, y)
    return x == y
