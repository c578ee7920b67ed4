"""What every route shares: the :class:`Workstation` (storage, accounts, model queue, decoder, cache) and who is asking.

Routes get both through FastAPI dependencies: ``Depends(workstation)`` and ``Depends(require("sign"))``
(the authenticated :class:`~radscribe.serve.accounts.Principal`, refused with 403 when its role may
not). Authentication is declared as two OpenAPI security schemes, the session cookie and a bearer
API token; with no account in the data folder every request is the local user.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from radscribe.data.images import Radiograph
from radscribe.serve.accounts import LOCAL, Accounts, LoginThrottle, Principal
from radscribe.serve.queue import ModelQueue, QueueFull
from radscribe.serve.readerstudy import StudyPlan
from radscribe.serve.settings import ServeSettings
from radscribe.serve.storage import NotFound, Storage
from radscribe.serve.uploads import Decoder, RadiographCache, UploadRejected

SESSION_COOKIE = "radscribe_session"
session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session",
                              description="The session cookie set by `POST /api/session` (HttpOnly, SameSite=Strict).")
api_token = HTTPBearer(auto_error=False, scheme_name="token",
                       description="A per-user API token (`radscribe serve user token NAME`), as `Authorization: Bearer TOKEN`.")


class Workstation:
    """The state of one running workstation over ``settings.data_dir``."""

    def __init__(self, settings: ServeSettings, reporter: Any, storage: Storage, plan: StudyPlan | None):
        self.settings = settings
        self.reporter = reporter
        self.storage = storage
        self.plan = plan
        self.accounts = Accounts(storage)
        self.throttle = LoginThrottle()
        self.queue = ModelQueue(settings.queue_size)
        scratch = settings.data_dir / "tmp"
        scratch.mkdir(mode=0o700, exist_ok=True)
        self.decoder = Decoder(settings.decoder_memory_bytes, scratch)
        self.cache = RadiographCache(settings.cache_bytes)
        self.default_template = plan.template if plan else reporter.template.name
        self.reporter_lock = threading.Lock()  # belt and braces: only the queue's thread calls the model anyway

    def local_mode(self) -> bool:
        """No accounts yet: single-user mode (the server only binds to loopback then)."""
        return not self.accounts.any()

    def close(self) -> None:
        self.queue.close()
        self.decoder.close()
        self.storage.close()

    def study_for(self, principal: Principal, study_id: str) -> dict[str, Any]:
        """The study, if ``principal`` may see it: readers see their own assigned, unlocked cases only."""
        try:
            study = self.storage.study(study_id)
        except NotFound:
            raise HTTPException(404, f"no study '{study_id}'") from None
        if principal.is_reader:
            if study["reader"] != principal.name:
                raise HTTPException(404, f"no study '{study_id}'")  # never confirm another reader's case exists
            locked = self.plan.locked_reason(self.storage, principal.name, study["session"]) if self.plan else None
            if locked:
                raise HTTPException(403, locked)
        return study

    def radiograph(self, study: dict[str, Any], index: int) -> Radiograph:
        if not 0 <= index < len(study["images"]):
            raise HTTPException(404, f"study has {len(study['images'])} image(s); no image {index}")
        info = study["images"][index]

        def load() -> Radiograph:
            return self.decoder.working_copy(self.storage.images.read(info["sha256"]), info["format"], self.settings.working_side)

        try:
            return self.cache.get(info["sha256"], load)
        except UploadRejected as error:
            raise HTTPException(422, error.reason) from None

    def run_model(self, job) -> Any:
        try:
            future = self.queue.submit(job)
        except QueueFull as full:
            raise HTTPException(503, str(full), headers={"Retry-After": str(full.retry_after)}) from None
        try:
            return future.result(timeout=self.settings.job_timeout_s)
        except FutureTimeout:
            raise HTTPException(504, f"the model did not answer within {self.settings.job_timeout_s:.0f} s") from None

    def public_study(self, study: dict[str, Any], principal: Principal) -> dict[str, Any]:
        out = {k: study[k] for k in ("id", "created_at", "template", "status", "images")}
        if study.get("reader") is not None:
            # Blinded: a reader learns the arm (a draft appears or not) but never the case's name.
            out.update(session=study["session"], position=study["position"], arm=study["arm"])
            if not principal.is_reader:
                out.update(reader=study["reader"], case_id=study["case_id"])
            elif self.plan is not None:
                out["locked"] = self.plan.locked_reason(self.storage, principal.name, study["session"])
        return out


def workstation(request: Request) -> Workstation:
    return request.app.state.workstation


def principal(
    session: str | None = Security(session_cookie),
    token: HTTPAuthorizationCredentials | None = Security(api_token),
    station: Workstation = Depends(workstation),
) -> Principal:
    """The authenticated user: API token first, then the session cookie; the local user when there are no accounts."""
    if station.local_mode():
        return LOCAL
    found = None
    if token is not None:
        found = station.accounts.principal_for_token(token.credentials, "api")
    elif session:
        found = station.accounts.principal_for_token(session, "session")
    if found is None:
        raise HTTPException(401, "sign in first (POST /api/session) or send an API token (Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    return found


def require(permission: str):
    """A dependency: the principal, if its role carries ``permission``; 403 otherwise."""

    def check(user: Principal = Depends(principal)) -> Principal:
        if not user.may(permission):
            raise HTTPException(403, f"your role ({user.role}) may not {permission}")
        return user

    return check
