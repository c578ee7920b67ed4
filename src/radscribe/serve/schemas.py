"""Typed request and response bodies of the API, with the size limit of every field.

The OpenAPI schema is generated from these, so it is exact: a client (or a fuzzer) learns every
bound from ``/openapi.json``. Template-specific checks (which fields exist, enum values, ranges) come
after, in :func:`radscribe.serve.reports.normalize_document`, and answer 422 per field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, StringConstraints

MAX_TEXT = 2_000            # one field value, one finding value
MAX_IMPRESSION = 20_000
MAX_BOXES = 500
MAX_FINDINGS = 100
MAX_FIELDS = 200
MAX_KEY = 120
PAGE_LIMIT = 200

Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY)]
Text = Annotated[StrictStr, StringConstraints(max_length=MAX_TEXT)]
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Value = StrictInt | Number | Text | None
Decision = Literal["pending", "accepted", "rejected"]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BoxIn(Strict):
    """A box in normalised xyxy on the original image, with the reviewer's decision."""

    label: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    x_min: Unit
    y_min: Unit
    x_max: Unit
    y_max: Unit
    source: Annotated[str, StringConstraints(max_length=40)] = "human"
    image: Annotated[int, Field(ge=0, le=64)] = 0
    score: Number | None = None
    decision: Decision = "pending"
    field: Key | None = None


class FindingIn(Strict):
    values: Annotated[dict[Key, Value], Field(max_length=64)] = {}
    boxes: Annotated[list[BoxIn], Field(max_length=64)] = []
    decision: Decision = "pending"


class ReportDocument(Strict):
    """A report document (see :mod:`radscribe.serve.reports`)."""

    template: Key | None = None
    fields: Annotated[dict[Key, Value], Field(max_length=MAX_FIELDS)] = {}
    findings: Annotated[dict[Key, Annotated[list[FindingIn], Field(max_length=MAX_FINDINGS)]], Field(max_length=32)] = {}
    boxes: Annotated[list[BoxIn], Field(max_length=MAX_BOXES)] = []
    impression: Annotated[str, StringConstraints(max_length=MAX_IMPRESSION)] | None = None


class Login(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class AskRequest(Strict):
    study_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    question: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S")]
    image: Annotated[int, Field(ge=0, le=64)] = 0


# ----- responses ------------------------------------------------------------------------------------------


class Problem(BaseModel):
    """Every error: ``detail`` says what was wrong (text, or per-field messages)."""

    model_config = ConfigDict(extra="allow")
    detail: Any


class Me(BaseModel):
    name: str
    role: str
    permissions: list[str]
    mode: Literal["local", "accounts"]


class ImageInfo(BaseModel):
    sha256: str
    format: str
    width: int
    height: int


class StudySummary(BaseModel):
    id: str
    created_at: float
    template: str
    status: str
    images: list[ImageInfo]
    session: int | None = None
    position: int | None = None
    arm: str | None = None
    reader: str | None = None
    case_id: str | None = None
    locked: str | None = None


class StudyPage(BaseModel):
    items: list[StudySummary]
    total: int
    offset: int
    limit: int


class Signature(BaseModel):
    signed_at: float
    signer: str
    edit_id: int
    sha256: str
    chain: str
    version: int | None = None
    etag: str | None = None


class StudyDetail(StudySummary):
    document: dict[str, Any] | None
    version: int
    etag: str
    signature: Signature | None
    errors: dict[str, list[str]] = {}
    incomplete: dict[str, list[str]] = {}


class SaveResult(BaseModel):
    version: int
    edit_id: int
    saved_at: float
    sha256: str
    author: str
    etag: str
    incomplete: dict[str, list[str]]
    document: dict[str, Any]


class Edit(BaseModel):
    version: int
    id: int
    created_at: float
    author: str
    sha256: str
    document: dict[str, Any]


class EditPage(BaseModel):
    items: list[Edit]
    total: int
    offset: int
    limit: int


class DraftResult(BaseModel):
    markdown: str
    fields: dict[str, Any] | None
    findings: list[dict[str, Any]]
    boxes: list[dict[str, Any]]
    issues: list[str]
    box_errors: list[str]
    timings_s: dict[str, float]
    model: dict[str, Any]
    document: dict[str, Any]


class Answer(BaseModel):
    question: str
    answer: str
    timings_s: dict[str, float]


class AuditEntry(BaseModel):
    at: float
    actor: str
    action: str
    study_id: str | None
    detail: str | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    offset: int
    limit: int


class Info(BaseModel):
    version: str
    user: str
    role: str
    mode: Literal["local", "accounts"]
    model: dict[str, Any]
    template: str
    templates: list[str]
    reader_study: str | None
    limits: dict[str, int]
    queue: dict[str, int]
