"""Exporting every signed report of a data folder at once, each signature verified (``radscribe serve export``).

Formats ``md``, ``json`` and ``fhir`` write one file per report; ``manifest`` writes one training
manifest (``manifest.jsonl``, see :func:`radscribe.serve.manifests.training_study`) with the images
beside it in ``images/`` (named by hash), which ``radscribe train`` reads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from radscribe.data.manifest import atomic_write, study_to_line
from radscribe.serve import reports
from radscribe.serve.manifests import image_file_name, training_study
from radscribe.serve.storage import Storage
from radscribe.templates import load_template

SUFFIXES = {"md": ".md", "json": ".json", "fhir": ".fhir.json"}
FORMATS = (*SUFFIXES, "manifest")
MANIFEST_FILE = "manifest.jsonl"
MANIFEST_IMAGES = "images"


def export_signed(data_dir: Path | str, out: Path | str, format: str = "json", split: str | None = "train") -> dict[str, Any]:
    """Write ``out/<study>.<suffix>`` for every signed report whose chain and content verify, and ``out/summary.json``.

    ``format="manifest"`` writes ``out/manifest.jsonl`` and ``out/images/`` instead; ``split`` is the
    split of studies that bring none from an imported manifest.

    The chain is walked once (:meth:`Storage.verify_all_signatures`); a report that does not verify
    is listed under ``tampered`` with the reason and not written.
    """
    began = time.perf_counter()
    out = Path(out)
    storage = Storage(data_dir)
    try:
        tampered = storage.verify_all_signatures()
        exported = 0
        training = []
        used_ids: set[str] = set()
        for row in storage.query("SELECT study_id FROM signatures ORDER BY id"):
            study_id = row["study_id"]
            if study_id in tampered:
                continue
            study = storage.study(study_id)
            signature = storage.signature(study_id)
            document = storage.edit(study_id, signature["edit_id"])["document"]
            template = load_template(study["template"])
            version = storage.count_edits(study_id)
            if format == "manifest":
                paths = [_export_image(storage, image, out) for image in study["images"]]
                item = training_study(study, document, template, signature, storage.import_origin(study_id), paths, split)
                if item.id in used_ids:
                    item.id = f"{item.id}-{study_id}"  # the same manifest study imported with other images
                used_ids.add(item.id)
                training.append(item)
                exported += 1
                continue
            with atomic_write(out / f"{study_id}{SUFFIXES[format]}") as handle:
                if format == "md":
                    handle.write(reports.export_markdown(document, template))
                elif format == "json":
                    json.dump(reports.export_json(study, document, template, signature, version), handle, indent=1)
                else:
                    json.dump(reports.export_fhir(study, document, template, signature, version), handle, indent=1)
            exported += 1
        if format == "manifest":
            with atomic_write(out / MANIFEST_FILE) as handle:
                handle.writelines(study_to_line(item) + "\n" for item in training)
        storage.audit("radscribe-cli", "export-signed", detail=f"{exported} exported, {len(tampered)} tampered, format {format}")
    finally:
        storage.close()
    summary = {"exported": exported, "tampered": tampered, "format": format, "seconds": round(time.perf_counter() - began, 3)}
    with atomic_write(out / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def _export_image(storage: Storage, image: dict[str, Any], out: Path) -> str:
    """Copy a stored image next to the manifest (once; the name is its hash) and return its manifest path."""
    relative = f"{MANIFEST_IMAGES}/{image_file_name(image)}"
    target = out / relative
    if not target.exists():
        with atomic_write(target, "wb") as handle:
            handle.write(storage.images.read(image["sha256"]))
    return relative
