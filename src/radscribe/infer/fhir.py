"""A report as a FHIR R4 DiagnosticReport (preliminary: machine-written, for a radiologist to review)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone
from typing import Any

LOINC = "http://loinc.org"
IMAGING_STUDY_CODE = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}


def diagnostic_report(result: Any, markdown: str, impression: str | None) -> dict[str, Any]:
    """DiagnosticReport with the markdown as ``presentedForm`` and one contained Observation per finding."""
    observations = []
    for number, finding in enumerate(result.findings(), start=1):
        values = finding.get("values", {})
        text = "; ".join(f"{key}: {value}" for key, value in values.items() if value is not None)
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"finding-{number}",
            "status": "preliminary",
            "code": {"text": f"{finding['field']}[{finding['index']}]"},
            "valueString": text or "(no values)",
        }
        boxes = finding.get("boxes") or []
        if boxes:
            observation["note"] = [{"text": "boxes (normalised xyxy on the image): " + "; ".join(
                f"{box['label']} [{box['x_min']:.4f}, {box['y_min']:.4f}, {box['x_max']:.4f}, {box['y_max']:.4f}]" for box in boxes)}]
        observations.append(observation)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(uuid.uuid4()),
        "status": "preliminary",
        "code": {"coding": [IMAGING_STUDY_CODE], "text": "Diagnostic imaging study"},
        "issued": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "presentedForm": [{
            "contentType": "text/markdown",
            "data": base64.b64encode(markdown.encode("utf-8")).decode("ascii"),
            "title": result.template["name"] if result.template else "report",
        }],
    }
    if impression:
        report["conclusion"] = impression
    if observations:
        report["contained"] = observations
        report["result"] = [{"reference": f"#{observation['id']}"} for observation in observations]
    return report
