"""NIH ChestX-ray14 image labels -> a filled ``chest-pa`` template, through ``label-mapping.yaml``.

These are WEAK labels (mined from reports by NLP, noisy), and the output says so: the template's
``Label source`` field and its impression name them, and so does the study's metadata. A field no
NIH label covers (fracture, support devices...) is "not assessed", never "absent".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from radscribe.templates import FilledTemplate, GroundedFinding, load_label_mapping, load_template
from radscribe.types import Box, Finding

CHEST_TEMPLATE = "chest-pa"
WEAK_LABEL_SOURCE = "weak labels from NIH ChestX-ray14 image labels"
NO_FINDING = "no finding"
STATUS_VALUE = {"positive": "present", "uncertain": "uncertain", "negative": "absent"}


@dataclass
class ChestFill:
    filled: FilledTemplate
    unmapped: list[str]  # finding labels that are neither NIH labels nor "No Finding"


def _key(label: str) -> str:
    return " ".join(label.replace("_", " ").split()).casefold()


def chest_template_from_labels(findings: Sequence[Finding], boxes: Sequence[Box] = (), projection: str | None = None) -> ChestFill:
    """Fill ``chest-pa`` from NIH findings (and ground NIH boxes whose label maps to a field)."""
    mapping = load_label_mapping()
    template = load_template(CHEST_TEMPLATE)
    filled = template.blank()
    filled.set("technique.projection", projection.upper() if projection and projection.upper() in ("PA", "AP") else None)
    filled.set("technique.label_source", WEAK_LABEL_SOURCE)

    statuses: dict[str, str] = {}  # field id -> worst status found (positive beats uncertain beats negative)
    rank = {"negative": 0, "uncertain": 1, "positive": 2}
    unmapped: list[str] = []
    named: list[str] = []
    for finding in findings:
        if _key(finding.label) == NO_FINDING:
            continue  # "No Finding" is implied by the other labels' absence
        try:
            field_id = mapping.field_for_nih(finding.label)
        except KeyError:
            unmapped.append(finding.label)
            continue
        current = statuses.get(field_id)
        if current is None or rank[finding.status] > rank[current]:
            statuses[field_id] = finding.status
        if finding.status != "negative":
            named.append(f"{finding.label.replace('_', ' ').lower()}{'' if finding.status == 'positive' else ' (uncertain)'}")

    for entry in mapping.fields:
        if entry.field == "impression.no_finding":
            continue
        if not entry.nih:
            filled.set(entry.field, "not assessed")
        else:
            filled.set(entry.field, STATUS_VALUE[statuses.get(entry.field, "negative")])
    found = set(statuses.values())
    filled.set("impression.no_finding", "no" if "positive" in found else "not assessed" if "uncertain" in found else "yes")

    regions = []
    for box in boxes:
        try:
            field_id = mapping.field_for_nih(box.label)
        except KeyError:
            continue
        field_label = template.field(field_id).label
        name = box.label.replace("_", " ")
        text = field_label if _key(field_label) == _key(name) else f"{field_label} ({name})"
        regions.append(GroundedFinding({"finding": text}, [box]))
    filled.set("localized.regions", regions)
    summary = ", ".join(dict.fromkeys(named)) if named else "no finding"
    filled.set("impression.text", f"{WEAK_LABEL_SOURCE[0].upper()}{WEAK_LABEL_SOURCE[1:]}: {summary}.")
    return ChestFill(filled, unmapped)
