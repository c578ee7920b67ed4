"""The report of a study: save (If-Match), sign exactly the version reviewed (If-Match), history, verified exports."""

from __future__ import annotations

import io
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from radscribe.serve import reports
from radscribe.serve.accounts import Principal
from radscribe.serve.context import Workstation, require, workstation
from radscribe.serve.routers.common import Page, errors
from radscribe.serve.routers.studies import StudyId
from radscribe.serve.schemas import EditPage, ReportDocument, SaveResult, Signature
from radscribe.serve.storage import Conflict, StaleVersion, TamperedSignature
from radscribe.templates import load_template

router = APIRouter(prefix="/api", tags=["report"])
IfMatch = Header(None, alias="If-Match", max_length=200,
                 description='The ETag of the version you edited or reviewed (`"0"` before the first save)')
EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json", "fhir": "application/fhir+json",
                "sr": "application/dicom"}


def _precondition(if_match: str | None, action: str) -> str:
    if if_match is None:
        raise HTTPException(428, f"If-Match is required to {action}: send the ETag of the version you "
                                 'edited (GET /api/studies/{id} answers it; "0" before the first save)')
    return if_match.strip()


def _stale(error: StaleVersion) -> JSONResponse:
    current = error.current
    body: dict[str, Any] = {"detail": str(error), "current": None}
    if current is not None:
        body["current"] = {"version": current["version"], "etag": current["etag"], "author": current["author"],
                           "saved_at": current["created_at"], "document": current["document"]}
    return JSONResponse(body, 412, headers={"ETag": current["etag"] if current else '"0"'})


@router.put("/studies/{study_id}/report", response_model=SaveResult, responses=errors(403, 404, 409, 412, 428))
def save(document: ReportDocument, study_id: str = StudyId, if_match: str | None = IfMatch,
         user: Principal = Depends(require("edit")), station: Workstation = Depends(workstation)) -> Any:
    """Save an edited report as a new version of the one named by ``If-Match``.

    A stale ``If-Match`` answers 412 with the latest version in ``current`` (nothing is overwritten).
    Values that do not fit the template answer 422 with ``errors`` per field and are not saved; blank
    required fields are saved and listed in ``incomplete`` (signing waits for them).
    """
    expected = _precondition(if_match, "save")
    study = station.study_for(user, study_id)
    template = load_template(study["template"])
    try:
        clean = reports.normalize_document(document.model_dump(exclude_unset=True), template)
    except reports.DocumentError as error:
        raise HTTPException(422, {"message": "the report does not fit its template", "errors": error.errors}) from None
    problems, incomplete = reports.check(clean, template)
    if problems:
        raise HTTPException(422, {"message": "the report does not fit its template", "errors": problems, "incomplete": incomplete})
    try:
        saved = station.storage.save_edit(study_id, user.name, clean, expected)
    except StaleVersion as error:
        return _stale(error)
    except Conflict as error:
        raise HTTPException(409, str(error)) from None
    station.storage.audit(user.name, "save", study_id, saved["etag"])
    body = SaveResult(**saved, incomplete=incomplete, document=clean)
    return JSONResponse(body.model_dump(mode="json"), headers={"ETag": saved["etag"]})


@router.post("/studies/{study_id}/sign", response_model=Signature, responses=errors(403, 404, 409, 412, 428))
def sign(study_id: str = StudyId, if_match: str | None = IfMatch, user: Principal = Depends(require("sign")),
         station: Workstation = Depends(workstation)) -> Signature:
    """Sign the version named by ``If-Match`` (the one you reviewed), as yourself; it must be the latest and complete."""
    expected = _precondition(if_match, "sign")
    study = station.study_for(user, study_id)
    latest = station.storage.latest_edit(study_id)
    if latest is None:
        raise HTTPException(409, "nothing saved to sign: save the report first")
    problems, incomplete = reports.check(latest["document"], load_template(study["template"]))
    if latest["etag"] == expected and (problems or incomplete):
        raise HTTPException(422, {"message": "the report is not complete", "errors": problems, "incomplete": incomplete})
    try:
        return Signature(**station.storage.sign(study_id, user.name, expected))
    except StaleVersion as error:
        return _stale(error)
    except Conflict as error:
        raise HTTPException(409, str(error)) from None


@router.get("/studies/{study_id}/edits", response_model=EditPage, responses=errors(403, 404))
def edit_log(study_id: str = StudyId, page: Page = Depends(), user: Principal = Depends(require("read")),
             station: Workstation = Depends(workstation)) -> EditPage:
    """Saved versions, oldest first (append-only), one page at a time."""
    station.study_for(user, study_id)
    return EditPage(items=station.storage.edits(study_id, page.offset, page.limit), total=station.storage.count_edits(study_id),
                    offset=page.offset, limit=page.limit)


@router.get("/studies/{study_id}/export", response_class=Response, responses={
    200: {"description": "The report", "content": {kind: {} for kind in EXPORT_TYPES.values()}}, **errors(403, 404, 409)})
def export(study_id: str = StudyId, format: Literal["md", "json", "fhir", "sr"] = Query("md"),
           user: Principal = Depends(require("export")), station: Workstation = Depends(workstation)) -> Response:
    """The current report as template markdown, JSON, a FHIR R4 DiagnosticReport or a DICOM SR (TID 1500).

    A signed report's signature is verified first (chain and content); one that does not verify is
    reported with 409 and never exported as final.
    """
    study = station.study_for(user, study_id)
    try:
        signature = station.storage.verify_signature(study_id)
    except TamperedSignature as error:
        station.storage.audit(user.name, "export-refused", study_id, str(error)[:500])
        raise HTTPException(409, f"{error}; the report is not exported") from None
    if signature is not None:
        document = station.storage.edit(study_id, signature["edit_id"])["document"]
        version = station.storage.count_edits(study_id)
    else:
        latest = station.storage.latest_edit(study_id)
        draft = station.storage.latest_draft(study_id) if latest is None else None
        if latest is None and draft is None:
            raise HTTPException(409, "no report yet: draft or save one first")
        document, version = (latest["document"], latest["version"]) if latest else (draft["document"], 0)
    template = load_template(study["template"])
    station.storage.audit(user.name, f"export-{format}", study_id)
    if format == "md":
        return PlainTextResponse(reports.export_markdown(document, template), media_type=EXPORT_TYPES["md"])
    if format == "json":
        return JSONResponse(reports.export_json(study, document, template, signature, version))
    if format == "fhir":
        return JSONResponse(reports.export_fhir(study, document, template, signature, version), media_type=EXPORT_TYPES["fhir"])
    source = next((image for image in study["images"] if image["format"] == "dicom"), None)
    if source is None:
        raise HTTPException(409, "a DICOM SR references a DICOM image: this study has only PNG/JPEG images")
    import pydicom

    header = pydicom.dcmread(io.BytesIO(station.storage.images.read(source["sha256"])), stop_before_pixels=True)
    try:
        data = reports.export_sr(document, template, signature, header)
    except ValueError as error:
        raise HTTPException(409, str(error)) from None
    return Response(data, media_type=EXPORT_TYPES["sr"],
                    headers={"Content-Disposition": f'attachment; filename="{study_id}-sr.dcm"'})
