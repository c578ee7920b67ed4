"""What a manifest holds, in numbers: splits, labels, boxes, questions, image sizes, reports."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from radscribe.types import Study


def manifest_stats(studies: Iterable[Study]) -> dict[str, Any]:
    """Counts over a manifest's studies, as a JSON-ready dict (sorted most common first)."""
    splits: Counter[str] = Counter()
    findings: dict[str, Counter[str]] = {}
    box_labels: Counter[str] = Counter()
    boxes_per_study: list[int] = []
    answer_types: Counter[str] = Counter()
    question_types: Counter[str] = Counter()
    widths: list[int] = []
    heights: list[int] = []
    modalities: Counter[str] = Counter()
    views: Counter[str] = Counter()
    report_sections: Counter[str] = Counter()
    studies_count = images = reports = qa_total = structured = 0
    patients: set[str] = set()

    for study in studies:
        studies_count += 1
        splits[study.split or "none"] += 1
        if study.patient_id:
            patients.add(study.patient_id)
        images += len(study.images)
        for image in study.images:
            if image.width and image.height:
                widths.append(image.width)
                heights.append(image.height)
            if image.modality:
                modalities[image.modality] += 1
            if image.view:
                views[image.view] += 1
        if any(text.strip() for text in study.report.values()):
            reports += 1
        report_sections.update(name for name, text in study.report.items() if text.strip())
        structured += study.structured is not None
        for finding in study.findings:
            findings.setdefault(finding.status, Counter())[finding.label] += 1
        if study.boxes:
            boxes_per_study.append(len(study.boxes))
        box_labels.update(box.label for box in study.boxes)
        qa_total += len(study.qa)
        answer_types.update(qa.answer_type for qa in study.qa)
        question_types.update(qa.question_type or "unspecified" for qa in study.qa)

    return {
        "studies": studies_count,
        "splits": _ordered(splits),
        "patients": len(patients),
        "images": images,
        "image_size": {"width": _spread(widths), "height": _spread(heights)},
        "modalities": _ordered(modalities),
        "views": _ordered(views),
        "reports": reports,
        "report_sections": _ordered(report_sections),
        "structured": structured,
        "findings": {status: _ordered(counts) for status, counts in sorted(findings.items())},
        "boxes": {
            "total": sum(box_labels.values()),
            "studies_with_boxes": len(boxes_per_study),
            "per_study": _spread(boxes_per_study),
            "labels": _ordered(box_labels),
        },
        "qa": {"total": qa_total, "answer_types": _ordered(answer_types), "question_types": _ordered(question_types)},
    }


def format_stats(stats: dict[str, Any], top: int = 15) -> str:
    """A plain-text summary of :func:`manifest_stats` for the terminal."""
    lines = [f"studies   {stats['studies']:,}   images {stats['images']:,}   patients {stats['patients']:,}   reports {stats['reports']:,}"]
    lines.append("splits    " + _pairs(stats["splits"], top))
    for axis in ("width", "height"):
        spread = stats["image_size"][axis]
        if spread:
            lines.append(f"{axis:<9} min {spread['min']:g}  median {spread['median']:g}  max {spread['max']:g}")
    for key in ("modalities", "views", "report_sections"):
        if stats[key]:
            lines.append(f"{key.replace('_', ' '):<9} " + _pairs(stats[key], top))
    for status, counts in stats["findings"].items():
        lines.append(f"findings ({status}) " + _pairs(counts, top))
    boxes = stats["boxes"]
    if boxes["total"]:
        per = boxes["per_study"]
        lines.append(
            f"boxes     {boxes['total']:,} on {boxes['studies_with_boxes']:,} studies "
            f"(per study min {per['min']:g}, median {per['median']:g}, max {per['max']:g})"
        )
        lines.append("box labels " + _pairs(boxes["labels"], top))
    qa = stats["qa"]
    if qa["total"]:
        lines.append(f"questions {qa['total']:,}: " + _pairs(qa["answer_types"], top))
        lines.append("question types " + _pairs(qa["question_types"], top))
    return "\n".join(lines)


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _pairs(counts: dict[str, int], top: int) -> str:
    items = list(counts.items())
    text = ", ".join(f"{name} {count:,}" for name, count in items[:top])
    return text + (f", ... ({len(items) - top} more)" if len(items) > top else "")
