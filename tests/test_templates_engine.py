"""Template engine: loading, rendering, parsing (tolerant/strict), validation, diff, round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radscribe.templates import (
    FilledTemplate,
    GroundedFinding,
    TemplateParseError,
    TemplateSpecError,
    diff,
    list_templates,
    load_label_mapping,
    load_template,
    parse,
    render,
    validate,
)
from radscribe.templates.spec import template_from_yaml
from radscribe.types import Box

SHIPPED = ("chest-pa", "spine-ap-alignment", "spine-lumbar-vindr")


def test_shipped_templates_are_listed_and_load():
    assert tuple(list_templates()) == SHIPPED
    for name in SHIPPED:
        template = load_template(name)
        assert template.name == name
        assert template.sections and all(section.fields for section in template.sections)


@pytest.mark.parametrize("name", SHIPPED)
def test_normal_report_is_valid_and_round_trips(name):
    template = load_template(name)
    normal = template.normal()
    assert validate(normal) == []
    markdown = render(normal)
    assert markdown.startswith(f"# {template.title}\n")
    assert parse(markdown, name) == normal
    assert render(parse(markdown, name)) == markdown


@pytest.mark.parametrize("name", SHIPPED)
def test_slots_concatenate_to_skeleton_and_fill_to_render(name):
    template = load_template(name)
    slots = template.slots()
    assert "".join(slot.prefix for slot in slots) == template.skeleton()
    assert [slot.field_id for slot in slots[:-1]] == template.field_ids()
    assert slots[-1].field_id is None
    # Value slots take " value" after the fixed prefix: filling them reproduces render() (no lists here).
    normal = template.normal()
    from radscribe.templates import format_value

    pieces = []
    for slot in slots:
        pieces.append(slot.prefix)
        if slot.field is not None and slot.field.kind != "findings":
            text = format_value(slot.field, normal.get(slot.field_id))
            pieces.append(f" {text}" if text else "")
        elif slot.field is not None:
            pieces.append(f" {slot.field.empty}")
    assert "".join(pieces) == render(normal)


def test_item_slots_match_rendered_findings():
    template = load_template("spine-ap-alignment")
    filled = template.normal()
    curve = {"region": "lumbar", "convexity": "left", "apex": "L2", "upper": "T12", "lower": "L4", "angle": 21.5, "severity": "mild"}
    filled.set("alignment.curves", [GroundedFinding(curve)])
    markdown = render(filled)
    item = template.item_slots("alignment.curves", 0)
    expected = "".join(slot.prefix + f" {render_value(slot.field, curve[slot.field_id.rsplit('.', 1)[1]])}" for slot in item)
    assert expected in markdown
    assert item[0].prefix.startswith("\n  - **Curve 1:**")


def render_value(field, value):
    from radscribe.templates import format_value

    return format_value(field, value)


def test_skeleton_parses_to_blank_fields():
    template = load_template("spine-ap-alignment")
    parsed = parse(template.skeleton(), template)
    assert parsed == template.blank()
    codes = {issue.code for issue in validate(parsed)}
    assert codes == {"blank-required"}


def test_parse_tolerates_whitespace_case_and_bullets():
    template = load_template("spine-ap-alignment")
    markdown = (
        "\n\n#   SPINE ap Alignment REPORT  \n"
        "##  technique\n"
        "*   **projection:**    ap   \n\n\n"
        "## VERTEBRAE\n"
        "- **Visible Vertebrae:** 16\n"
        "-\t**Estimated levels:**  T2-L5\n"
        "## Alignment\n"
        "- **Alignment:** Scoliosis\n"
        "- **Overall severity:** MILD\n"
        "- **Curves:**\n"
        "    - **curve 1:**\n"
        "        - **REGION:** Thoracic\n"
        "        - **Convexity:**   right\n"
        "        - **Apex level:** T8\n"
        "        - **Upper end level:** T5\n"
        "        - **Lower end level:** T11\n"
        "        - **Centre-line cobb proxy angle:** 18.25   DEGREES\n"
        "        - **Severity:** mild\n"
        "## Impression\n"
        "- **Impression:**   Mild   thoracic\tscoliosis.  \r\n"
    )
    parsed = parse(markdown, template)
    assert validate(parsed) == []
    assert parsed.get("technique.projection") == "AP"
    assert parsed.get("vertebrae.count") == 16
    assert parsed.get("alignment.severity") == "mild"
    (curve,) = parsed.get("alignment.curves")
    assert curve.values["angle"] == 18.25 and curve.values["region"] == "thoracic"
    assert parsed.get("impression.text") == "Mild thoracic scoliosis."


@pytest.mark.parametrize(
    ("markdown", "line", "expected"),
    [
        ("", 0, "empty text"),
        ("## Technique\n", 1, "expected the title"),
        ("# Spine AP alignment report\n- **Projection:** AP\n", 2, "section header"),
        ("# Spine AP alignment report\n## Technique\nProjection: AP\n", 3, "field line"),
        ("# Spine AP alignment report\n## Technique\n- **Projection:** AP\n- **Projection:** PA\n", 4, "appears twice"),
        ("# Spine AP alignment report\n## Technique\n  - **Projection:** AP\n", 3, "without indentation"),
        ("# Spine AP alignment report\n## Alignment\n- **Curves:** two of them\n", 3, "expected 'none'"),
        ("# Spine AP alignment report\n## Alignment\n- **Curves:**\n    - **Region:** lumbar\n", 4, "item header"),
        ("# Spine AP alignment report\n### Technique\n", 2, "'## '"),
    ],
)
def test_parse_is_strict_about_structure(markdown, line, expected):
    with pytest.raises(TemplateParseError) as caught:
        parse(markdown, "spine-ap-alignment")
    assert caught.value.line == line
    assert expected in caught.value.reason


def test_validate_names_each_problem():
    template = load_template("spine-ap-alignment")
    markdown = render(template.normal())
    markdown = markdown.replace("## Impression", "## Comparison\n- **Prior:** none\n\n## Impression")
    markdown = markdown.replace("- **Estimated levels:** T1-L5\n", "")
    markdown = markdown.replace("- **Visible vertebrae:** 17", "- **Visible vertebrae:** 45")
    markdown = markdown.replace("- **Alignment:** normal", "- **Alignment:** wavy")
    markdown = markdown.replace("- **Projection:** AP", "- **Projection:** AP\n- **Exposure:** good")
    issues = {(issue.field, issue.code) for issue in validate(parse(markdown, template))}
    assert issues == {
        ("comparison", "unknown-section"),
        ("vertebrae.levels", "missing-field"),
        ("vertebrae.count", "out-of-range"),
        ("alignment.alignment", "not-allowed"),
        ("technique.exposure", "unknown-field"),
    }


def test_validate_findings_items_and_numbers():
    filled = load_template("spine-ap-alignment").normal()
    filled.set("vertebrae.count", 16.5)
    filled.set("alignment.curves", [GroundedFinding({"region": "sacral", "angle": "steep", "extra": "x"})])
    issues = {(issue.field, issue.code) for issue in validate(filled)}
    assert ("vertebrae.count", "not-an-integer") in issues
    assert ("alignment.curves[0].region", "not-allowed") in issues
    assert ("alignment.curves[0].angle", "not-a-number") in issues
    assert ("alignment.curves[0].extra", "unknown-field") in issues
    assert ("alignment.curves[0].apex", "missing-field") in issues
    wrong = FilledTemplate("chest-pa", filled.sections)
    assert any(issue.code == "wrong-template" for issue in validate(wrong, "spine-ap-alignment"))


def test_unparseable_values_are_kept_for_validation():
    markdown = render(load_template("spine-ap-alignment").normal()).replace("**Visible vertebrae:** 17", "**Visible vertebrae:** seventeen")
    parsed = parse(markdown, "spine-ap-alignment")
    assert parsed.get("vertebrae.count") == "seventeen"
    assert [issue.code for issue in validate(parsed)] == ["not-a-number"]


def test_diff_field_by_field():
    template = load_template("spine-ap-alignment")
    a = template.normal()
    b = a.copy()
    b.set("vertebrae.count", 17.0)  # same number: no difference
    b.set("alignment.alignment", "scoliosis")
    b.set("alignment.curves", [GroundedFinding({"region": "lumbar"})])
    changes = [(d.field, d.a, d.b) for d in diff(a, b)]
    assert changes == [("alignment.alignment", "normal", "scoliosis"), ("alignment.curves[0]", None, {"region": "lumbar"})]
    c = b.copy()
    c.sections["alignment"]["curves"][0].values["region"] = "thoracic"
    assert [(d.field, d.a, d.b) for d in diff(b, c)] == [("alignment.curves[0].region", "lumbar", "thoracic")]
    assert diff(a, a.copy()) == []


def test_box_hooks_round_trip_grounding():
    filled = load_template("chest-pa").normal()
    box = Box("Nodule", 0.25, 0.5, 0.5, 0.75)
    filled.set("localized.regions", [GroundedFinding({"finding": "Lung lesion (Nodule)"}, [box])])

    def box_text(boxes):
        return " ".join("[{:.2f},{:.2f},{:.2f},{:.2f}]".format(*b.xyxy) for b in boxes)

    def box_parser(text):
        return [Box.from_xyxy("region", [float(v) for v in text.strip("[]").split(",")])]

    markdown = render(filled, box_text=box_text)
    assert "- **Region 1:** [0.25,0.50,0.50,0.75]" in markdown
    parsed = parse(markdown, "chest-pa", box_parser=box_parser)
    assert parsed.get("localized.regions")[0].boxes[0].xyxy == box.xyxy
    with pytest.raises(TemplateParseError, match="box_parser"):
        parse(markdown, "chest-pa")


def test_filled_from_dict_and_errors():
    data = {"template": "spine-ap-alignment", "sections": {"alignment": {"curves": [{"region": "lumbar", "angle": 12}]}}}
    filled = FilledTemplate.from_dict(data)
    assert filled.get("alignment.curves")[0].values == {"region": "lumbar", "angle": 12}
    assert FilledTemplate.from_dict(filled.to_dict()) == filled
    with pytest.raises(ValueError, match="sections"):
        FilledTemplate.from_dict({"template": "x", "sections": []})


def test_unknown_template_and_bad_spec_files(tmp_path):
    with pytest.raises(KeyError, match="shipped templates"):
        load_template("no-such-template")
    with pytest.raises(TemplateSpecError, match="kind"):
        template_from_yaml("name: t\ntitle: T\nsections:\n- id: s\n  title: S\n  fields:\n  - {id: f, label: F, kind: colour}\n")
    with pytest.raises(TemplateSpecError, match="normal"):
        template_from_yaml("name: t\ntitle: T\nsections:\n- id: s\n  title: S\n  fields:\n  - {id: f, label: F, kind: enum, values: [a], normal: b}\n")
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ntitle: Mine\nsections:\n- id: s\n  title: S\n  fields:\n  - {id: f, label: F, kind: text}\n")
    assert load_template(path).name == "mine"
    assert render(load_template(path).blank(), path) == "# Mine\n\n## S\n- **F:**\n"


def test_label_mapping_covers_both_label_sets():
    mapping = load_label_mapping()
    chexpert = {entry.chexpert for entry in mapping.fields if entry.chexpert}
    assert len(chexpert) == 14 and "No Finding" in chexpert
    assert mapping.field_for_nih("Effusion") == "pleura.pleural_effusion"
    assert mapping.field_for_nih("Infiltration") == "lungs.lung_opacity"
    assert mapping.field_for_nih("Mass") == mapping.field_for_nih("Nodule") == "lungs.lung_lesion"
    assert mapping.field_for_nih("Pleural_Thickening") == "pleura.pleural_thickening"
    assert mapping.chexpert_for_field("pleura.pleural_thickening") == "Pleural Other"
    template = load_template("chest-pa")
    for entry in mapping.fields:
        template.field(entry.field)


# ----------------------------------------------------------------------------------------- hypothesis

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _value(field):
    if field.kind == "enum":
        return st.one_of(st.none(), st.sampled_from(field.values), TEXT)
    if field.kind == "number":
        low = field.minimum if field.minimum is not None else -1e6
        high = field.maximum if field.maximum is not None else 1e6
        numbers = st.integers(int(low), int(high)) if field.integer else st.floats(low, high, allow_nan=False)
        return st.one_of(st.none(), numbers)
    return st.one_of(st.none(), TEXT)


def _field_value(field):
    if field.kind != "findings":
        return _value(field)
    item = st.fixed_dictionaries({sub.id: _value(sub) for sub in field.fields}).map(GroundedFinding)
    return st.one_of(st.none(), st.lists(item, max_size=4))


@st.composite
def filled_templates(draw):
    template = load_template(draw(st.sampled_from(SHIPPED)))
    return FilledTemplate(
        template.name,
        {s.id: {f.id: draw(_field_value(f)) for f in s.fields} for s in template.sections},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filled_templates())
def test_round_trip_render_parse_render_is_identity(filled):
    markdown = render(filled)
    parsed = parse(markdown, filled.template)
    assert render(parsed) == markdown
    # Parsing loses nothing that validation cares about.
    assert [i.code for i in validate(parsed)] == [i.code for i in validate(parse(render(parsed), filled.template))]
