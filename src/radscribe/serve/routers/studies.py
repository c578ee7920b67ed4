"""Studies: upload, the worklist (paged), one study with its current report, images, model drafts and questions."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from radscribe.serve import reports
from radscribe.serve.accounts import Principal
from radscribe.serve.context import Workstation, require, workstation
from radscribe.serve.routers.common import Page, errors
from radscribe.serve.schemas import Answer, AskRequest, DraftResult, StudyDetail, StudyPage, StudySummary
from radscribe.serve.settings import ServeSettings
from radscribe.serve.storage import Conflict, entity_tag
from radscribe.serve.uploads import UploadRejected, render_png
from radscribe.templates import list_templates, load_template

router = APIRouter(prefix="/api", tags=["studies"])
StudyId = Path(..., min_length=1, max_length=64)


def upload_router(settings: ServeSettings) -> APIRouter:
    """The upload route, whose body limit (all files of one request together) comes from the settings."""
    uploads = APIRouter(prefix="/api", tags=["studies"])
    in_memory = asyncio.Semaphore(2)  # uploads whose bytes are held in memory at once; the rest wait on disk

    @uploads.post(
        "/studies", status_code=201, response_model=StudySummary, responses=errors(403, 415, 503),
        max_body_size=settings.max_upload_bytes,
        form_limits={"max_files": settings.max_upload_files, "max_fields": 4, "max_part_size": 1024},
    )
    async def upload(
        files: list[UploadFile] = File(..., description="PNG, JPEG or DICOM images of one study"),
        template: str | None = Form(None, max_length=100),
        user: Principal = Depends(require("upload")),
        station: Workstation = Depends(workstation),
    ) -> StudySummary:
        """Upload one or more images as a new study; each is decoded (in a separate, memory-capped process) before it is stored."""
        name = template or station.default_template
        if name not in list_templates():
            raise HTTPException(422, f"unknown template '{name}'; shipped: {', '.join(list_templates())}")
        if not files:
            raise HTTPException(422, "files: expected at least one image")
        checked = []
        async with in_memory:
            for upload_file in files:
                data = await upload_file.read()
                try:
                    checked.append(await station.decoder.check_async(data, upload_file.filename or "upload", settings.max_upload_bytes))
                except UploadRejected as error:
                    raise HTTPException(error.status, error.reason) from None

            def store() -> dict:
                stored = [station.storage.add_image(c.data, c.format, c.width, c.height) for c in checked]
                study_id = station.storage.create_study(name, [s.sha256 for s in stored])
                station.storage.audit(user.name, "upload", study_id, f"{len(stored)} image(s)")
                return station.public_study(station.storage.study(study_id), user)

            return StudySummary(**await run_in_threadpool(store))

    return uploads


@router.get("/studies", response_model=StudyPage, responses=errors(403))
def list_studies(page: Page = Depends(), user: Principal = Depends(require("read")),
                 station: Workstation = Depends(workstation)) -> StudyPage:
    """The worklist, one page at a time (a reader sees their own cases, in reading order)."""
    reader = user.name if user.is_reader else None
    rows = station.storage.studies(reader, page.offset, page.limit)
    return StudyPage(items=[station.public_study(row, user) for row in rows], total=station.storage.count_studies(reader),
                     offset=page.offset, limit=page.limit)


@router.get("/studies/{study_id}", response_model=StudyDetail, responses=errors(403, 404))
def get_study(response: Response, study_id: str = StudyId, user: Principal = Depends(require("read")),
              station: Workstation = Depends(workstation)) -> StudyDetail:
    """A study with its current report (latest saved version, else the latest draft); ``ETag`` names the saved version."""
    study = station.study_for(user, study_id)
    edit = station.storage.latest_edit(study_id)
    if edit is not None:
        document = edit["document"]
    else:
        draft = station.storage.latest_draft(study_id)
        document = draft["document"] if draft else None
    out = station.public_study(study, user)
    tag = entity_tag(edit)
    out.update(document=document, version=edit["version"] if edit else 0, etag=tag, signature=station.storage.signature(study_id))
    if document is not None:
        out["errors"], out["incomplete"] = reports.check(document, load_template(study["template"]))
    station.storage.audit(user.name, "read", study_id)
    response.headers["ETag"] = tag
    return StudyDetail(**out)


@router.get("/studies/{study_id}/images/{index}.png", responses={200: {"content": {"image/png": {}}}, **errors(403, 404)},
            response_class=Response)
def image_png(
    study_id: str = StudyId,
    index: int = Path(..., ge=0, le=64),
    center: float = Query(0.5, ge=-1.0, le=2.0),
    width: float = Query(1.0, gt=0.0, le=4.0),
    max_side: int | None = Query(None, ge=16, le=8192),
    user: Principal = Depends(require("read")),
    station: Workstation = Depends(workstation),
) -> Response:
    """An image rendered to PNG with window/level (display units, 0..1). The first image sent to a reader starts their clock."""
    study = station.study_for(user, study_id)
    picture = station.radiograph(study, index)
    station.storage.first_view(study_id, user.name)
    return Response(render_png(picture, center, width, max_side), media_type="image/png")


@router.post("/studies/{study_id}/draft", response_model=DraftResult, responses=errors(403, 404, 409, 503, 504))
def draft(study_id: str = StudyId, image: int = Query(0, ge=0, le=64), user: Principal = Depends(require("draft")),
          station: Workstation = Depends(workstation)) -> DraftResult:
    """Run the model: markdown, fields, findings and boxes (normalised on the original image)."""
    study = station.study_for(user, study_id)
    reporter = station.reporter
    if study["arm"] == "unassisted":
        raise HTTPException(403, "this case is in the unassisted arm: no model draft")
    if study["status"] == "signed":
        raise HTTPException(409, "the report is signed")
    if study["template"] != reporter.template.name:
        raise HTTPException(409, f"the model writes '{reporter.template.name}' reports; this study uses '{study['template']}'")
    picture = station.radiograph(study, image)

    def job():
        with station.reporter_lock:
            return reporter.report([picture])[0]

    result = station.run_model(job)
    if not result.ok:
        raise HTTPException(422, f"the model could not report on this image ({result.stage}): {result.reason}")
    boxes = [replace(box, image=image) for box in result.boxes]
    document = reports.from_filled(result.filled, load_template(study["template"]), boxes)
    payload = {
        "markdown": result.text,
        "fields": result.filled.to_dict()["sections"] if result.filled is not None else None,
        "findings": result.findings(),
        "boxes": [box.to_dict() for box in boxes],
        "issues": result.issues,
        "box_errors": result.box_errors,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "model": result.model,
    }
    try:
        station.storage.add_draft(study_id, str(result.model.get("name", "model")), result.text, document, payload)
    except Conflict as error:
        raise HTTPException(409, str(error)) from None
    station.storage.audit(user.name, "draft", study_id)
    return DraftResult(**payload, document=document)


@router.post("/ask", response_model=Answer, responses=errors(403, 404, 503, 504))
def ask(question: AskRequest, user: Principal = Depends(require("draft")), station: Workstation = Depends(workstation)) -> Answer:
    """A free-text answer to a question about one image of a study."""
    study = station.study_for(user, question.study_id)
    if study["arm"] == "unassisted":
        raise HTTPException(403, "this case is in the unassisted arm: no model answers")
    picture = station.radiograph(study, question.image)
    text = question.question.strip()

    def job():
        with station.reporter_lock:
            return station.reporter.ask(picture, text)

    result = station.run_model(job)
    if not result.ok:
        raise HTTPException(422, f"the model could not answer ({result.stage}): {result.reason}")
    station.storage.audit(user.name, "ask", study["id"])
    return Answer(question=text, answer=result.text, timings_s=result.timings)
