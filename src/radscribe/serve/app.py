"""The FastAPI application: REST API (OpenAPI at /docs), the reporting page, token checks.

``create_app(settings, reporter=None)`` builds everything; tests pass their own reporter, the CLI
lets it load the model once. Model work goes through one bounded :class:`ModelQueue`; everything
else (storage, rendering) runs in the server's thread pool.

Who is asking: with no token configured (loopback only) everyone is ``local``. With ``--token`` the
admin token is required on every request. In reader-study mode each reader has a token of their own
and sees only the cases assigned to them: any other study id answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from radscribe import __version__
from radscribe.serve import reports
from radscribe.serve.queue import ModelQueue, QueueFull
from radscribe.serve.readerstudy import StudyPlan, load_plan
from radscribe.serve.settings import ServeSettings
from radscribe.serve.storage import Conflict, NotFound, Storage
from radscribe.serve.uploads import RadiographCache, UploadRejected, check_upload, decode, render_png
from radscribe.templates import Template, list_templates, load_template

TOKEN_HEADER = "x-radscribe-token"
TOKEN_COOKIE = "radscribe_token"
LOCAL = "local"
ADMIN = "admin"
EXPORT_FORMATS = ("md", "json", "fhir")
UPLOAD_CHUNK = 1 << 20


class Principal:
    """Who sent a request: ``local``/``admin`` see everything, a reader only their cases."""

    def __init__(self, name: str, reader: str | None = None):
        self.name = name
        self.reader = reader

    @property
    def is_reader(self) -> bool:
        return self.reader is not None


def _static_dir() -> Path:
    return Path(str(resources.files("radscribe.serve").joinpath("static")))


def _template_json(template: Template) -> dict[str, Any]:
    def field(spec, field_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": field_id, "label": spec.label, "kind": spec.kind, "required": spec.required,
                               "description": spec.description, "normal": spec.normal}
        if spec.kind == "enum":
            out["values"] = list(spec.values)
        if spec.kind == "number":
            out.update(unit=spec.unit, min=spec.minimum, max=spec.maximum, integer=spec.integer, decimals=spec.decimals)
        if spec.kind == "findings":
            out.update(item_label=spec.item_label, fields=[field(sub, sub.id) for sub in spec.fields])
        return out

    impression = reports.impression_field(template)
    return {
        "name": template.name,
        "version": template.version,
        "title": template.title,
        "impression_field": impression,
        "sections": [
            {"id": s.id, "title": s.title,
             "fields": [field(f, f"{s.id}.{f.id}") for f in s.fields if f"{s.id}.{f.id}" != impression]}
            for s in template.sections
        ],
    }


def create_app(settings: ServeSettings, reporter: Any = None) -> FastAPI:
    """The workstation app over ``settings.data_dir``; ``reporter`` (a :class:`radscribe.infer.Reporter`) or loaded here."""
    storage = Storage(settings.data_dir)
    plan: StudyPlan | None = load_plan(settings.data_dir)
    if reporter is None:
        reporter = _load_reporter(settings, plan)
    default_template = plan.template if plan else reporter.template.name
    model_queue = ModelQueue(settings.queue_size)
    cache = RadiographCache()
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    reporter_lock = threading.Lock()  # belt and braces: only the queue's thread calls the model anyway

    app = FastAPI(
        title="radscribe reporting workstation",
        version=__version__,
        description=(
            "Draft, review, correct and sign grounded structured radiology reports. Every request needs the "
            f"token (header `X-Radscribe-Token` or `Authorization: Bearer`, or cookie `{TOKEN_COOKIE}`) when the "
            "server has one. Model requests are queued; a full queue answers 503 with Retry-After."
        ),
    )
    app.state.storage = storage
    app.state.queue = model_queue
    app.state.reporter = reporter
    app.state.plan = plan

    # ----- authentication ---------------------------------------------------------------------
    def principal_for(token: str | None) -> Principal | None:
        if token and settings.token and hmac.compare_digest(token.encode(), settings.token.encode()):
            return Principal(ADMIN)
        if token and plan is not None:
            reader = plan.reader_for_token(token)
            if reader is not None:
                return Principal(f"reader:{reader}", reader)
        if not settings.token and plan is None:
            return Principal(LOCAL)
        return None

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        supplied = request.headers.get(TOKEN_HEADER)
        authorization = request.headers.get("authorization", "")
        if not supplied and authorization.lower().startswith("bearer "):
            supplied = authorization[7:].strip()
        supplied = supplied or request.cookies.get(TOKEN_COOKIE)
        login = request.url.path == "/" and request.query_params.get("token")
        principal = principal_for(login or supplied)
        if principal is None:
            return JSONResponse({"detail": "a valid token is required (X-Radscribe-Token header, Bearer, or the login link)"}, 401)
        if login:
            # The token leaves the URL (and the history) at once and lives in an HttpOnly cookie.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, login, httponly=True, samesite="strict")
            return response
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes + 64 * 1024:
            return JSONResponse({"detail": f"request body over the upload limit of {settings.max_upload_bytes:,} bytes"}, 413)
        request.state.principal = principal
        return await call_next(request)

    # ----- helpers ----------------------------------------------------------------------------
    def study_for(request: Request, study_id: str) -> dict[str, Any]:
        principal: Principal = request.state.principal
        try:
            study = storage.study(study_id)
        except NotFound:
            raise HTTPException(404, f"no study '{study_id}'") from None
        if principal.is_reader:
            if study["reader"] != principal.reader:
                raise HTTPException(404, f"no study '{study_id}'")  # never confirm another reader's case exists
            locked = plan.locked_reason(storage, principal.reader, study["session"]) if plan else None
            if locked:
                raise HTTPException(403, locked)
        return study

    def current_document(study: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
        edit = storage.latest_edit(study["id"])
        if edit is not None:
            return edit["document"], len(storage.edits(study["id"]))
        draft = storage.latest_draft(study["id"])
        return (draft["document"] if draft else None), 0

    def radiograph(study: dict[str, Any], index: int):
        if not 0 <= index < len(study["images"]):
            raise HTTPException(404, f"study has {len(study['images'])} image(s); no image {index}")
        info = study["images"][index]
        return cache.get(info["sha256"], lambda: decode(storage.images.read(info["sha256"]), info["format"], "stored image", scratch))

    def run_model(job) -> Any:
        try:
            future = model_queue.submit(job)
        except QueueFull as full:
            raise HTTPException(503, str(full), headers={"Retry-After": str(full.retry_after)}) from None
        try:
            return future.result(timeout=settings.job_timeout_s)
        except FutureTimeout:
            raise HTTPException(504, f"the model did not answer within {settings.job_timeout_s:.0f} s") from None

    def public_study(study: dict[str, Any], principal: Principal) -> dict[str, Any]:
        out = {k: study[k] for k in ("id", "created_at", "template", "status")}
        out["images"] = study.get("images", [])
        if study.get("reader") is not None:
            # Blinded: a reader learns the arm (a draft appears or not) but never the case's name.
            out.update(session=study["session"], position=study["position"], arm=study["arm"])
            if not principal.is_reader:
                out.update(reader=study["reader"], case_id=study["case_id"])
        return out

    # ----- page -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((_static_dir() / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    # ----- API --------------------------------------------------------------------------------
    @app.get("/api/info", tags=["workstation"])
    def info(request: Request) -> dict[str, Any]:
        principal: Principal = request.state.principal
        return {
            "version": __version__,
            "principal": principal.name,
            "reader": principal.reader,
            "model": getattr(reporter, "model_info", {}),
            "template": default_template,
            "templates": list_templates(),
            "reader_study": plan.name if plan else None,
            "max_upload_bytes": settings.max_upload_bytes,
            "queue": {"pending": model_queue.pending, "capacity": settings.queue_size},
        }

    @app.get("/api/templates/{name}", tags=["workstation"])
    def template_spec(name: str) -> dict[str, Any]:
        if name not in list_templates():
            raise HTTPException(404, f"no template '{name}'; shipped: {', '.join(list_templates())}")
        return _template_json(load_template(name))

    @app.post("/api/studies", status_code=201, tags=["studies"])
    async def upload(request: Request, files: list[UploadFile] = File(...), template: str | None = Form(None)) -> dict[str, Any]:
        """Upload one or more images (PNG, JPEG or DICOM) as a new study; returns its id."""
        principal: Principal = request.state.principal
        if principal.is_reader:
            raise HTTPException(403, "readers open their assigned cases; uploads are for the study organiser")
        name = template or default_template
        if name not in list_templates():
            raise HTTPException(422, f"unknown template '{name}'; shipped: {', '.join(list_templates())}")
        checked = []
        for upload_file in files:
            data = bytearray()
            while chunk := await upload_file.read(UPLOAD_CHUNK):
                data += chunk
                if len(data) > settings.max_upload_bytes:
                    raise HTTPException(413, f"{upload_file.filename}: over the upload limit of {settings.max_upload_bytes:,} bytes")
            try:
                checked.append(check_upload(bytes(data), upload_file.filename or "upload", settings.max_upload_bytes, scratch))
            except UploadRejected as error:
                raise HTTPException(error.status, error.reason) from None
        stored = [storage.add_image(c.data, c.format, c.width, c.height) for c in checked]
        study_id = storage.create_study(name, [s.sha256 for s in stored])
        return public_study(storage.study(study_id), principal)

    @app.get("/api/studies", tags=["studies"])
    def list_studies(request: Request) -> list[dict[str, Any]]:
        principal: Principal = request.state.principal
        rows = storage.studies(principal.reader) if principal.is_reader else storage.studies()
        out = []
        for row in rows:
            item = public_study(row, principal)
            if principal.is_reader and plan is not None:
                item["locked"] = plan.locked_reason(storage, principal.reader, row["session"])
            out.append(item)
        return out

    @app.get("/api/studies/{study_id}", tags=["studies"])
    def get_study(request: Request, study_id: str) -> dict[str, Any]:
        study = study_for(request, study_id)
        document, version = current_document(study)
        template = load_template(study["template"])
        out = public_study(study, request.state.principal)
        out.update(document=document, version=version, signature=storage.signature(study_id))
        if document is not None:
            errors, incomplete = reports.check(document, template)
            out.update(errors=errors, incomplete=incomplete)
        return out

    @app.post("/api/studies/{study_id}/open", tags=["studies"])
    def open_study(request: Request, study_id: str) -> dict[str, Any]:
        """Mark the study opened (reader-study timing starts at the first open, server clock)."""
        study = study_for(request, study_id)
        return {"opened_at": storage.record_open(study["id"], request.state.principal.name)}

    @app.post("/api/studies/{study_id}/draft", tags=["studies"])
    def draft(request: Request, study_id: str, image: int = Query(0, ge=0)) -> dict[str, Any]:
        """Run the model: markdown, fields, findings and boxes (normalised on the original image)."""
        study = study_for(request, study_id)
        if study["arm"] == "unassisted":
            raise HTTPException(403, "this case is in the unassisted arm: no model draft")
        if study["status"] == "signed":
            raise HTTPException(409, "the report is signed")
        if study["template"] != reporter.template.name:
            raise HTTPException(409, f"the model writes '{reporter.template.name}' reports; this study uses '{study['template']}'")
        picture = radiograph(study, image)

        def job():
            with reporter_lock:
                return reporter.report([picture])[0]

        result = run_model(job)
        if not result.ok:
            raise HTTPException(422, f"the model could not report on this image ({result.stage}): {result.reason}")
        boxes = [replace(box, image=image) for box in result.boxes]
        template = load_template(study["template"])
        document = reports.from_filled(result.filled, template, boxes)
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
        storage.add_draft(study_id, str(result.model.get("name", "model")), result.text, document, payload)
        return {**payload, "document": document}

    @app.post("/api/ask", tags=["studies"])
    def ask(request: Request, payload: dict[str, Any] = Body(..., examples=[{"study_id": "…", "question": "Is there scoliosis?", "image": 0}])) -> dict[str, Any]:
        """A free-text answer to a question about one image of a study."""
        question = payload.get("question")
        if not isinstance(question, str) or not question.strip() or len(question) > 500:
            raise HTTPException(422, "question: expected a non-empty text of at most 500 characters")
        study = study_for(request, str(payload.get("study_id", "")))
        if study["arm"] == "unassisted":
            raise HTTPException(403, "this case is in the unassisted arm: no model answers")
        index = payload.get("image", 0)
        if not isinstance(index, int):
            raise HTTPException(422, "image: expected an image index")
        picture = radiograph(study, index)

        def job():
            with reporter_lock:
                return reporter.ask(picture, question)

        result = run_model(job)
        if not result.ok:
            raise HTTPException(422, f"the model could not answer ({result.stage}): {result.reason}")
        return {"question": question.strip(), "answer": result.text, "timings_s": result.timings}

    @app.put("/api/studies/{study_id}/report", tags=["studies"])
    def save(request: Request, study_id: str, document: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Save an edited report (fields, findings with boxes and decisions, free boxes, impression).

        Values that do not fit the template answer 422 with ``errors`` per field and are not saved; blank
        required fields are saved and listed in ``incomplete`` (signing waits for them).
        """
        study = study_for(request, study_id)
        template = load_template(study["template"])
        try:
            clean = reports.normalize_document(document, template)
        except reports.DocumentError as error:
            raise HTTPException(422, {"message": "the report does not fit its template", "errors": error.errors}) from None
        errors, incomplete = reports.check(clean, template)
        if errors:
            raise HTTPException(422, {"message": "the report does not fit its template", "errors": errors, "incomplete": incomplete})
        try:
            saved = storage.save_edit(study_id, request.state.principal.name, clean)
        except Conflict as error:
            raise HTTPException(409, str(error)) from None
        return {**saved, "incomplete": incomplete, "document": clean}

    @app.post("/api/studies/{study_id}/sign", tags=["studies"])
    def sign(request: Request, study_id: str, payload: dict[str, Any] | None = Body(None)) -> dict[str, Any]:
        """Sign the latest saved version; it must be complete. Readers sign as themselves."""
        study = study_for(request, study_id)
        principal: Principal = request.state.principal
        edit = storage.latest_edit(study_id)
        if edit is None:
            raise HTTPException(409, "nothing saved to sign: save the report first")
        errors, incomplete = reports.check(edit["document"], load_template(study["template"]))
        if errors or incomplete:
            raise HTTPException(422, {"message": "the report is not complete", "errors": errors, "incomplete": incomplete})
        signer = principal.name
        if not principal.is_reader and payload and isinstance(payload.get("signer"), str) and payload["signer"].strip():
            signer = payload["signer"].strip()[:200]
        try:
            return storage.sign(study_id, signer, edit["id"], edit["sha256"])
        except Conflict as error:
            raise HTTPException(409, str(error)) from None

    @app.get("/api/studies/{study_id}/edits", tags=["studies"])
    def edit_log(request: Request, study_id: str) -> list[dict[str, Any]]:
        """Every saved version, oldest first (append-only)."""
        study_for(request, study_id)
        return storage.edits(study_id)

    @app.get("/api/studies/{study_id}/export", tags=["studies"])
    def export(request: Request, study_id: str, format: str = Query("md")) -> Response:
        """The current report as template markdown (``md``), JSON (``json``) or a FHIR R4 DiagnosticReport (``fhir``)."""
        if format not in EXPORT_FORMATS:
            raise HTTPException(422, f"format: expected one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
        study = study_for(request, study_id)
        document, version = current_document(study)
        if document is None:
            raise HTTPException(409, "no report yet: draft or save one first")
        template = load_template(study["template"])
        signature = storage.signature(study_id)
        if format == "md":
            return PlainTextResponse(reports.export_markdown(document, template), media_type="text/markdown; charset=utf-8")
        if format == "json":
            return JSONResponse(reports.export_json(study, document, template, signature, version))
        return JSONResponse(reports.export_fhir(study, document, template, signature, version), media_type="application/fhir+json")

    @app.get("/api/studies/{study_id}/images/{index}.png", tags=["studies"])
    def image_png(
        request: Request,
        study_id: str,
        index: int,
        center: float = Query(0.5, ge=-1.0, le=2.0),
        width: float = Query(1.0, gt=0.0, le=4.0),
        max_side: int | None = Query(None, ge=16, le=8192),
    ) -> Response:
        """An image of the study rendered to PNG with window/level (values in display units, 0..1)."""
        study = study_for(request, study_id)
        data = render_png(radiograph(study, index), center, width, max_side)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app


def _load_reporter(settings: ServeSettings, plan: StudyPlan | None) -> Any:
    from radscribe.infer import Reporter, RFIConfig, load_model

    model, _ = load_model(settings.model)
    template = settings.template or (plan.template if plan else None)
    return Reporter(model, template=template, rfi=RFIConfig() if settings.rfi else None)
