"""Canonical types: the one way radscribe holds a radiology study.

Every importer produces these, every task, model, evaluator and the web app consumes them;
format conversions (YOLO boxes, pixel coordinates, location tokens) happen at the edges only.

Coordinates: a :class:`Box` is always normalised ``x_min, y_min, x_max, y_max`` in [0, 1] on the
*original* image (before any resize, crop or padding), origin top-left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

FindingStatus = Literal["positive", "negative", "uncertain"]
AnswerType = Literal["closed", "open"]

FINDING_STATUSES: tuple[str, ...] = ("positive", "negative", "uncertain")
ANSWER_TYPES: tuple[str, ...] = ("closed", "open")
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class SchemaError(ValueError):
    """A value does not fit the canonical schema.

    ``field`` is a dotted path inside the record (``boxes[3].x_max``); the manifest reader adds the
    file and line so that the final message names all four: file, line, field, expectation.
    """

    def __init__(self, field: str, expected: str, got: Any = None):
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"field '{field}': expected {expected}, got {got!r}")

    def prefixed(self, prefix: str) -> SchemaError:
        return SchemaError(f"{prefix}.{self.field}" if self.field else prefix, self.expected, self.got)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in normalised xyxy on the original image."""

    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    source: str = "unknown"
    image: int = 0
    score: float | None = None

    def __post_init__(self) -> None:
        for name in ("x_min", "y_min", "x_max", "y_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise SchemaError(name, "a number in [0, 1] (normalised to the original image)", value)
        if self.x_min > self.x_max:
            raise SchemaError("x_min", f"x_min <= x_max ({self.x_max})", self.x_min)
        if self.y_min > self.y_max:
            raise SchemaError("y_min", f"y_min <= y_max ({self.y_max})", self.y_min)
        if not isinstance(self.label, str):
            raise SchemaError("label", "a string", self.label)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x_min + self.x_max) / 2, (self.y_min + self.y_max) / 2)

    @classmethod
    def from_xyxy(cls, label: str, xyxy: tuple[float, float, float, float] | list[float], **kwargs: Any) -> Box:
        """Build from raw coordinates, clamping float noise just outside [0, 1]."""
        x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in xyxy)
        return cls(label, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), **kwargs)

    @classmethod
    def from_pixels(
        cls, label: str, xyxy: tuple[float, float, float, float], width: float, height: float, **kwargs: Any
    ) -> Box:
        x0, y0, x1, y1 = xyxy
        return cls.from_xyxy(label, (x0 / width, y0 / height, x1 / width, y1 / height), **kwargs)

    @classmethod
    def enclosing(cls, label: str, boxes: Iterable[Box], **kwargs: Any) -> Box:
        """The smallest box that holds every one of ``boxes`` (at least one), e.g. a spine column from its vertebrae."""
        boxes = tuple(boxes)
        if not boxes:
            raise ValueError(f"Box.enclosing('{label}') needs at least one box")
        return cls(
            label,
            min(b.x_min for b in boxes),
            min(b.y_min for b in boxes),
            max(b.x_max for b in boxes),
            max(b.y_max for b in boxes),
            **kwargs,
        )

    def to_pixels(self, width: float, height: float) -> tuple[float, float, float, float]:
        return (self.x_min * width, self.y_min * height, self.x_max * width, self.y_max * height)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "x_min": self.x_min,
            "y_min": self.y_min,
            "x_max": self.x_max,
            "y_max": self.y_max,
            "source": self.source,
        }
        if self.image:
            out["image"] = self.image
        if self.score is not None:
            out["score"] = self.score
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Box:
        record = _require_mapping(data, "")
        return cls(
            label=_require(record, "label", str),
            x_min=_require_number(record, "x_min"),
            y_min=_require_number(record, "y_min"),
            x_max=_require_number(record, "x_max"),
            y_max=_require_number(record, "y_max"),
            source=_optional(record, "source", str, "unknown"),
            image=_optional(record, "image", int, 0),
            score=_optional_number(record, "score"),
        )


@dataclass(frozen=True)
class Finding:
    """A finding label on a study, with where it came from (``nih-nlp``, ``chexpert-lite``, ``human``...)."""

    label: str
    status: FindingStatus = "positive"
    source: str = "unknown"

    def __post_init__(self) -> None:
        if self.status not in FINDING_STATUSES:
            raise SchemaError("status", f"one of {', '.join(FINDING_STATUSES)}", self.status)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "status": self.status, "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> Finding:
        record = _require_mapping(data, "")
        return cls(
            label=_require(record, "label", str),
            status=_optional(record, "status", str, "positive"),  # type: ignore[arg-type]
            source=_optional(record, "source", str, "unknown"),
        )


@dataclass(frozen=True)
class QA:
    """A visual question with its answer."""

    question: str
    answer: str
    answer_type: AnswerType = "open"
    question_type: str | None = None
    id: str | None = None
    image: int = 0

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise SchemaError("answer_type", "'closed' or 'open'", self.answer_type)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"question": self.question, "answer": self.answer, "answer_type": self.answer_type}
        if self.question_type is not None:
            out["question_type"] = self.question_type
        if self.id is not None:
            out["id"] = self.id
        if self.image:
            out["image"] = self.image
        return out

    @classmethod
    def from_dict(cls, data: Any) -> QA:
        record = _require_mapping(data, "")
        return cls(
            question=_require(record, "question", str),
            answer=_require(record, "answer", str),
            answer_type=_optional(record, "answer_type", str, "open"),  # type: ignore[arg-type]
            question_type=_optional(record, "question_type", str, None),
            id=_optional(record, "id", str, None),
            image=_optional(record, "image", int, 0),
        )


@dataclass(frozen=True)
class ImageRef:
    """One image of a study. ``path`` is relative to the manifest's folder (or absolute)."""

    path: str
    width: int | None = None
    height: int | None = None
    view: str | None = None
    modality: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        for key in ("width", "height", "view", "modality"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ImageRef:
        record = _require_mapping(data, "")
        return cls(
            path=_require(record, "path", str),
            width=_optional(record, "width", int, None),
            height=_optional(record, "height", int, None),
            view=_optional(record, "view", str, None),
            modality=_optional(record, "modality", str, None),
        )


@dataclass
class Study:
    """One radiology study: images plus everything known about them.

    ``report`` holds free-text sections by name (``findings``, ``impression``, ``indication``...);
    ``structured`` holds a filled markdown template, named by ``template``.
    """

    id: str
    images: list[ImageRef] = field(default_factory=list)
    split: str | None = None
    patient_id: str | None = None
    report: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    structured: str | None = None
    findings: list[Finding] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    qa: list[QA] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise SchemaError("id", "a non-empty string", self.id)
        if self.split is not None and self.split not in SPLITS:
            raise SchemaError("split", f"one of {', '.join(SPLITS)} or null", self.split)
        for index, box in enumerate(self.boxes):
            if not 0 <= box.image < max(1, len(self.images)):
                raise SchemaError(f"boxes[{index}].image", f"an index below the image count {len(self.images)}", box.image)

    @property
    def report_text(self) -> str:
        """Findings then impression, the usual report-generation target."""
        parts = [self.report.get(name, "").strip() for name in ("findings", "impression")]
        return " ".join(part for part in parts if part)

    def positive_labels(self) -> list[str]:
        return [finding.label for finding in self.findings if finding.status == "positive"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "images": [image.to_dict() for image in self.images]}
        for key in ("split", "patient_id", "template", "structured"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.report:
            out["report"] = dict(self.report)
        if self.findings:
            out["findings"] = [finding.to_dict() for finding in self.findings]
        if self.boxes:
            out["boxes"] = [box.to_dict() for box in self.boxes]
        if self.qa:
            out["qa"] = [qa.to_dict() for qa in self.qa]
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Study:
        record = _require_mapping(data, "")
        known = {
            "id", "images", "split", "patient_id", "report", "template", "structured",
            "findings", "boxes", "qa", "metadata", "version",
        }
        unknown = sorted(set(record) - known)
        if unknown:
            raise SchemaError(unknown[0], f"one of the study fields {', '.join(sorted(known))}", "an unknown field")
        report = _optional(record, "report", dict, {})
        for key, value in report.items():
            if not isinstance(value, str):
                raise SchemaError(f"report.{key}", "a string", value)
        return cls(
            id=_require(record, "id", str),
            images=_list_of(record, "images", ImageRef.from_dict),
            split=_optional(record, "split", str, None),
            patient_id=_optional(record, "patient_id", str, None),
            report=dict(report),
            template=_optional(record, "template", str, None),
            structured=_optional(record, "structured", str, None),
            findings=_list_of(record, "findings", Finding.from_dict),
            boxes=_list_of(record, "boxes", Box.from_dict),
            qa=_list_of(record, "qa", QA.from_dict),
            metadata=_optional(record, "metadata", dict, {}),
        )


_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def _require_mapping(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SchemaError(field, "an object", data)
    return data


def _require(record: dict[str, Any], key: str, kind: type) -> Any:
    if key not in record or record[key] is None:
        raise SchemaError(key, f"{_TYPE_NAMES[kind]} (required)", "nothing")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SchemaError(key, _TYPE_NAMES[kind], value)
    return value


def _optional(record: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    if record.get(key) is None:
        return default
    return _require(record, key, kind)


def _require_number(record: dict[str, Any], key: str) -> float:
    value = record.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SchemaError(key, "a number", value if key in record else "nothing")
    return float(value)


def _optional_number(record: dict[str, Any], key: str) -> float | None:
    return None if record.get(key) is None else _require_number(record, key)


def _list_of(record: dict[str, Any], key: str, parse: Any) -> list[Any]:
    items = _optional(record, key, list, [])
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except SchemaError as error:
            raise error.prefixed(f"{key}[{index}]") from None
    return parsed
