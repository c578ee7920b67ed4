"""The FastAPI application: the routers, request hygiene, body limits, the page.

``create_app(settings, reporter=None)`` builds everything; tests pass their own reporter, the CLI
lets it load the model once. Model work goes through one bounded :class:`ModelQueue`; image decoding
through a memory-capped worker process; everything else runs in the server's thread pool.

Every request, in every mode, passes the Host allow-list and the cross-site guard
(:mod:`radscribe.serve.security`); request bodies are limited while they stream (1 MiB for JSON,
``max_upload_bytes`` for an upload). Who is asking is decided per route
(:mod:`radscribe.serve.context`). Interactive API docs are off: ``/openapi.json`` describes the API,
and nothing is loaded from a CDN on the origin that serves patient data.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.trustedhost import TrustedHostMiddleware

from radscribe import __version__
from radscribe.serve.context import SESSION_COOKIE, Workstation
from radscribe.serve.readerstudy import StudyPlan, load_plan
from radscribe.serve.routers import report, session, studies
from radscribe.serve.security import CrossSiteGuard
from radscribe.serve.settings import ServeSettings
from radscribe.serve.storage import Storage


def _static_dir() -> Path:
    return Path(str(resources.files("radscribe.serve").joinpath("static")))


def create_app(settings: ServeSettings, reporter: Any = None) -> FastAPI:
    """The workstation app over ``settings.data_dir``; ``reporter`` (a :class:`radscribe.infer.Reporter`) or loaded here."""
    storage = Storage(settings.data_dir)
    plan: StudyPlan | None = load_plan(settings.data_dir)
    if reporter is None:
        reporter = _load_reporter(settings, plan)
    station = Workstation(settings, reporter, storage, plan)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        station.close()

    app = FastAPI(
        title="radscribe reporting workstation",
        version=__version__,
        description=(
            "Draft, review, correct and sign grounded structured radiology reports. Sign in with `POST /api/session` "
            "(session cookie) or send a per-user API token as `Authorization: Bearer`; with no account on the server, "
            "every request is the local user (loopback only). Saving and signing need `If-Match` with the ETag of the "
            "version you edited or reviewed. Model requests are queued; a full queue answers 503 with Retry-After."
        ),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.workstation = station
    app.state.storage = storage
    app.state.queue = station.queue

    app.add_middleware(CrossSiteGuard, session_cookie=SESSION_COOKIE)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.host_names())

    @app.exception_handler(StarletteHTTPException)
    async def explained(request: Request, error: StarletteHTTPException):
        if error.status_code == 413 and error.detail == "Content Too Large":
            limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
            error = StarletteHTTPException(413, f"request body over this endpoint's limit of {limit:,} bytes" if limit
                                           else "request body too large")
        return await http_exception_handler(request, error)

    # Body limits per router (inside the guard, so a 413 is explained in JSON); the upload route sets its own.
    app.include_router(session.router, max_body_size=settings.max_json_bytes)
    app.include_router(studies.upload_router(settings))
    app.include_router(studies.router, max_body_size=settings.max_json_bytes)
    app.include_router(report.router, max_body_size=settings.max_json_bytes)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((_static_dir() / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    return app


def _load_reporter(settings: ServeSettings, plan: StudyPlan | None) -> Any:
    """The model with its detector and abstentions, exactly as `radscribe report` uses it."""
    from radscribe.infer import Reporter, RFIConfig

    template = settings.template or (plan.template if plan else None)
    return Reporter.from_pretrained(settings.model, template=template, rfi=RFIConfig() if settings.rfi else None)
