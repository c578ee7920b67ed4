"""SpineVLM's AI-assisted annotation: the vertebra detector proposes boxes on films that have none.

Each image becomes a study whose vertebra boxes come from the detector (``source`` = the detector's
name, ``score`` = its confidence) and whose ``spine-ap-alignment`` template is derived from them by
the same code that derives it from human boxes (:mod:`radscribe.annotate`), with the study marked
``needs_review``: a radiologist corrects boxes and template, and the corrected manifest trains the
next model. Review overlays show the proposals.

The manifest is written as it goes into ``<out>.partial`` and renamed to ``out`` at the end; a run that
was stopped continues with the images it had not done yet.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from radscribe.annotate import annotate_spine_study
from radscribe.data.images import ImageReadError, check_radiograph, read_image
from radscribe.data.manifest import relative_image_path
from radscribe.types import ImageRef, Study

log = logging.getLogger(__name__)
PROPOSAL_STATUS = "needs_review"


@dataclass
class ProposalSummary:
    images: int = 0
    proposed: int = 0               # studies written with a derived template
    without_spine: int = 0          # studies written with fewer than three vertebrae (no template)
    resumed: int = 0                # done by an earlier run of the same output
    failed: list[tuple[str, str]] = field(default_factory=list)


def propose_spine_manifest(
    images: Sequence[Path],
    out: Path | str,
    detector: object,
    *,
    overlays_dir: Path | str | None = None,
    batch_size: int = 8,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> ProposalSummary:
    """Detect vertebrae on ``images`` and write a manifest of proposed, template-annotated studies to ``out``."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    done = _done_ids(partial)
    summary = ProposalSummary(images=len(images), resumed=len(done))
    todo = [path for path in images if _study_id(path) not in done]
    overlays = Path(overlays_dir) if overlays_dir is not None else None
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("a", encoding="utf-8") as handle:
        for batch in progress(batches, len(batches)) if progress else batches:
            readable = []
            for path in batch:
                try:
                    readable.append((path, check_radiograph(read_image(path))))
                except (ImageReadError, OSError, ValueError) as error:
                    summary.failed.append((str(path), str(error)))
            found = detector.detect([image for _, image in readable]) if readable else []
            for (path, image), boxes in zip(readable, found):
                study = Study(
                    _study_id(path),
                    [ImageRef(relative_image_path(out, path), image.width, image.height)],
                    boxes=[box for box in boxes],
                    metadata={"proposal": {"status": PROPOSAL_STATUS, "detector": detector.config.name, "boxes": len(boxes)}},
                )
                annotated, geometry = annotate_spine_study(study, out.resolve().parent, overlays_dir=overlays)
                summary.proposed += geometry is not None
                summary.without_spine += geometry is None
                handle.write(json.dumps({"version": 1, **annotated.to_dict()}) + "\n")
                handle.flush()
            log.info("proposed %d of %d images", summary.proposed + summary.without_spine + summary.resumed, summary.images)
        os.fsync(handle.fileno())
    os.replace(partial, out)
    return summary


def _study_id(path: Path) -> str:
    return Path(path).stem


def _done_ids(partial: Path) -> set[str]:
    """Study ids already written by a stopped run (a torn last line is dropped and redone)."""
    if not partial.exists():
        return set()
    lines = partial.read_text(encoding="utf-8").splitlines(keepends=True)
    kept, ids = [], set()
    for line in lines:
        try:
            ids.add(json.loads(line)["id"])
            kept.append(line)
        except (json.JSONDecodeError, KeyError):
            break
    if len(kept) != len(lines):
        partial.write_text("".join(kept), encoding="utf-8")
    return ids
