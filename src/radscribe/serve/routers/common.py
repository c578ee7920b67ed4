"""Shared bits of the routers: documented error answers and paging parameters."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from radscribe.serve.schemas import PAGE_LIMIT, Problem

ERROR_MEANINGS = {
    400: "Malformed request",
    401: "Not signed in",
    403: "Not allowed for this user or role (or a cross-site request)",
    404: "No such study, image or template (or not one you may see)",
    409: "The study's state does not allow it (signed, nothing saved, tampered signature)",
    412: "Stale version: If-Match is not the latest version's ETag; `current` holds the latest",
    413: "Request body or image too large",
    415: "Not a PNG, JPEG or DICOM file",
    422: "A value that does not fit (per field where possible)",
    428: "If-Match is required",
    429: "Too many failed log-ins; retry later",
    503: "The model queue is full; retry after Retry-After seconds",
    504: "The model did not answer in time",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry documenting ``codes`` as :class:`Problem`, with 400, 401, 403 (role, cross-site), 413 and 422 that any route may answer."""
    return {code: {"model": Problem, "description": ERROR_MEANINGS[code]} for code in sorted({400, 401, 403, 413, 422, *codes})}


class Page:
    """``offset`` and ``limit`` query parameters of a paged list."""

    def __init__(self, offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(50, ge=1, le=PAGE_LIMIT)):
        self.offset = offset
        self.limit = limit
