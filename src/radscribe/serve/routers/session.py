"""Log-in and log-out, who am I, server info, template specs, the account list and the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from radscribe import __version__
from radscribe.serve.accounts import PERMISSIONS, SESSION_SECONDS, Principal
from radscribe.serve.context import SESSION_COOKIE, Workstation, principal, require, session_cookie, workstation
from radscribe.serve.reports import impression_field
from radscribe.serve.routers.common import Page, errors
from radscribe.serve.schemas import AuditPage, Info, Login, Me
from radscribe.templates import Template, list_templates, load_template

router = APIRouter(prefix="/api", tags=["session"])


def _me(user: Principal, station: Workstation) -> Me:
    return Me(name=user.name, role=user.role, permissions=sorted(PERMISSIONS[user.role]),
              mode="local" if station.local_mode() else "accounts")


@router.post("/session", response_model=Me, responses=errors(409, 429))
def log_in(credentials: Login, request: Request, response: Response, station: Workstation = Depends(workstation)) -> Me:
    """Log in with a user name and password; sets the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS)."""
    if station.local_mode():
        raise HTTPException(409, "this workstation has no accounts (single-user local mode): "
                                 "add one with `radscribe serve user add NAME --role radiologist`")
    wait = station.throttle.retry_after(credentials.name)
    if wait:
        raise HTTPException(429, f"too many failed log-ins for {credentials.name}; retry in {wait} s", headers={"Retry-After": str(wait)})
    user = station.accounts.check_password(credentials.name, credentials.password)
    client = request.client.host if request.client else "?"
    if user is None:
        station.throttle.failed(credentials.name)
        station.storage.audit(credentials.name, "log-in-failed", detail=client)
        raise HTTPException(401, "unknown user name or wrong password", headers={"WWW-Authenticate": "Bearer"})
    station.throttle.succeeded(credentials.name)
    token = station.accounts.issue(user.name, "session", SESSION_SECONDS)
    station.storage.audit(user.name, "log-in", detail=client)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict",
                        secure=station.settings.tls)
    return _me(user, station)


@router.delete("/session", status_code=204, responses=errors())
def log_out(response: Response, session: str | None = Depends(session_cookie), user: Principal = Depends(principal),
            station: Workstation = Depends(workstation)) -> None:
    """End this session (its cookie stops working at once)."""
    if session:
        station.accounts.revoke(session)
    station.storage.audit(user.name, "log-out")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=station.settings.tls)


@router.get("/me", response_model=Me, responses=errors())
def me(user: Principal = Depends(principal), station: Workstation = Depends(workstation)) -> Me:
    """The signed-in user, their role and what it permits."""
    return _me(user, station)


@router.get("/info", response_model=Info, responses=errors())
def info(user: Principal = Depends(principal), station: Workstation = Depends(workstation)) -> Info:
    settings = station.settings
    return Info(
        version=__version__, user=user.name, role=user.role, mode="local" if station.local_mode() else "accounts",
        model=getattr(station.reporter, "model_info", {}), template=station.default_template, templates=list_templates(),
        reader_study=station.plan.name if station.plan else None,
        limits={"max_upload_bytes": settings.max_upload_bytes, "max_json_bytes": settings.max_json_bytes,
                "max_upload_files": settings.max_upload_files},
        queue={"pending": station.queue.pending, "capacity": settings.queue_size},
    )


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

    impression = impression_field(template)
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


@router.get("/templates/{name}", responses=errors(404))
def template_spec(name: str = Path(..., max_length=100), user: Principal = Depends(principal)) -> dict[str, Any]:
    """A report template's sections and typed fields (what the page builds its form from)."""
    if name not in list_templates():
        raise HTTPException(404, f"no template '{name}'; shipped: {', '.join(list_templates())}")
    return _template_json(load_template(name))


@router.get("/users", responses=errors(403))
def users(user: Principal = Depends(require("users")), station: Workstation = Depends(workstation)) -> list[dict[str, Any]]:
    """Every account: name, role, disabled (never a password hash)."""
    return station.accounts.list()


@router.get("/audit", response_model=AuditPage, responses=errors(403))
def audit(study_id: str | None = Query(None, max_length=64), page: Page = Depends(), user: Principal = Depends(require("audit")),
          station: Workstation = Depends(workstation)) -> AuditPage:
    """The audit log (reads, image views, exports, saves, signatures, log-ins), oldest first."""
    items = station.storage.audit_log(study_id, page.offset, page.limit)
    return AuditPage(items=items, offset=page.offset, limit=page.limit)
