"""Exporting every signed report of a data folder at once, each signature verified (``radscribe serve export``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from radscribe.data.manifest import atomic_write
from radscribe.serve import reports
from radscribe.serve.storage import Storage
from radscribe.templates import load_template

SUFFIXES = {"md": ".md", "json": ".json", "fhir": ".fhir.json"}


def export_signed(data_dir: Path | str, out: Path | str, format: str = "json") -> dict[str, Any]:
    """Write ``out/<study>.<suffix>`` for every signed report whose chain and content verify, and ``out/summary.json``.

    The chain is walked once (:meth:`Storage.verify_all_signatures`); a report that does not verify
    is listed under ``tampered`` with the reason and not written.
    """
    began = time.perf_counter()
    out = Path(out)
    storage = Storage(data_dir)
    try:
        tampered = storage.verify_all_signatures()
        exported = 0
        for row in storage.query("SELECT study_id FROM signatures ORDER BY id"):
            study_id = row["study_id"]
            if study_id in tampered:
                continue
            study = storage.study(study_id)
            signature = storage.signature(study_id)
            document = storage.edit(study_id, signature["edit_id"])["document"]
            template = load_template(study["template"])
            version = storage.count_edits(study_id)
            with atomic_write(out / f"{study_id}{SUFFIXES[format]}") as handle:
                if format == "md":
                    handle.write(reports.export_markdown(document, template))
                elif format == "json":
                    json.dump(reports.export_json(study, document, template, signature, version), handle, indent=1)
                else:
                    json.dump(reports.export_fhir(study, document, template, signature, version), handle, indent=1)
            exported += 1
        storage.audit("radscribe-cli", "export-signed", detail=f"{exported} exported, {len(tampered)} tampered, format {format}")
    finally:
        storage.close()
    summary = {"exported": exported, "tampered": tampered, "format": format, "seconds": round(time.perf_counter() - began, 3)}
    with atomic_write(out / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary
