"""The report document the workstation edits, its checks, and its exports (markdown, JSON, FHIR, DICOM SR).

A document is plain JSON, what the page sends and the edit log stores::

    {"template": "spine-ap-alignment",
     "fields":   {"technique.projection": "AP", "vertebrae.count": 17, ...},   # scalar fields
     "findings": {"alignment.curves": [{"values": {...}, "boxes": [Box...], "decision": "pending"}]},
     "boxes":    [{"label": "vertebra", "x_min": ..., "field": "vertebrae.count", "decision": "accepted"}],
     "impression": "..."}

Boxes are :class:`~radscribe.types.Box` dicts (normalised xyxy on the original image) plus a
``decision`` (``pending``/``accepted``/``rejected``) and, for free boxes, the ``field`` they illustrate.
The impression is the template's impression text field when it has one. The filled template of a
document (:func:`to_filled`) leaves rejected findings out; pending ones count as accepted, since
signing says "I agree with what is shown".
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

from radscribe.infer.dicom_sr import structured_report
from radscribe.infer.fhir import build_diagnostic_report, impression_field
from radscribe.templates import FilledTemplate, GroundedFinding, Template, render, validate
from radscribe.types import Box, SchemaError

DECISIONS = ("pending", "accepted", "rejected")
# Problems that make a save meaningless (a value the field can never hold); a blank required field is
# only incomplete: it is saved, and signing waits until it is filled.
INCOMPLETE_CODES = frozenset({"blank-required", "missing-field", "missing-section"})


class DocumentError(ValueError):
    """A document that cannot be checked at all; ``errors`` maps a field path to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


def scalar_fields(template: Template) -> list[str]:
    skip = impression_field(template)
    return [
        f"{s.id}.{f.id}" for s in template.sections for f in s.fields if f.kind != "findings" and f"{s.id}.{f.id}" != skip
    ]


def findings_fields(template: Template) -> list[str]:
    return [f"{s.id}.{f.id}" for s in template.sections for f in s.fields if f.kind == "findings"]


def link_field(template: Template, label: str) -> str | None:
    """The scalar field a free box illustrates: the first whose label or id names the box label.

    ("vertebra" boxes illustrate "Visible vertebrae"); ``None`` when no field names it.
    """
    word = label.casefold().strip()
    stem = word[:-1] if word.endswith("s") else word
    if not stem:
        return None
    for field_id in scalar_fields(template):
        spec = template.field(field_id)
        if stem in spec.label.casefold() or stem in field_id.casefold():
            return field_id
    return None


def _box(data: Any, where: str, errors: dict[str, list[str]]) -> dict[str, Any] | None:
    try:
        box = Box.from_dict(data)
    except SchemaError as error:
        errors.setdefault(f"{where}.{error.field}".rstrip("."), []).append(f"expected {error.expected}, got {error.got!r}"[:200])
        return None
    out = box.to_dict()
    decision = data.get("decision", "pending") if isinstance(data, dict) else "pending"
    if decision not in DECISIONS:
        errors.setdefault(f"{where}.decision", []).append(f"expected one of {', '.join(DECISIONS)}, got {decision!r}")
    out["decision"] = decision
    if isinstance(data, dict) and data.get("field") is not None:
        out["field"] = str(data["field"])
    return out


def normalize_document(data: Any, template: Template) -> dict[str, Any]:
    """A clean copy of a client document, or :class:`DocumentError` naming every malformed part."""
    errors: dict[str, list[str]] = {}
    if not isinstance(data, dict):
        raise DocumentError({"": ["expected a report document object"]})
    if data.get("template", template.name) != template.name:
        errors["template"] = [f"this study uses template '{template.name}', got {data.get('template')!r}"]
    for key in ("fields", "findings"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise DocumentError({key: ["expected an object keyed by field id"]})
    if data.get("boxes") is not None and not isinstance(data["boxes"], list):
        raise DocumentError({"boxes": ["expected a list of boxes"]})
    known_scalars = set(scalar_fields(template))
    fields: dict[str, Any] = {}
    for field_id, value in (data.get("fields") or {}).items():
        if field_id not in known_scalars:
            errors.setdefault(field_id, []).append(f"template '{template.name}' has no editable field '{field_id}'")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            errors.setdefault(field_id, []).append(f"expected a string or number, got {value!r}"[:200])
        else:
            fields[field_id] = value.strip() if isinstance(value, str) else value
    findings: dict[str, list[dict[str, Any]]] = {}
    known_lists = set(findings_fields(template))
    for field_id, items in (data.get("findings") or {}).items():
        if field_id not in known_lists:
            errors.setdefault(field_id, []).append(f"template '{template.name}' has no findings list '{field_id}'")
            continue
        if not isinstance(items, list):
            errors.setdefault(field_id, []).append("expected a list of findings")
            continue
        clean = []
        for index, item in enumerate(items):
            where = f"{field_id}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("values", {}), dict):
                errors.setdefault(where, []).append("expected {'values': {...}, 'boxes': [...], 'decision': ...}")
                continue
            decision = item.get("decision", "pending")
            if decision not in DECISIONS:
                errors.setdefault(f"{where}.decision", []).append(f"expected one of {', '.join(DECISIONS)}, got {decision!r}")
            boxes = [_box(b, f"{where}.boxes[{i}]", errors) for i, b in enumerate(item.get("boxes") or [])]
            values = {k: (v.strip() if isinstance(v, str) else v) for k, v in item.get("values", {}).items()}
            clean.append({"values": values, "boxes": [b for b in boxes if b], "decision": decision})
        findings[field_id] = clean
    boxes = [_box(b, f"boxes[{i}]", errors) for i, b in enumerate(data.get("boxes") or [])]
    impression = data.get("impression")
    if impression is not None and not isinstance(impression, str):
        errors.setdefault("impression", []).append("expected text")
    if errors:
        raise DocumentError(errors)
    return {
        "template": template.name,
        "fields": fields,
        "findings": findings,
        "boxes": [b for b in boxes if b],
        "impression": (impression or "").strip(),
    }


def to_filled(document: dict[str, Any], template: Template) -> FilledTemplate:
    """The filled template a (normalised) document stands for; rejected findings are left out."""
    filled = template.blank()
    for field_id, value in document["fields"].items():
        filled.set(field_id, None if value == "" else value)
    for field_id in findings_fields(template):
        items = document["findings"].get(field_id, [])
        filled.set(field_id, [
            GroundedFinding(dict(item["values"]), [Box.from_dict(b) for b in item["boxes"] if b["decision"] != "rejected"])
            for item in items
            if item["decision"] != "rejected"
        ])
    impression = impression_field(template)
    if impression is not None:
        filled.set(impression, document["impression"] or None)
    return filled


def check(document: dict[str, Any], template: Template) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(errors, incomplete)`` per field id: values that do not fit, and required fields still blank."""
    errors: dict[str, list[str]] = {}
    incomplete: dict[str, list[str]] = {}
    impression = impression_field(template)
    for issue in validate(to_filled(document, template), template):
        key = "impression" if issue.field == impression else issue.field
        target = incomplete if issue.code in INCOMPLETE_CODES else errors
        target.setdefault(key, []).append(issue.message)
    return errors, incomplete


def from_filled(filled: FilledTemplate | None, template: Template, boxes: list[Box], decision: str = "pending") -> dict[str, Any]:
    """A document from a model's filled template and its free boxes (each linked to the field it illustrates)."""
    filled = filled or template.blank()
    impression = impression_field(template)
    fields: dict[str, Any] = {}
    for field_id in scalar_fields(template):
        try:
            fields[field_id] = filled.get(field_id)
        except KeyError:
            fields[field_id] = None
    findings: dict[str, list[dict[str, Any]]] = {}
    grounded: set[tuple] = set()
    for field_id in findings_fields(template):
        try:
            items = filled.get(field_id) or []
        except KeyError:
            items = []
        findings[field_id] = [
            {"values": dict(i.values), "boxes": [dict(b.to_dict(), decision=decision) for b in i.boxes], "decision": decision}
            for i in items
        ]
        grounded |= {b.xyxy + (b.label,) for i in items for b in i.boxes}
    free = []
    for box in boxes:
        if box.xyxy + (box.label,) in grounded:
            continue  # already drawn as its finding's box
        record = dict(box.to_dict(), decision=decision)
        linked = link_field(template, box.label)
        if linked:
            record["field"] = linked
        free.append(record)
    text = ""
    if impression is not None:
        try:
            text = filled.get(impression) or ""
        except KeyError:
            text = ""
    return {"template": template.name, "fields": fields, "findings": findings, "boxes": free, "impression": str(text)}


# ----------------------------------------------------------------------------------------------- exports


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def export_markdown(document: dict[str, Any], template: Template) -> str:
    """The report as the template's markdown (it parses back with :func:`radscribe.templates.parse`)."""
    return render(to_filled(document, template), template)


def export_json(study: dict[str, Any], document: dict[str, Any], template: Template, signature: dict | None, version: int) -> dict[str, Any]:
    filled = to_filled(document, template)
    return {
        "study_id": study["id"],
        "status": study["status"],
        "template": {"name": template.name, "version": template.version},
        "version": version,
        "report": filled.to_dict(),
        "markdown": render(filled, template),
        "impression": document["impression"],
        "boxes": [b for b in document["boxes"] if b["decision"] != "rejected"],
        "images": study["images"],
        "signature": None if signature is None else {**signature, "signed_at": _iso(signature["signed_at"])},
    }


def export_fhir(study: dict[str, Any], document: dict[str, Any], template: Template, signature: dict | None, version: int) -> dict[str, Any]:
    """A FHIR R4 ``DiagnosticReport`` (validated; :mod:`radscribe.infer.fhir`): ``final`` once signed.

    The markdown and the full JSON export (boxes included: FHIR has no box type) ride along as
    ``presentedForm`` attachments.
    """
    full = export_json(study, document, template, signature, version)
    return build_diagnostic_report(
        to_filled(document, template), template, report_id=study["id"], identifier=study["id"], final=signature is not None,
        markdown=full["markdown"], impression=document["impression"],
        issued=datetime.fromtimestamp(signature["signed_at"], timezone.utc) if signature else None,
        interpreter=signature["signer"] if signature else None,
        attachments=[("application/json", "radscribe report (with boxes)", json.dumps(full).encode())],
    )


def export_sr(document: dict[str, Any], template: Template, signature: dict | None, source: Any) -> bytes:
    """A DICOM Comprehensive 3D SR (TID 1500; :mod:`radscribe.infer.dicom_sr`) referencing the study's DICOM ``source``."""
    report = structured_report(
        to_filled(document, template), template,
        [Box.from_dict(b) for b in document["boxes"] if b["decision"] != "rejected"], source,
        impression=document["impression"],
        signer=signature["signer"] if signature else None,
        signed_at=datetime.fromtimestamp(signature["signed_at"], timezone.utc) if signature else None,
    )
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
