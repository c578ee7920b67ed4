"""Manifest in, annotated manifest out: every study gets a filled template or an explicit status.

Each output study carries ``metadata[<kind>_annotation]`` with ``status`` (``annotated`` or
``skipped``), a ``reason`` when skipped, and for annotated studies ``valid`` plus the ``issues`` that
:func:`~radscribe.templates.validate` found after parsing the rendered markdown back. Nothing is
dropped silently. Image paths are rewritten relative to the output manifest, which is written
atomically. Running again on an annotated manifest gives the same result (derived boxes are
replaced, not added).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from radscribe.annotate.chest import CHEST_TEMPLATE, WEAK_LABEL_SOURCE, chest_template_from_labels
from radscribe.annotate.overlay import draw_spine_overlay
from radscribe.annotate.spine import ANGLE_METHOD, LevelAnchor, SpineGeometry, SpineGeometryError, analyze_spine
from radscribe.annotate.spine_report import DERIVED_SOURCE, SPINE_TEMPLATE, spine_boxes, spine_template
from radscribe.data.images import ImageReadError, read_image, read_image_size
from radscribe.data.manifest import read_manifest, relative_image_path, resolve_image_path, write_manifest
from radscribe.templates import FilledTemplate, TemplateParseError, parse, render, validate
from radscribe.types import Study

VERTEBRA_LABELS = frozenset({"vertebra", "vertebrae"})
Progress = Callable[[Iterable[Study], int], Iterator[Study]]


@dataclass
class AnnotationSummary:
    total: int = 0
    annotated: int = 0
    valid: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (study id, reason)
    severity: Counter[str] = field(default_factory=Counter)        # spine: overall severity per study
    values: Counter[str] = field(default_factory=Counter)          # chest: "field=value" counts

    @property
    def valid_share(self) -> float:
        return self.valid / self.annotated if self.annotated else 0.0


def check_markdown(markdown: str, template: str) -> list[str]:
    """Issues with rendered markdown, found by parsing it back and validating (empty when valid)."""
    try:
        return [str(issue) for issue in validate(parse(markdown, template))]
    except TemplateParseError as error:
        return [f"unparseable: {error}"]


def annotate_spine_study(
    study: Study,
    manifest_dir: Path,
    *,
    level_anchor: LevelAnchor = "bottom-L5",
    overlays_dir: Path | None = None,
) -> tuple[Study, SpineGeometry | None]:
    """Annotate one study from the vertebra boxes of its first image; returns the new study and its geometry."""
    kept = [box for box in study.boxes if box.source != DERIVED_SOURCE]
    vertebrae = [box for box in kept if box.image == 0 and box.label.casefold() in VERTEBRA_LABELS]
    base = replace(study, boxes=kept, template=None, structured=None, metadata=dict(study.metadata))
    if not study.images:
        return _skipped(base, "spine", "the study has no image"), None
    image_path = Path(study.images[0].path)
    image_path = image_path if image_path.is_absolute() else manifest_dir / image_path
    try:
        size = _image_size(study, image_path)
        geometry = analyze_spine(vertebrae, size, level_anchor=level_anchor)
    except (SpineGeometryError, ImageReadError) as error:
        return _skipped(base, "spine", str(error)), None
    projection = study.images[0].view if study.images[0].view in ("AP", "PA") else "AP"
    filled = spine_template(geometry, projection=projection)
    markdown = render(filled)
    issues = check_markdown(markdown, SPINE_TEMPLATE)
    base.template, base.structured = SPINE_TEMPLATE, markdown
    base.boxes = kept + spine_boxes(geometry)
    base.metadata["spine_annotation"] = {
        "status": "annotated",
        "valid": not issues,
        "issues": issues,
        "angle_method": ANGLE_METHOD,
        "level_anchor": level_anchor,
        "levels_estimated": True,
        "max_angle": round(geometry.max_angle, 1),
        "severity": geometry.severity,
        "vertebrae": len(geometry.boxes),
    }
    if overlays_dir is not None:
        try:
            draw_spine_overlay(read_image(image_path), geometry, overlays_dir / f"{study.id}.png")
        except ImageReadError as error:
            base.metadata["spine_annotation"]["overlay_error"] = str(error)
    return base, geometry


def annotate_chest_study(study: Study) -> Study:
    """Fill ``chest-pa`` from the study's NIH image labels (weak labels, stated in the output)."""
    base = replace(study, template=None, structured=None, metadata=dict(study.metadata))
    if not study.findings:
        return _skipped(base, "chest", "the study has no image labels")
    view = study.images[0].view if study.images else None
    fill = chest_template_from_labels(study.findings, [b for b in study.boxes if b.image == 0], projection=view or study.metadata.get("view"))
    markdown = render(fill.filled)
    issues = check_markdown(markdown, CHEST_TEMPLATE)
    if fill.unmapped:
        issues.append(f"labels not in the NIH mapping, left out: {', '.join(fill.unmapped)}")
    base.template, base.structured = CHEST_TEMPLATE, markdown
    base.metadata["chest_annotation"] = {
        "status": "annotated",
        "valid": not issues,
        "issues": issues,
        "label_source": WEAK_LABEL_SOURCE,
        "finding_sources": sorted({finding.source for finding in study.findings}),
        "mapping": "radscribe/templates/specs/label-mapping.yaml",
    }
    return base


def annotate_spine_manifest(
    manifest: Path | str,
    out: Path | str,
    overlays_dir: Path | str | None = None,
    *,
    level_anchor: LevelAnchor = "bottom-L5",
    progress: Progress | None = None,
) -> AnnotationSummary:
    """Annotate every study of a CADMA-style manifest (vertebra boxes) into ``out``; PNG overlays optional."""
    manifest, out = Path(manifest), Path(out)
    studies = read_manifest(manifest)
    overlays = Path(overlays_dir) if overlays_dir is not None else None
    summary = AnnotationSummary(total=len(studies))

    def annotated() -> Iterator[Study]:
        for study in progress(studies, len(studies)) if progress else studies:
            result, _ = annotate_spine_study(study, manifest.resolve().parent, level_anchor=level_anchor, overlays_dir=overlays)
            _count(summary, result, "spine_annotation")
            if result.template is not None:
                summary.severity[result.metadata["spine_annotation"]["severity"]] += 1
            yield _relocate(result, manifest, out)

    write_manifest(annotated(), out)
    return summary


def annotate_chest_manifest(manifest: Path | str, out: Path | str, *, progress: Progress | None = None) -> AnnotationSummary:
    """Fill ``chest-pa`` for every study of an NIH ChestX-ray14 manifest into ``out``."""
    manifest, out = Path(manifest), Path(out)
    studies = read_manifest(manifest)
    summary = AnnotationSummary(total=len(studies))

    def annotated() -> Iterator[Study]:
        for study in progress(studies, len(studies)) if progress else studies:
            result = annotate_chest_study(study)
            _count(summary, result, "chest_annotation")
            yield _relocate(result, manifest, out)

    write_manifest(annotated(), out)
    return summary


def filled_of(study: Study) -> FilledTemplate:
    """The filled template a study holds (parsed from ``structured``)."""
    if study.template is None or study.structured is None:
        raise ValueError(f"study '{study.id}' has no structured report")
    return parse(study.structured, study.template)


def _image_size(study: Study, path: Path) -> tuple[int, int]:
    image = study.images[0]
    if image.width and image.height:
        return image.width, image.height
    return read_image_size(path)


def _skipped(study: Study, kind: str, reason: str) -> Study:
    study.metadata[f"{kind}_annotation"] = {"status": "skipped", "reason": reason}
    return study


def _count(summary: AnnotationSummary, study: Study, key: str) -> None:
    record = study.metadata[key]
    if record["status"] == "skipped":
        summary.skipped.append((study.id, record["reason"]))
        return
    summary.annotated += 1
    summary.valid += bool(record["valid"])
    if key == "chest_annotation":
        for section, values in filled_of(study).sections.items():
            for name, value in values.items():
                if isinstance(value, str) and value in ("present", "uncertain"):
                    summary.values[f"{section}.{name}={value}"] += 1


def _relocate(study: Study, source: Path, out: Path) -> Study:
    """Image paths relative to the output manifest's folder."""
    if source.resolve().parent == out.resolve().parent:
        return study
    study.images = [
        replace(image, path=relative_image_path(out, resolve_image_path(source, image.path))) for image in study.images
    ]
    return study
