"""Writing one result to disk: report.md, report.json, overlay.png, optional rfi.png and fhir.json."""

from __future__ import annotations

import json
from pathlib import Path

from radscribe.data.images import Radiograph, read_image
from radscribe.data.manifest import atomic_write
from radscribe.data.overlay import save_study_overlay
from radscribe.infer.fhir import diagnostic_report
from radscribe.infer.reporter import ReportResult
from radscribe.infer.rfi import save_rfi_overlay
from radscribe.templates import render
from radscribe.types import QA, ImageRef, Study


def result_markdown(result: ReportResult) -> str:
    """The report as markdown: the template rendered from the parsed values, else what the model wrote."""
    if result.task == "vqa":
        return f"**Question:** {result.question}\n\n**Answer:** {result.text}\n"
    body = render(result.filled) if result.filled is not None and not any(i.startswith("unparseable") for i in result.issues) else result.text + "\n"
    if result.grounding:
        body += "\n## Grounding\n" + "".join(f"- **{phrase}:** {text}\n" for phrase, text in result.grounding.items())
    if result.issues:
        body += "\n<!-- issues: " + "; ".join(result.issues).replace("--", "- -") + " -->\n"
    return body


def impression_text(result: ReportResult) -> str | None:
    if result.filled is None:
        return result.text if result.task == "vqa" else None
    value = result.filled.sections.get("impression", {}).get("text")
    return value if isinstance(value, str) else None


def write_result(result: ReportResult, folder: Path | str, *, fhir: bool = False, image: Radiograph | None = None, rfi_debug: bool = False) -> list[Path]:
    """Write the files for one image into ``folder`` (created); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    markdown = result_markdown(result)
    written = []
    with atomic_write(folder / "report.md") as handle:
        handle.write(markdown)
    written.append(folder / "report.md")
    with atomic_write(folder / "report.json") as handle:
        json.dump(result.to_dict(), handle, indent=2)
    written.append(folder / "report.json")
    image_path = Path(result.image)
    if image_path.exists():
        radiograph = image or read_image(image_path, frame=result.frame or 0)  # the frame reported on
        boxes = list(result.boxes)
        if result.crop is not None and not result.crop.note:
            boxes.append(result.crop.normalized())
        report = {"impression": impression_text(result) or ""}
        qa = [QA(result.question, result.text)] if result.question else []
        width, height = result.image_size or (None, None)
        study = Study(image_path.stem, [ImageRef(str(image_path.resolve()), width, height)], report=report, boxes=boxes, qa=qa)
        written.append(save_study_overlay(study, image_path, folder / "overlay.png", radiograph=radiograph))
        if rfi_debug and result.crop is not None and result.crop.pca is not None:
            written.append(save_rfi_overlay(radiograph, result.crop, folder / "rfi.png"))
    if fhir:
        with atomic_write(folder / "fhir.json") as handle:
            json.dump(diagnostic_report(result, markdown, impression_text(result)), handle, indent=2)
        written.append(folder / "fhir.json")
    return written

