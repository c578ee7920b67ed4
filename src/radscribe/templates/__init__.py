"""Report templates as data (SpineVLM's markdown-guided structured learning).

A template (YAML in ``specs/``) lists sections and typed fields; a model completes its markdown.
``render`` writes a :class:`FilledTemplate` as markdown, ``parse`` reads it back, ``validate`` names
every problem, ``diff`` compares two field by field. ``Template.slots()`` separates the fixed text
(headers, field labels) from the value slots, for constrained decoding.
"""

from radscribe.templates.check import FieldDiff, TemplateIssue, diff, validate
from radscribe.templates.filled import FilledTemplate, GroundedFinding, Value
from radscribe.templates.mapping import NIH_LABELS, FieldMapping, LabelMapping, load_label_mapping
from radscribe.templates.markdown import TemplateParseError, filled_from_values, format_value, parse, parse_value, render
from radscribe.templates.spec import Field, Section, Slot, Template, TemplateSpecError, list_templates, load_template

__all__ = [
    "NIH_LABELS",
    "Field",
    "FieldDiff",
    "FieldMapping",
    "FilledTemplate",
    "GroundedFinding",
    "LabelMapping",
    "Section",
    "Slot",
    "Template",
    "TemplateIssue",
    "TemplateParseError",
    "TemplateSpecError",
    "Value",
    "diff",
    "filled_from_values",
    "format_value",
    "list_templates",
    "load_label_mapping",
    "load_template",
    "parse",
    "parse_value",
    "render",
    "validate",
]
