"""The whole run: volumes + label maps + reports -> slice images and a manifest of grounded slice reports.

Per study (a volume file, a DICOM series folder, or a 2-D image): the report's mentions are mapped to
the schema; the slices where a mentioned class is present are selected (every k-th, at most
``max_slices``), rendered (CT windows or MR percentiles) and written as PNGs; each slice's masks become
boxes and the intersection rule grounds the mentions. Every slice with at least one grounded phrase is
one manifest study (canonical types; ``phrase_grounding`` and ``grounded_report`` read it as is).

The manifest is written as it goes into ``<out>.partial``; ``<out>.partial.done`` lists the finished
studies, so a stopped run continues where it stopped; both become ``out`` at the end.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radscribe.data.images import ImageReadError, is_dicom, read_image
from radscribe.data.manifest import relative_image_path, study_to_line
from radscribe.types import ImageRef, Study
from radscribe.volumes.ground import ground_slice
from radscribe.volumes.masks import Per, label_boxes, read_mask_png
from radscribe.volumes.mentions import ClassMention, MentionMapper
from radscribe.volumes.schema import ClassSchema
from radscribe.volumes.slices import Rendering, guess_modality, mr_range, render_slice, select_slices, write_png
from radscribe.volumes.volume import NIFTI_SUFFIXES, Volume, VolumeError, check_same_grid, is_nifti, read_volume, to_display, volume_id

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")  # 2-D images; a single .dcm file given by name is one too
GROUNDING_METHOD = "mask-mention-intersection"


@dataclass(frozen=True)
class GroundingOptions:
    every: int = 1                      # every k-th slice
    max_slices: int | None = 20         # per study, spread evenly over the selected slices
    min_area: int = 10                  # pixels; smaller components are noise
    per: Per = "class"                  # one box per class and side (RadGrounder) or per component
    modality: str = "auto"              # "CT", "MR", or "auto" (DICOM header, else the HU histogram)
    windows: tuple[str, ...] = ("lung", "soft_tissue", "bone")
    percentiles: tuple[float, float] = (0.5, 99.5)
    patient_left_on_image_right: bool = True  # radiological display; true for axial slices and PA films


@dataclass
class StudyOutcome:
    studies: list[Study] = field(default_factory=list)
    mentions: int = 0
    grounded_phrases: int = 0           # distinct grounded mentions of the report, over all its slices
    skipped: str | None = None          # why the study gave no slice
    mention_skips: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


@dataclass
class GroundingSummary:
    total: int = 0
    grounded_studies: int = 0
    resumed: int = 0
    slices: int = 0
    boxes: int = 0
    mentions: int = 0
    grounded_phrases: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mention_skips: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @property
    def phrases_per_grounded_report(self) -> float:
        """Grounded phrases per study that gave at least one slice (in this run)."""
        return self.grounded_phrases / self.grounded_studies if self.grounded_studies else 0.0


# ----- inputs -------------------------------------------------------------------------------------
def collect_studies(paths: Sequence[Path]) -> list[Path]:
    """Volume files, DICOM series folders and 2-D images from files and folders of them."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_file():
            found.append(path)
            continue
        children = sorted(path.iterdir())
        inputs = [c for c in children if c.is_file() and (is_nifti(c) or c.suffix.lower() in IMAGE_SUFFIXES)]
        series = [c for c in children if c.is_dir()]
        if not inputs and not series and any(is_dicom(c) for c in children if c.is_file()):
            found.append(path)  # the folder itself is one DICOM series
        else:
            found.extend(inputs + series)
    return found


def read_reports(path: Path) -> dict[str, str]:
    """Report text by study id: a JSONL file (``id`` with ``text``, ``report`` or ``findings``/``impression``)
    or a folder of ``<id>.txt`` files."""
    path = Path(path)
    if path.is_dir():
        return {file.stem: file.read_text(encoding="utf-8") for file in sorted(path.glob("*.txt"))}
    if not path.is_file():
        raise FileNotFoundError(f"reports not found: {path} (a JSONL file or a folder of <id>.txt)")
    reports: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise ValueError(f"{path}:{number}: field 'id': expected a string study id")
            text = record.get("text", record.get("report"))
            if isinstance(text, dict):
                text = " ".join(str(text.get(k, "")).strip() for k in ("findings", "impression") if text.get(k))
            if text is None:
                text = " ".join(str(record.get(k, "")).strip() for k in ("findings", "impression") if record.get(k))
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: field 'text': expected the report as a string")
            reports[record["id"]] = text
    return reports


def find_label_map(masks: Path, study_id: str) -> Path | None:
    """The label map of a study in a masks folder: ``<id>.nii.gz``/``.nii``/``.png``, or a ``<id>/`` folder
    of one binary mask per class (TotalSegmentator's default output). ``masks`` may also be the file itself."""
    if masks.is_file():
        return masks
    for suffix in (*NIFTI_SUFFIXES, ".png"):
        candidate = masks / f"{study_id}{suffix}"
        if candidate.is_file():
            return candidate
    folder = masks / study_id
    return folder if folder.is_dir() else None


def as_class_ids(data: np.ndarray, path: Path) -> np.ndarray:
    """A label map as non-negative integers (tools store ids as float too; fractions are an error)."""
    if data.dtype.kind == "f":
        if not np.all(np.mod(data[:: max(1, data.shape[0] // 64)], 1) == 0):
            raise VolumeError(f"{path}: label values must be whole class ids, found fractions (a probability map?)")
        data = data.astype(np.int32)
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iu" or (data.size and data.min() < 0):
        raise VolumeError(f"{path}: a label map holds non-negative integer class ids, got {data.dtype}")
    return data


def read_label_map(path: Path, schema: ClassSchema) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(labels, affine or None for 2-D, warnings): a multi-label file, or a folder of per-class masks named by class."""
    warnings: list[str] = []
    if path.is_file():
        if path.suffix.lower() == ".png":
            return read_mask_png(path), None, warnings
        labels = read_volume(path)
        return as_class_ids(np.asarray(labels.data), path), labels.affine, warnings
    ids = schema.ids
    combined: np.ndarray | None = None
    affine = None
    for file in sorted(path.iterdir()):
        name = volume_id(file)
        if name not in ids:
            warnings.append(f"{file}: no class '{name}' in schema {schema.name}; ignored")
            continue
        if file.suffix.lower() == ".png":
            mask, file_affine = read_mask_png(file), None
        else:
            volume = read_volume(file)
            mask, file_affine = np.asarray(volume.data), volume.affine
        if combined is None:
            combined = np.zeros(mask.shape, dtype=np.uint16 if max(ids.values()) < 65536 else np.int32)
            affine = file_affine
        elif mask.shape != combined.shape:
            raise VolumeError(f"{file}: mask shape {mask.shape} differs from the folder's other masks {combined.shape}")
        combined[mask > 0] = ids[name]
    if combined is None:
        raise VolumeError(f"{path}: no mask file named after a class of schema {schema.name}")
    return combined, affine, warnings


# ----- one study ----------------------------------------------------------------------------------
def ground_study(
    source: Path,
    label_path: Path,
    report: str,
    schema: ClassSchema,
    mapper: MentionMapper,
    manifest_path: Path,
    images_dir: Path,
    options: GroundingOptions = GroundingOptions(),
) -> StudyOutcome:
    """Ground one study; its slice images go to ``images_dir``, image paths are relative to ``manifest_path``."""
    outcome = StudyOutcome()
    study_id = volume_id(source)
    mentions = mapper.map_report(report)
    outcome.mentions = len(mentions)
    wanted = sorted({schema.ids[name] for m in mentions if m.status == "present" for name in m.classes})
    if not wanted:
        outcome.skipped = "no anatomy mention maps to a present class of the schema" if mentions else "no anatomy mention in the report"
        outcome.mention_skips.update("absent" for m in mentions if m.status == "absent")
        return outcome
    labels, label_affine, outcome.warnings = read_label_map(label_path, schema)
    if source.is_file() and (source.suffix.lower() in IMAGE_SUFFIXES or is_dicom(source)):
        return _ground_image(source, labels, report, mentions, schema, manifest_path, options, outcome)
    volume = read_volume(source)
    if label_affine is None:
        raise VolumeError(f"{label_path}: a 2-D mask for a volume ({source}); give a NIfTI label map")
    check_same_grid(volume, Volume(labels, label_affine, label_path))
    volume = to_display(volume)
    label_volume = to_display(Volume(labels, label_affine, label_path))
    present_slices, unknown = _slices_with(label_volume, wanted, set(schema.classes))
    if unknown:
        outcome.warnings.append(f"{label_path}: label ids {unknown[:10]} are not in schema {schema.name}; ignored")
    chosen = select_slices(volume.shape[2], options.every, present_slices, options.max_slices)
    if not chosen:
        _count_skips(mentions, set(), outcome)
        outcome.skipped = "no selected slice shows a mentioned class"
        return outcome
    modality = options.modality if options.modality != "auto" else (volume.modality if volume.modality in ("CT", "MR") else guess_modality(volume.data))
    rendering = Rendering(modality, options.windows if modality == "CT" else (), options.percentiles)
    bounds = mr_range(volume.data, options.percentiles) if modality == "MR" else None
    grounded_ids: set[tuple[int, int]] = set()
    for k in chosen:
        label_slice = label_volume.axial(k)
        height, width = label_slice.shape
        boxes = label_boxes(label_slice, schema, min_area=options.min_area, per=options.per,
                            patient_left_on_image_right=options.patient_left_on_image_right, source=f"mask:{schema.name}")
        result = ground_slice(report, mentions, boxes, (width, height), schema)
        if not result.grounded:
            continue
        image_path = images_dir / study_id / f"{study_id}_z{k:04d}.png"
        write_png(render_slice(volume.axial(k), rendering, bounds), image_path)
        grounded_ids.update(g.mention.span for g in result.grounded)
        slice_meta = {
            "source": str(source), "axis": "axial", "index": k, "count": volume.shape[2],
            "spacing_mm": [round(v, 4) for v in volume.spacing],
            "display": "patient right on image left, anterior at top",
            "z_mm": round(float((volume.affine @ np.array([0, 0, k, 1.0]))[2]), 3),
            "rendering": rendering.describe(),
        }
        outcome.studies.append(_slice_study(f"{study_id}_z{k:04d}", study_id, image_path, width, height, modality,
                                            manifest_path, result, schema, mapper, slice_meta))
    _count_skips(mentions, grounded_ids, outcome)
    if not outcome.studies:
        outcome.skipped = "no selected slice grounds a mention (classes present only below the minimum area)"
    return outcome


def _slices_with(labels: Volume, wanted: list[int], known: set[int]) -> tuple[list[int], list[int]]:
    """The axial slices holding any ``wanted`` id, and the ids of the map that the schema does not know.

    Counted slice by slice: a 512 x 512 x 300 map would need a 600 MB int64 copy counted at once.
    """
    slices, seen = [], set()
    for k in range(labels.shape[2]):
        counts = np.bincount(labels.data[:, :, k].ravel())
        ids = np.flatnonzero(counts)
        seen.update(ids.tolist())
        if any(i < len(counts) and counts[i] for i in wanted):
            slices.append(k)
    return slices, sorted(seen - known - {0})


def _ground_image(
    source: Path, labels: np.ndarray, report: str, mentions: list[ClassMention], schema: ClassSchema,
    manifest_path: Path, options: GroundingOptions, outcome: StudyOutcome,
) -> StudyOutcome:
    """A 2-D image (radiograph) with a 2-D label map: one slice, the image referenced where it lies."""
    try:
        image = read_image(source)
    except ImageReadError as error:
        raise VolumeError(str(error)) from None
    if labels.ndim != 2 or labels.shape != (image.height, image.width):
        raise VolumeError(f"{source}: the mask's shape {labels.shape} differs from the image's {(image.height, image.width)}")
    boxes = label_boxes(labels, schema, min_area=options.min_area, per=options.per,
                        patient_left_on_image_right=options.patient_left_on_image_right, source=f"mask:{schema.name}")
    result = ground_slice(report, mentions, boxes, (image.width, image.height), schema)
    _count_skips(mentions, {g.mention.span for g in result.grounded}, outcome)
    if not result.grounded:
        outcome.skipped = "no mentioned class is on the image"
        return outcome
    study_id = volume_id(source)
    outcome.studies.append(_slice_study(study_id, study_id, source, image.width, image.height, None, manifest_path,
                                        result, schema, None, {"source": str(source), "axis": "2d"}))
    return outcome


def _count_skips(mentions: list[ClassMention], grounded: set[tuple[int, int]], outcome: StudyOutcome) -> None:
    outcome.grounded_phrases = len(grounded)
    for mention in mentions:
        if mention.span in grounded:
            continue
        outcome.mention_skips["absent" if mention.status == "absent" else "class on no selected slice"] += 1


def _slice_study(
    slice_id: str, study_id: str, image_path: Path, width: int, height: int, modality: str | None,
    manifest_path: Path, result, schema: ClassSchema, mapper: MentionMapper | None, slice_meta: dict,
) -> Study:
    mapper_name = type(mapper).__name__ if mapper is not None else "lexicon"
    return Study(
        slice_id,
        [ImageRef(relative_image_path(manifest_path, image_path), width, height, modality=modality)],
        patient_id=study_id,
        report={"findings": result.text},
        boxes=result.boxes(f"mask:{schema.name}"),
        metadata={
            "grounding": {
                "method": GROUNDING_METHOD, "schema": schema.name, "mapper": mapper_name,
                "grounded_report": result.grounded_text,
                "phrases": [
                    {**g.mention.to_dict(), "boxes": [{"class": b.class_name, "side": b.side, "area": b.area} for b in g.boxes]}
                    for g in result.grounded
                ],
                "skipped": [{"text": m.text, "classes": list(m.classes), "reason": why} for m, why in result.skipped],
            },
            "slice": slice_meta,
        },
    )


# ----- a whole dataset, resumable ------------------------------------------------------------------
def ground_dataset(
    sources: Sequence[Path],
    masks: Path,
    reports: dict[str, str],
    schema: ClassSchema,
    mapper: MentionMapper,
    out: Path,
    options: GroundingOptions = GroundingOptions(),
    images_dir: Path | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> GroundingSummary:
    """Ground every study and write the manifest ``out`` (slice images under ``images_dir``, default ``<out stem>_slices/``)."""
    out = Path(out)
    images_dir = Path(images_dir) if images_dir is not None else out.with_name(f"{out.name.split('.')[0]}_slices")
    partial = out.with_name(out.name + ".partial")
    done_file = out.with_name(out.name + ".partial.done")
    done = _resume(partial, done_file)
    summary = GroundingSummary(total=len(sources), resumed=len(done))
    todo = [source for source in sources if volume_id(source) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as handle, done_file.open("a", encoding="utf-8") as done_handle:
        for number, source in enumerate(progress(todo, len(todo)) if progress else todo, start=1):
            study_id = volume_id(source)
            reason, outcome = _one(source, study_id, masks, reports, schema, mapper, out, images_dir, options)
            if outcome is not None:
                summary.mentions += outcome.mentions
                summary.grounded_phrases += outcome.grounded_phrases
                summary.mention_skips.update(outcome.mention_skips)
                summary.warnings.extend(outcome.warnings)
                if outcome.studies:
                    handle.write("".join(study_to_line(study) + "\n" for study in outcome.studies))
                    handle.flush()
                    summary.grounded_studies += 1
                    summary.slices += len(outcome.studies)
                    summary.boxes += sum(len(study.boxes) for study in outcome.studies)
                reason = reason or outcome.skipped
            if reason:
                summary.skipped.append((study_id, reason))
            done_handle.write(json.dumps({"id": study_id, "slices": len(outcome.studies) if outcome else 0, "skipped": reason}) + "\n")
            done_handle.flush()
            if number % 10 == 0 or number == len(todo):
                log.info("grounded %d of %d studies (%d slices so far)", number + summary.resumed, summary.total, summary.slices)
        os.fsync(handle.fileno())
    os.replace(partial, out)
    done_file.unlink()
    return summary


def _one(source, study_id, masks, reports, schema, mapper, out, images_dir, options) -> tuple[str | None, StudyOutcome | None]:
    report = reports.get(study_id)
    if report is None or not report.strip():
        return "no report for this study id", None
    label_path = find_label_map(Path(masks), study_id)
    if label_path is None:
        return f"no label map in {masks} (expected {study_id}.nii.gz, {study_id}.png or a {study_id}/ folder)", None
    try:
        return None, ground_study(source, label_path, report, schema, mapper, out, images_dir, options)
    except (VolumeError, ValueError, OSError) as error:
        return f"unreadable: {error}", None


def _resume(partial: Path, done_file: Path) -> set[str]:
    """Studies finished by a stopped run; manifest lines of an unfinished study (torn run) are dropped."""
    if not done_file.exists():
        partial.unlink(missing_ok=True)
        return set()
    done = set()
    for line in done_file.read_text(encoding="utf-8").splitlines():
        try:
            done.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            break
    kept = []
    if partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if record.get("patient_id") in done:
                kept.append(line)
        partial.write_text("".join(kept), encoding="utf-8")
    done_file.write_text("".join(json.dumps({"id": i}) + "\n" for i in sorted(done)), encoding="utf-8")
    return done
