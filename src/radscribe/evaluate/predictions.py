"""The predictions file that ``radscribe evaluate`` reads: JSONL, one study per line.

Each line::

    {"id": "CXR1",                       # the study id in the reference manifest (required)
     "report": "...",                    # generated report: free text or template markdown
     "template": "spine-ap-alignment",   # template the markdown follows (default: the reference's)
     "boxes": [{"label": "...", "x_min": 0.1, "y_min": 0.2, "x_max": 0.3, "y_max": 0.4}],
     "answers": [{"qid": "17", "answer": "yes"}, {"question": "Is there ...?", "answer": "no"}],
     "labels": {"Cardiomegaly": 1, "Edema": -1},   # optional CheXpert labels of the generated report
     "column": {"label": "spine column", ...},       # optional spine column box (default: the vertebrae's union)
     "meta": {"fingerprint": "...", "seconds": 0.4}}  # optional: who wrote it and how (not scored)

Structural problems (not JSON, no id, wrong types, duplicate ids) are errors naming file, line and
field. A box whose coordinates are not a valid normalised box is kept as an *unparseable box*
(``None``) with a warning naming file, line and field: it counts as a wrong prediction, not an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radscribe.types import Box, SchemaError

KNOWN_FIELDS = frozenset({"id", "report", "template", "boxes", "answers", "labels", "column", "meta"})


class PredictionError(ValueError):
    """A predictions line that does not fit the format: ``file:line: field 'x': expected ...``."""

    def __init__(self, path: Path | str, line: int, field_name: str, expected: str, got: Any = None):
        self.path, self.line, self.field = Path(path), line, field_name
        detail = f"field '{field_name}': expected {expected}" if field_name else f"expected {expected}"
        if got is not None:
            detail += f", got {got!r}"[:200]
        super().__init__(f"{path}:{line}: {detail}")


@dataclass
class Prediction:
    id: str
    report: str | None = None
    template: str | None = None
    boxes: list[Box | None] | None = None
    answers: dict[str, str] = field(default_factory=dict)
    labels: dict[str, int | None] | None = None
    column: Box | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    def answer_for(self, qid: str | None, question: str) -> str | None:
        """The answer to a question, looked up by its id first, then by its exact text."""
        if qid is not None and qid in self.answers:
            return self.answers[qid]
        return self.answers.get(question)


@dataclass
class PredictionFile:
    path: Path
    predictions: dict[str, Prediction]
    warnings: list[str] = field(default_factory=list)


def _parse_boxes(value: Any, where: _Where, warnings: list[str]) -> list[Box | None]:
    if not isinstance(value, list):
        raise where.error("boxes", "a list of box objects", value)
    boxes: list[Box | None] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise where.error(f"boxes[{index}]", "a box object {label, x_min, y_min, x_max, y_max}", item)
        try:
            boxes.append(Box.from_dict({"label": "", **item}))
        except SchemaError as error:
            warnings.append(f"{where.path}:{where.line}: field 'boxes[{index}].{error.field}': {error.expected}, got {error.got!r}; scored as a wrong box")
            boxes.append(None)
    return boxes


def _parse_answers(value: Any, where: _Where) -> dict[str, str]:
    if not isinstance(value, list):
        raise where.error("answers", "a list of {qid or question, answer} objects", value)
    answers: dict[str, str] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise where.error(f"answers[{index}]", "an object with 'qid' or 'question', and 'answer'", item)
        key = item.get("qid", item.get("question"))
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key:
            raise where.error(f"answers[{index}].qid", "a question id or the question text", key)
        answer = item.get("answer")
        if not isinstance(answer, str):
            raise where.error(f"answers[{index}].answer", "a string", answer)
        answers[key] = answer
    return answers


def _parse_labels(value: Any, where: _Where) -> dict[str, int | None]:
    from radscribe.labeling import CHEXPERT_OBSERVATIONS

    if not isinstance(value, dict):
        raise where.error("labels", "an object {CheXpert observation: 1, 0, -1 or null}", value)
    labels: dict[str, int | None] = {}
    for name, label in value.items():
        if name not in CHEXPERT_OBSERVATIONS:
            raise where.error(f"labels.{name}", f"one of the CheXpert observations ({', '.join(CHEXPERT_OBSERVATIONS)})", name)
        if label is not None and (isinstance(label, bool) or label not in (1, 0, -1)) and not (isinstance(label, float) and math.isnan(label)):
            raise where.error(f"labels.{name}", "1, 0, -1 or null", label)
        labels[name] = None if label is None or (isinstance(label, float) and math.isnan(label)) else int(label)
    return labels


def _parse_column(value: Any, where: _Where) -> Box:
    if not isinstance(value, dict):
        raise where.error("column", "a box object {label, x_min, y_min, x_max, y_max}", value)
    try:
        return Box.from_dict({"label": "spine column", **value})
    except SchemaError as error:
        raise where.error(f"column.{error.field}", error.expected, error.got) from None


def _parse_meta(value: Any, where: _Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error("meta", "an object", value)
    return value


@dataclass
class _Where:
    path: Path
    line: int

    def error(self, field_name: str, expected: str, got: Any = None) -> PredictionError:
        return PredictionError(self.path, self.line, field_name, expected, got)


def parse_prediction(text: str, path: Path | str = "<predictions>", line: int = 1, warnings: list[str] | None = None) -> Prediction:
    where = _Where(Path(path), line)
    warnings = warnings if warnings is not None else []
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise where.error("", f"one JSON object per line ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise where.error("", "a JSON object", type(record).__name__)
    unknown = sorted(set(record) - KNOWN_FIELDS)
    if unknown:
        raise where.error(unknown[0], f"one of the prediction fields {', '.join(sorted(KNOWN_FIELDS))}", "an unknown field")
    study_id = record.get("id")
    if isinstance(study_id, int) and not isinstance(study_id, bool):
        study_id = str(study_id)
    if not isinstance(study_id, str) or not study_id:
        raise where.error("id", "a non-empty study id", study_id)
    for key in ("report", "template"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise where.error(key, "a string", record[key])
    return Prediction(
        id=study_id,
        report=record.get("report"),
        template=record.get("template"),
        boxes=_parse_boxes(record["boxes"], where, warnings) if record.get("boxes") is not None else None,
        answers=_parse_answers(record["answers"], where) if record.get("answers") is not None else {},
        labels=_parse_labels(record["labels"], where) if record.get("labels") is not None else None,
        column=_parse_column(record["column"], where) if record.get("column") is not None else None,
        meta=_parse_meta(record["meta"], where) if record.get("meta") is not None else {},
        line=line,
    )


def read_predictions(path: Path | str) -> PredictionFile:
    """Read a predictions JSONL file; blank lines are allowed, duplicate ids are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    predictions: dict[str, Prediction] = {}
    warnings: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            prediction = parse_prediction(text, path, number, warnings)
            if prediction.id in predictions:
                raise PredictionError(path, number, "id", f"a unique id (also on line {predictions[prediction.id].line})", prediction.id)
            predictions[prediction.id] = prediction
    return PredictionFile(path, predictions, warnings)


def write_predictions(path: Path | str, predictions: list[dict[str, Any]]) -> None:
    """Write prediction records as JSONL, atomically."""
    from radscribe.data.manifest import atomic_write

    with atomic_write(Path(path)) as handle:
        for record in predictions:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
