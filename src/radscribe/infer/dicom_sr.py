"""A report as a DICOM Structured Report (Comprehensive 3D SR, TID 1500 Measurement Report) via ``highdicom``.

So a PACS can store the report next to the image it describes. Built from a filled template, its
boxes and the source DICOM image (the SR references its SOP instance and copies its patient and
study attributes):

- every box becomes a TID 1410 planar ROI group whose region is a closed POLYLINE (the rectangle in
  pixel columns/rows of the source image) with the box label as finding type; the boxes of a
  findings-list item carry that item's values;
- scalar fields become one TID 1501 group: numbers as measurements (UCUM units), other values as
  qualitative evaluations;
- the impression is a TEXT item "Impression" (DCM 121073) of the report;
- a signed report is COMPLETE and VERIFIED with the signer as verifying observer.

Template fields and values have no standard codes, so they are coded in the private scheme
``99RADSCRIBE`` (code value = field id or value, meaning = the label).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from radscribe.templates import FilledTemplate, Template
from radscribe.types import Box

PRIVATE_SCHEME = "99RADSCRIBE"
REQUIRED_SOURCE_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
# Patient and study attributes the SR copies from its evidence; Type 2 in DICOM, so empty when unknown.
TYPE2_PATIENT_STUDY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                                  "StudyID", "AccessionNumber", "ReferringPhysicianName")
UCUM_UNITS = {"deg": ("deg", "degree"), "mm": ("mm", "millimeter"), "cm": ("cm", "centimeter"), "%": ("%", "percent")}


def _highdicom():
    try:
        import highdicom
        import pydicom  # noqa: F401
    except ImportError:
        raise ImportError("DICOM SR output needs highdicom: pip install 'radscribe[standards]'") from None
    return highdicom


def _code(value: Any, meaning: str):
    from highdicom.sr import CodedConcept

    text = str(value)
    return CodedConcept(text[:64] or "-", PRIVATE_SCHEME, (meaning or text)[:64] or "-")


def _unit(unit: str | None):
    from highdicom.sr import CodedConcept

    value, meaning = UCUM_UNITS.get(unit or "", (unit, unit) if unit else ("1", "no units"))
    return CodedConcept(value, "UCUM", meaning)


def _evaluations(values: dict[str, Any], specs: dict[str, Any]) -> tuple[list, list]:
    """(measurements, qualitative evaluations) for field values by id."""
    from highdicom.sr import Measurement, QualitativeEvaluation

    measurements, evaluations = [], []
    for key, value in values.items():
        spec = specs.get(key)
        if value is None or value == "" or spec is None:
            continue
        if spec.kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            measurements.append(Measurement(name=_code(key, spec.label), value=float(value), unit=_unit(spec.unit)))
        else:
            evaluations.append(QualitativeEvaluation(name=_code(key, spec.label), value=_code(value, str(value))))
    return measurements, evaluations


def structured_report(
    filled: FilledTemplate,
    template: Template,
    boxes: list[Box],
    source: Any,
    *,
    impression: str | None = None,
    signer: str | None = None,
    signed_at: datetime | None = None,
    organization: str = "radscribe",
    series_number: int = 990,
) -> Any:
    """A ``highdicom.sr.Comprehensive3DSR`` for the report; ``boxes`` are free boxes (findings' boxes come from ``filled``)."""
    hd = _highdicom()
    from highdicom.sr import (
        DeviceObserverIdentifyingAttributes, ImageRegion, MeasurementReport, MeasurementsAndQualitativeEvaluations,
        ObservationContext, ObserverContext, PersonObserverIdentifyingAttributes, PlanarROIMeasurementsAndQualitativeEvaluations,
        RelationshipTypeValues, SourceImageForRegion, TextContentItem, TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    import numpy as np

    missing = [key for key in REQUIRED_SOURCE_ATTRIBUTES if not source.get(key)]
    if missing:
        raise ValueError(f"the source DICOM image has no {', '.join(missing)}: a structured report must reference a stored image")
    source = copy.deepcopy(source)  # absent Type 2 attributes are added as empty values, on a copy
    for key in TYPE2_PATIENT_STUDY_ATTRIBUTES:
        if key not in source:
            setattr(source, key, "")
    columns, rows = int(source.Columns), int(source.Rows)
    reference = SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID)

    def region_group(box: Box, number: int, values: dict[str, Any] | None = None, specs: dict[str, Any] | None = None):
        x0, y0, x1, y1 = box.to_pixels(columns, rows)
        outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
        measurements, evaluations = _evaluations(values or {}, specs or {})
        return PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier=f"{box.label} {number}"),
            referenced_region=ImageRegion(graphic_type="POLYLINE", graphic_data=outline, source_image=reference),
            finding_type=_code(box.label, box.label),
            measurements=measurements or None,
            qualitative_evaluations=evaluations or None,
        )

    groups = []
    scalars: dict[str, Any] = {}
    scalar_specs: dict[str, Any] = {}
    skip = {f"{s.id}.{f.id}" for s in template.sections for f in s.fields if s.id == "impression" and f.kind == "text"}
    for section in template.sections:
        for spec in section.fields:
            field_id = f"{section.id}.{spec.id}"
            try:
                value = filled.get(field_id)
            except KeyError:
                continue
            if spec.kind == "findings":
                item_specs = {sub.id: sub for sub in spec.fields}
                for index, item in enumerate(value or []):
                    for box in item.boxes:
                        groups.append(region_group(box, len(groups) + 1, {**item.values}, item_specs))
            elif field_id not in skip:
                scalars[field_id] = value
                scalar_specs[field_id] = spec
    groups += [region_group(box, len(groups) + 1) for box in boxes]
    measurements, evaluations = _evaluations(scalars, scalar_specs)
    if measurements or evaluations:
        groups.append(MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier=template.title[:64]),
            measurements=measurements or None, qualitative_evaluations=evaluations or None))

    observer = (ObserverContext(observer_type=codes.cid270.Person, observer_identifying_attributes=PersonObserverIdentifyingAttributes(
                    name=signer, organization_name=organization)) if signer else None)
    device = ObserverContext(observer_type=codes.cid270.Device, observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
        uid=generate_uid(), name="radscribe"))
    content = MeasurementReport(
        observation_context=ObservationContext(observer_person_context=observer, observer_device_context=device),
        procedure_reported=_code("radiograph", "Radiographic imaging procedure"),
        imaging_measurements=groups or None,
    )
    if impression and impression.strip():
        content[0].ContentSequence.append(TextContentItem(
            name=codes.DCM.Impression, value=impression.strip()[:10_000], relationship_type=RelationshipTypeValues.CONTAINS))
    signed = signer is not None
    report = hd.sr.Comprehensive3DSR(
        evidence=[source], content=content, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="radscribe",
        is_complete=signed, is_final=signed, is_verified=signed,
        verifying_observer_name=signer if signed else None, verifying_organization=organization if signed else None,
    )
    if signed and signed_at is not None:
        report.VerifyingObserverSequence[0].VerificationDateTime = signed_at.strftime("%Y%m%d%H%M%S")
    return report
