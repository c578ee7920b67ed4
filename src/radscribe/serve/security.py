"""Request hygiene in every mode, local single-user mode included.

- **Host allow-list** (Starlette's ``TrustedHostMiddleware``, added in :func:`radscribe.serve.app.create_app`):
  a page on another site that rebinds its DNS name to 127.0.0.1 sends its own ``Host`` and is refused.
- **Cross-site requests** (:class:`CrossSiteGuard`): a state-changing request (anything but GET, HEAD,
  OPTIONS) is refused with 403 when the browser says it comes from another site (``Sec-Fetch-Site``),
  when its ``Origin`` is not this server's own, or when it carries the session cookie without any
  ``Origin`` at all. Scripts (no cookie, an API token or the local user) send no ``Origin`` and pass.
- **Security headers** on every response: a strict Content-Security-Policy with
  ``frame-ancestors 'none'`` (the page cannot be framed over its Sign button), ``nosniff``,
  ``Referrer-Policy: no-referrer``, and ``Cache-Control: no-store`` for the API (patient data).
- Body limits (FastAPI's ``max_body_size``, enforced while the body streams) answer 413 as JSON
  naming the limit, like every other error.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def cross_site_reason(scope: Scope, headers: Headers, session_cookie: str) -> str | None:
    """Why a state-changing request looks cross-site (None: it does not)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    origin = headers.get("origin")
    own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"cross-origin request refused (Origin {origin[:200]!r} is not {own!r})"
    if origin is None and f"{session_cookie}=" in headers.get("cookie", ""):
        return "a request with the session cookie must come from the workstation page (no Origin header)"
    return None


class CrossSiteGuard:
    """Refuse cross-site state-changing requests and add the security headers to every response."""

    def __init__(self, app: ASGIApp, session_cookie: str):
        self.app = app
        self.session_cookie = session_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS:
            reason = cross_site_reason(scope, Headers(scope=scope), self.session_cookie)
            if reason:
                await JSONResponse({"detail": reason}, 403, headers=SECURITY_HEADERS)(scope, receive, send)
                return
        api = scope["path"].startswith("/api/") or scope["path"] == "/openapi.json"
        explained: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if message["status"] == 413 and headers.get("content-type", "").startswith("text/plain"):
                    # Starlette's body limit answers a too-long Content-Length in plain text: say it in JSON, with the limit.
                    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
                    detail = f"request body over this endpoint's limit of {limit:,} bytes" if limit else "request body too large"
                    explained.append(json.dumps({"detail": detail}).encode())
                    headers["content-type"] = "application/json"
                    headers["content-length"] = str(len(explained[0]))
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if api:
                    headers["Cache-Control"] = "no-store"
            elif message["type"] == "http.response.body" and explained:
                message = {**message, "body": explained.pop(), "more_body": False}  # Starlette sends that answer in one piece
            await send(message)

        await self.app(scope, receive, send_with_headers)
