"""`radscribe predict`: a model's predictions on a manifest split, as the predictions file `radscribe evaluate` reads.

One process, resumable: each study's line is appended (and flushed) as soon as it is done, and a rerun
skips the studies already in the file (a torn last line of a killed run is dropped and redone). Every
line carries ``meta.fingerprint``: the task, template and the weights fingerprints of the model and
the detector (:func:`radscribe.infer.model_version`). A file written with another fingerprint is
refused (:class:`StalePredictions`), so a different model never reuses stale lines.

Three predictors, one line per study:

- ``report`` (:class:`ReporterPredictor`): the Reporter's report (markdown) and its boxes. On spine
  films that is the vertebra grounding and the template derived from it; with a detector, the
  detector's boxes are in the grounding prompt (``meta.detections`` counts them);
- ``detector`` (:class:`DetectorPredictor`): the vertebra detector alone, its boxes and the spine
  template derived from them by the annotation code (:func:`radscribe.annotate.spine_report_from_boxes`),
  so the detector is scored by the same evaluator, side by side with the VLM;
- ``vqa`` (:class:`ReporterPredictor` with ``task="vqa"``): every question of each image through
  :meth:`radscribe.infer.Reporter.ask`.

A study that fails (unreadable image, generation error) gets a line with an empty prediction and
``meta.error``: it is scored as wrong, never silently dropped, and not retried on resume.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radscribe.types import Study

log = logging.getLogger(__name__)
PREDICT_TASKS: tuple[str, ...] = ("report", "vqa", "detector")


class StalePredictions(ValueError):
    """The output file holds predictions of another model (or task, template, detector)."""


@dataclass
class PredictSummary:
    path: Path
    fingerprint: str
    studies: int = 0
    resumed: int = 0
    predicted: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


class ReporterPredictor:
    """Reports (``task='report'``) or answers (``task='vqa'``) from a :class:`radscribe.infer.Reporter`."""

    def __init__(self, reporter: Any, task: str = "report"):
        from radscribe.infer.loading import model_version

        if task not in ("report", "vqa"):
            raise ValueError(f"ReporterPredictor: task must be 'report' or 'vqa', got {task!r}")
        self.reporter, self.task = reporter, task
        detector = reporter.detector
        parts = [task, f"model={reporter.model_info['version']}"]
        if task == "vqa" and reporter.abstain.get("vqa"):
            parts.append("abstain=" + ",".join(sorted(reporter.abstain["vqa"])))  # abstained answers are other predictions
        if task == "report":
            parts += [f"template={reporter.template.name}", f"detector={model_version(detector) if detector is not None else 'none'}"]
            if detector is not None:
                parts.append(f"boxes_from={reporter.boxes_from}")
            if reporter.abstain.get(reporter.template.name):  # abstained fields are other predictions
                parts.append("abstain=" + ",".join(sorted(reporter.abstain[reporter.template.name])))
            parts += ["rfi"] if reporter.rfi is not None else []  # RFI changes what the model sees
        self.fingerprint = "|".join(parts)
        self.batch_size = reporter.batch_size if task == "report" else 1

    def predict(self, studies: Sequence[Study], paths: Sequence[Path]) -> list[dict[str, Any]]:
        return self._reports(studies, paths) if self.task == "report" else [self._answers(s, p) for s, p in zip(studies, paths)]

    def _reports(self, studies: Sequence[Study], paths: Sequence[Path]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        results = self.reporter.report(list(paths))
        seconds = (time.perf_counter() - start) / max(1, len(studies))
        records = []
        for study, result in zip(studies, results):
            meta: dict[str, Any] = {"seconds": round(seconds, 4)}
            if not result.ok:
                records.append({"id": study.id, "report": "", "boxes": [], "meta": {**meta, "error": f"{result.stage}: {result.reason}"}})
                continue
            meta.update(valid=result.valid, issues=result.issues, box_errors=len(result.box_errors),
                        detections=len(result.detections), abstained=result.abstained)  # fmt: skip
            records.append({
                "id": study.id, "report": result.text, "template": self.reporter.template.name,
                "boxes": [box.to_dict() for box in result.boxes], "meta": meta,
            })  # fmt: skip
        return records

    def _answers(self, study: Study, path: Path) -> dict[str, Any]:
        start = time.perf_counter()
        answers, errors = [], []
        for index, qa in enumerate(study.qa):
            result = self.reporter.ask(path, qa.question)
            key = {"qid": qa.id} if qa.id is not None else {"question": qa.question}
            answers.append({**key, "answer": result.text if result.ok else ""})
            if not result.ok:
                errors.append(f"question {qa.id or index}: {result.stage}: {result.reason}")
        meta: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 4), "questions": len(study.qa)}
        if errors:
            meta["error"] = "; ".join(errors)
        return {"id": study.id, "answers": answers, "meta": meta}


class DetectorPredictor:
    """The vertebra detector alone: its boxes and the spine template derived from them."""

    def __init__(self, detector: Any, batch_size: int = 8):
        from radscribe.infer.loading import model_version

        self.detector, self.batch_size = detector, max(1, batch_size)
        self.fingerprint = f"detector|detector={model_version(detector)}"

    def predict(self, studies: Sequence[Study], paths: Sequence[Path]) -> list[dict[str, Any]]:
        from radscribe.annotate import SPINE_TEMPLATE, spine_report_from_boxes
        from radscribe.data.images import ImageReadError, read_image
        from radscribe.templates import render

        records, readable = [], []
        for study, path in zip(studies, paths):
            try:
                readable.append((study, read_image(path)))
            except (ImageReadError, OSError, ValueError) as error:
                records.append({"id": study.id, "report": "", "boxes": [], "meta": {"error": f"input: {error}"}})
        start = time.perf_counter()
        found = self.detector.detect([image for _, image in readable]) if readable else []
        seconds = (time.perf_counter() - start) / max(1, len(readable))
        for (study, image), boxes in zip(readable, found):
            filled, _ = spine_report_from_boxes(boxes, (image.width, image.height))
            records.append({
                "id": study.id, "report": render(filled), "template": SPINE_TEMPLATE,
                "boxes": [box.to_dict() for box in boxes], "meta": {"seconds": round(seconds, 4), "detections": len(boxes)},
            })  # fmt: skip
        order = {study.id: index for index, study in enumerate(studies)}
        return sorted(records, key=lambda record: order[record["id"]])


def select_studies(studies: Sequence[Study], split: str | None, limit: int = 0, source: Any = "manifest") -> list[Study]:
    """The studies of ``split`` (all with ``None``), the first ``limit`` of them with ``limit`` > 0."""
    chosen = [s for s in studies if split is None or s.split == split]
    if not chosen:
        raise ValueError(f"{source}: no study in split '{split}'")
    return chosen[:limit] if limit > 0 else chosen


def done_records(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """The lines an earlier run wrote to ``path`` (a torn last line is cut off so appending continues cleanly).

    Raises :class:`StalePredictions` when a line was written with another fingerprint."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    records: dict[str, dict[str, Any]] = {}
    kept = 0
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            study_id = record["id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if number == len(lines):  # a run killed mid-line: redo that study
                break
            raise ValueError(f"{path}:{number}: not a prediction line (expected a JSON object with 'id')") from None
        if not line.endswith("\n"):
            break
        written = (record.get("meta") or {}).get("fingerprint")
        if written != fingerprint:
            raise StalePredictions(
                f"{path}:{number}: written by '{written}', not by '{fingerprint}'; "
                "delete the file or choose another --out (a different model never reuses these lines)"
            )
        records[study_id] = record
        kept += len(line)
    if kept != len(text):
        path.write_text(text[:kept], encoding="utf-8")
    return records


def predict(
    studies: Sequence[Study],
    manifest: Path | str,
    out: Path | str,
    predictor: ReporterPredictor | DetectorPredictor,
    *,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> PredictSummary:
    """Predict every study of ``studies`` not yet in ``out`` and append one line per study (module docstring)."""
    from radscribe.evaluate.baselines import image_paths

    out = Path(out)
    started = time.perf_counter()
    done = done_records(out, predictor.fingerprint)
    summary = PredictSummary(out, predictor.fingerprint, studies=len(studies), resumed=sum(s.id in done for s in studies))
    todo = [s for s in studies if s.id not in done]
    if isinstance(predictor, ReporterPredictor) and predictor.task == "vqa":
        todo = [s for s in todo if s.qa]
    batches = [todo[i : i + predictor.batch_size] for i in range(0, len(todo), predictor.batch_size)]
    log.info("%s: %d studies, %d done earlier, %d to predict (%s)", out, len(studies), summary.resumed, len(todo), predictor.fingerprint)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for batch in progress(batches, len(batches)) if progress else batches:
            for record in predictor.predict(batch, image_paths(batch, manifest)):
                record["meta"]["fingerprint"] = predictor.fingerprint
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.predicted += 1
                if "error" in record["meta"]:
                    summary.errors.append((record["id"], record["meta"]["error"]))
            handle.flush()
            log.info("predicted %d of %d studies (%d errors)", summary.resumed + summary.predicted, len(studies), len(summary.errors))
    summary.seconds = time.perf_counter() - started
    return summary
