"""A report as a FHIR R4 DiagnosticReport, built and validated with ``fhir.resources`` (its R4B models).

:func:`build_diagnostic_report` is the one builder, used by ``radscribe report --fhir`` (through
:func:`diagnostic_report`, machine-written and ``preliminary``) and by the workstation's export
(``final`` once signed). Every field of the filled template becomes a contained ``Observation``
(numbers as ``valueQuantity`` with their unit; each item of a findings list one Observation with a
component per value and its boxes as a note); the markdown and any further attachments ride along
as ``presentedForm``. The resource is validated against the FHIR schema before it is returned, so an
invalid one (an empty ``conclusion``, a bad id) raises :class:`FhirError` instead of being written.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from radscribe.templates import FilledTemplate, Template, load_template
from radscribe.types import Box

LOINC = "http://loinc.org"
IMAGING_STUDY_CODE = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}
FIELD_SYSTEM = "urn:radscribe:template:"
ID_NAMESPACE = uuid.UUID("8f5b0f5e-6a43-4c1b-9d8e-3c1f3c2b7a10")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class FhirError(ValueError):
    """A resource that does not validate against the FHIR schema; the message names the element."""


def _model():
    try:
        from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    except ImportError:
        raise ImportError("FHIR output needs fhir.resources: pip install 'radscribe[standards]'") from None
    return DiagnosticReport


def fhir_id(text: str) -> str:
    """``text`` when it is a valid FHIR id, else a stable UUID derived from it."""
    return text if _FHIR_ID.match(text) else str(uuid.uuid5(ID_NAMESPACE, text))


def impression_field(template: Template) -> str | None:
    """The ``section.field`` id of the template's free-text impression, if it has one (carried as ``conclusion``)."""
    for section in template.sections:
        if section.id == "impression":
            for item in section.fields:
                if item.kind == "text":
                    return f"{section.id}.{item.id}"
    return None


def _value(kind: str, unit: str | None, value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"valueQuantity": {"value": value, **({"unit": unit} if unit else {})}}
    return {"valueString": str(value)}


def _boxes_note(boxes: list[Box]) -> list[dict[str, str]]:
    if not boxes:
        return []
    return [{"text": "boxes (normalised xyxy on the image): " + "; ".join(
        f"{box.label} [{box.x_min:.4f}, {box.y_min:.4f}, {box.x_max:.4f}, {box.y_max:.4f}]" for box in boxes)}]


def _observations(filled: FilledTemplate, template: Template, status: str, skip: set[str]) -> list[dict[str, Any]]:
    observations: list[dict[str, Any]] = []
    system = FIELD_SYSTEM + template.name

    def add(code: str, text: str, **content: Any) -> None:
        observations.append({"resourceType": "Observation", "id": f"obs-{len(observations) + 1}", "status": status,
                             "code": {"text": text, "coding": [{"system": system, "code": code}]}, **content})

    for section in template.sections:
        for spec in section.fields:
            field_id = f"{section.id}.{spec.id}"
            if field_id in skip:
                continue
            try:
                value = filled.get(field_id)
            except KeyError:
                continue
            if spec.kind != "findings":
                content = _value(spec.kind, spec.unit, value)
                if content:
                    add(field_id, f"{section.title}: {spec.label}", **content)
                continue
            for index, item in enumerate(value or []):
                components = []
                for sub in spec.fields:
                    content = _value(sub.kind, sub.unit, item.values.get(sub.id))
                    if content:
                        components.append({"code": {"text": sub.label}, **content})
                note = _boxes_note(list(item.boxes))
                add(f"{field_id}[{index}]", f"{spec.label}: {spec.item_label} {index + 1}",
                    **({"component": components} if components else {"valueString": "(no values)"}), **({"note": note} if note else {}))
    return observations


def build_diagnostic_report(
    filled: FilledTemplate,
    template: Template,
    *,
    report_id: str,
    final: bool,
    markdown: str,
    impression: str | None = None,
    issued: datetime | None = None,
    interpreter: str | None = None,
    identifier: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
) -> dict[str, Any]:
    """A validated DiagnosticReport (as JSON-ready dict) for one filled template.

    ``final`` marks a signed report (its Observations too); ``interpreter`` is the signer;
    ``attachments`` are extra ``(content type, title, bytes)`` presented forms. The impression is
    the ``conclusion``, not an Observation.
    """
    status = "final" if final else "preliminary"
    observations = _observations(filled, template, status, {impression_field(template)})
    forms = [("text/markdown", template.title, markdown.encode("utf-8")), *attachments]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": fhir_id(report_id),
        "status": status,
        "code": {"coding": [IMAGING_STUDY_CODE], "text": template.title},
        "issued": (issued or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "presentedForm": [{"contentType": kind, "title": title, "data": base64.b64encode(data).decode("ascii")}
                          for kind, title, data in forms],
    }
    if identifier:
        report["identifier"] = [{"system": "urn:radscribe:study", "value": identifier}]
    if impression and impression.strip():
        report["conclusion"] = impression.strip()
    if interpreter:
        report["resultsInterpreter"] = [{"display": interpreter}]
    if observations:
        report["contained"] = observations
        report["result"] = [{"reference": f"#{o['id']}"} for o in observations]
    return validate_report(report)


def validate_report(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` after validation against the FHIR R4(B) DiagnosticReport schema; :class:`FhirError` if it fails."""
    model = _model()
    try:
        resource = model.model_validate(report)
    except ValueError as error:
        raise FhirError(f"FHIR DiagnosticReport does not validate: {error}") from None
    return resource.model_dump(mode="json", exclude_none=True)


def diagnostic_report(result: Any, markdown: str, impression: str | None) -> dict[str, Any]:
    """The CLI's FHIR output for one :class:`~radscribe.infer.ReportResult` (preliminary: for a radiologist to review)."""
    report_id = str(uuid.uuid4())
    if result.filled is not None and result.template:
        template = load_template(result.template["name"])
        return build_diagnostic_report(result.filled, template, report_id=report_id, final=False, markdown=markdown,
                                       impression=impression)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": "preliminary",
        "code": {"coding": [IMAGING_STUDY_CODE], "text": IMAGING_STUDY_CODE["display"]},
        "issued": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "presentedForm": [{"contentType": "text/markdown", "title": "report",
                           "data": base64.b64encode(markdown.encode("utf-8")).decode("ascii")}],
    }
    if impression and impression.strip():
        report["conclusion"] = impression.strip()
    return validate_report(report)
