"""Manifests in and out of the workstation: proposals imported as drafts to review, signed reports exported to train on.

SpineVLM's AI-assisted annotation loop: ``radscribe annotate spine --detect`` writes a manifest of
detector-proposed vertebra boxes and derived ``spine-ap-alignment`` templates (each study marked
``needs_review``); :func:`import_manifest` (``radscribe serve import``) turns every manifest study
into a workstation study whose draft is that proposal, so a radiologist opens it, corrects boxes and
template, and signs it like any model draft; :func:`training_study` (``radscribe serve export
--format manifest``) turns each signed report back into a manifest study that ``radscribe train``
reads (the corrected boxes and the signed template).

The draft of an imported study is the manifest's own template text (parsed, so every value is the
manifest's), its non-derived boxes as free boxes (vertebrae illustrate the vertebra count), and each
curve grounded by its span and apex recomputed from the vertebrae with the code that derived it,
where the recomputed curve has the same values (a hand-edited manifest keeps ungrounded curves).

Imports are idempotent and resumable: each study is committed on its own, keyed by the manifest's
study id and its image hashes, and a key imported before is skipped. The whole manifest is checked
before anything is imported, so a bad line (named by file, line and field) imports nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from radscribe.annotate import DERIVED_SOURCE, SPINE_TEMPLATE, spine_report_from_boxes
from radscribe.data.manifest import ManifestError, parse_line, resolve_image_path
from radscribe.serve import reports
from radscribe.serve.storage import Storage
from radscribe.serve.uploads import SUFFIXES, UploadRejected, check_upload
from radscribe.templates import FilledTemplate, GroundedFinding, Template, TemplateParseError, list_templates, load_template, parse, render
from radscribe.types import Box, ImageRef, Study

log = logging.getLogger(__name__)
IMPORT_ACTOR = "radscribe-cli"
REVIEWED_STATUS = "reviewed"
VERTEBRA_LABELS = frozenset({"vertebra", "vertebrae"})
MAX_IMAGE_BYTES = 200 * 1024 * 1024


@dataclass
class ImportSummary:
    studies: int = 0
    imported: int = 0
    already_imported: int = 0          # skipped: the same study id and images were imported before
    without_template: int = 0          # imported with boxes only (the proposal found no spine)
    study_ids: list[str] = field(default_factory=list)   # workstation ids, in manifest order


@dataclass
class _Line:
    number: int
    study: Study
    template: Template


def import_manifest(
    manifest: Path | str,
    data_dir: Path | str,
    *,
    template: str = SPINE_TEMPLATE,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> ImportSummary:
    """Import every study of ``manifest`` into the workstation at ``data_dir`` as a study with a draft to review.

    ``template`` is used for studies whose manifest line names none (a proposal without a spine).
    Raises :class:`ManifestError` (file, line, field) for a line that cannot be imported.
    """
    manifest = Path(manifest)
    lines = _checked_lines(manifest, template)
    summary = ImportSummary(studies=len(lines))
    storage = Storage(data_dir)
    try:
        for line in progress(lines, len(lines)) if progress else lines:
            hashes, sizes, payloads = [], [], []
            for index, ref in enumerate(line.study.images):
                data = resolve_image_path(manifest, ref.path).read_bytes()
                hashes.append(hashlib.sha256(data).hexdigest())
                payloads.append((index, ref, data))
            origin = {"manifest": str(manifest.resolve()), "line": line.number, "split": line.study.split,
                      "metadata": line.study.metadata}
            existing = storage.imported_study(line.study.id, hashes)
            if existing is not None:
                summary.study_ids.append(existing)
                summary.already_imported += 1
                continue
            for index, ref, data in payloads:
                try:
                    checked = check_upload(data, Path(ref.path).name, MAX_IMAGE_BYTES)
                except UploadRejected as error:
                    raise ManifestError(manifest, line.number, f"images[{index}].path", "a readable PNG, JPEG or DICOM radiograph",
                                        error.reason) from None
                storage.add_image(checked.data, checked.format, checked.width, checked.height)
                sizes.append((checked.width, checked.height))
            draft = proposal_draft(line.study, line.template, sizes[0])
            study_id, created = storage.import_study(line.study.id, hashes, line.template.name, draft, origin, IMPORT_ACTOR)
            summary.study_ids.append(study_id)
            summary.imported += created
            summary.already_imported += not created
            summary.without_template += created and not (line.study.structured or "").strip()
        storage.audit(IMPORT_ACTOR, "import-manifest", detail=f"{manifest}: {summary.imported} imported, "
                      f"{summary.already_imported} imported before, {summary.studies} in the manifest")
    finally:
        storage.close()
    log.info("imported %d of %d studies from %s (%d imported before)", summary.imported, summary.studies, manifest,
             summary.already_imported)
    return summary


def _checked_lines(manifest: Path, default_template: str) -> list[_Line]:
    """Every study of the manifest, checked before anything is imported: schema, unique ids, template, images present."""
    try:
        handle = manifest.open(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"manifest not found: {manifest}") from None
    known = set(list_templates())
    if default_template not in known:
        raise ValueError(f"--template: unknown template '{default_template}'; shipped: {', '.join(sorted(known))}")
    lines: list[_Line] = []
    seen: dict[str, int] = {}
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            study = parse_line(text, manifest, number)
            if study.id in seen:
                raise ManifestError(manifest, number, "id", f"a unique id (also on line {seen[study.id]})", study.id)
            seen[study.id] = number
            if not study.images:
                raise ManifestError(manifest, number, "images", "at least one image", [])
            name = study.template or default_template
            if name not in known:
                raise ManifestError(manifest, number, "template", f"a shipped template ({', '.join(sorted(known))})", name)
            for index, ref in enumerate(study.images):
                if not resolve_image_path(manifest, ref.path).is_file():
                    raise ManifestError(manifest, number, f"images[{index}].path",
                                        f"an image file (relative to {manifest.resolve().parent})", ref.path)
            template = load_template(name)
            if (study.structured or "").strip():
                try:
                    parse(study.structured, template)
                except TemplateParseError as error:
                    raise ManifestError(manifest, number, "structured", f"markdown of template '{name}' ({error})") from None
            lines.append(_Line(number, study, template))
    return lines


def proposal_draft(study: Study, template: Template, image_size: tuple[int, int]) -> dict[str, Any]:
    """The draft a manifest study stands for: ``model``, ``markdown``, ``document`` and ``result`` (see the module docstring)."""
    proposal = study.metadata.get("proposal") if isinstance(study.metadata.get("proposal"), dict) else {}
    model = str(proposal.get("detector") or f"manifest {study.id}")
    boxes = [box for box in study.boxes if box.source != DERIVED_SOURCE]
    markdown = (study.structured or "").strip()
    filled = parse(markdown, template) if markdown else None
    if filled is not None and template.name == SPINE_TEMPLATE:
        filled = _ground_curves(filled, boxes, image_size)
    document = reports.from_filled(filled, template, boxes)
    result = {
        "markdown": markdown,
        "boxes": [box.to_dict() for box in boxes],
        "model": {"name": model, "kind": "proposal"},
        "proposal": proposal,
    }
    return {"model": model, "markdown": markdown, "document": document, "result": result}


def _ground_curves(filled: FilledTemplate, boxes: list[Box], image_size: tuple[int, int]) -> FilledTemplate:
    """The manifest's curves, each given the span and apex boxes of the same curve recomputed from the vertebrae."""
    vertebrae = [box for box in boxes if box.image == 0 and box.label.casefold() in VERTEBRA_LABELS]
    recomputed, geometry = spine_report_from_boxes(vertebrae, image_size, str(filled.get("technique.projection") or "AP"))
    if geometry is None:
        return filled
    grounded = {_values_key(item.values): item.boxes for item in recomputed.get("alignment.curves") or []}
    out = filled.copy()
    out.set("alignment.curves", [
        GroundedFinding(dict(item.values), list(item.boxes) or list(grounded.get(_values_key(item.values), [])))
        for item in filled.get("alignment.curves") or []
    ])
    return out


def _values_key(values: dict[str, Any]) -> tuple:
    return tuple(sorted((key, str(value)) for key, value in values.items()))


def training_study(
    study: dict[str, Any], document: dict[str, Any], template: Template, signature: dict[str, Any], origin: dict[str, Any] | None,
    image_paths: list[str], default_split: str | None,
) -> Study:
    """A signed report as a manifest study for training: the signed template and every box not rejected.

    An imported study keeps its manifest id, split and metadata (its proposal marked ``reviewed``,
    the derived-geometry summary of the proposal dropped: the signed template replaces it); boxes
    keep their source (the detector's name where the radiologist accepted a proposal unchanged,
    ``human`` where they moved or drew it).
    """
    filled = reports.to_filled(document, template)
    boxes = [Box.from_dict(box) for box in document["boxes"] if box["decision"] != "rejected"]
    for items in document["findings"].values():
        boxes += [Box.from_dict(box) for item in items if item["decision"] != "rejected"
                  for box in item["boxes"] if box["decision"] != "rejected"]
    metadata = {key: value for key, value in ((origin or {}).get("metadata") or {}).items() if key != "spine_annotation"}
    if isinstance(metadata.get("proposal"), dict):
        metadata["proposal"] = {**metadata["proposal"], "status": REVIEWED_STATUS}
    metadata["review"] = {
        "status": "signed",
        "signer": signature["signer"],
        "signed_at": datetime.fromtimestamp(signature["signed_at"], timezone.utc).isoformat(),
        "workstation_study": study["id"],
        "signature_chain": signature["chain"],
    }
    images = [ImageRef(path, image["width"], image["height"]) for path, image in zip(image_paths, study["images"])]
    return Study(
        id=origin["source_id"] if origin else study["id"],
        images=images,
        split=(origin or {}).get("split") or default_split,
        template=template.name,
        structured=render(filled, template),
        boxes=[box for box in boxes if box.image < len(images)],
        metadata=metadata,
    )


def image_file_name(image: dict[str, Any]) -> str:
    """The exported file name of a stored image: its hash with the suffix of its format (DICOM readers need ``.dcm``)."""
    return f"{image['sha256']}{SUFFIXES[image['format']]}"
