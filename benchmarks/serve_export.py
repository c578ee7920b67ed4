"""Time to export 1,000 signed reports with every signature verified (chain and signed content).

    python benchmarks/serve_export.py [--reports 1000] [--format json]

Builds a data folder with one bundled CADMA image and ``--reports`` studies, each with a complete
saved report signed through :class:`radscribe.serve.Storage` (the code the API calls), then runs
``radscribe serve export`` (:func:`radscribe.serve.bulk.export_signed`): the chain is walked once,
each signed document's hash recomputed, one file per report written atomically. Also times the
per-request check the API's export makes (:meth:`Storage.verify_signature`, the chain up to that
report) for every report. Writes benchmarks/results/serve_export.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from provenance import write_result
from radscribe.serve.bulk import export_signed
from radscribe.serve.storage import Storage

SAMPLE = sorted((Path(__file__).resolve().parents[1] / "src/radscribe/samples/cadma/valid/images").glob("*.jpg"))[0]
DOCUMENT = {"template": "spine-ap-alignment",
            "fields": {"technique.projection": "AP", "vertebrae.count": 12, "vertebrae.levels": "T6-L5",
                       "alignment.alignment": "normal", "alignment.severity": "none"},
            "findings": {"alignment.curves": []},
            "boxes": [{"label": "vertebra", "x_min": 0.4, "y_min": 0.2, "x_max": 0.6, "y_max": 0.3, "source": "human", "decision": "accepted"}],
            "impression": "No scoliosis."}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--format", default="json", choices=["md", "json", "fhir"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        storage = Storage(data)
        width, height = Image.open(SAMPLE).size
        image = storage.add_image(SAMPLE.read_bytes(), "jpeg", width, height)
        began = time.perf_counter()
        studies = []
        for number in range(args.reports):
            study = storage.create_study("spine-ap-alignment", [image.sha256])
            saved = storage.save_edit(study, "dr.bench", {**DOCUMENT, "impression": f"No scoliosis ({number})."}, '"0"')
            storage.sign(study, "dr.bench", saved["etag"])
            studies.append(study)
        signing_s = time.perf_counter() - began
        began = time.perf_counter()
        for study in studies:
            storage.verify_signature(study)
        per_request_s = time.perf_counter() - began
        storage.close()
        summary = export_signed(data, Path(folder) / "export", args.format)
        written = len(list((Path(folder) / "export").glob("*"))) - 1
    write_result("serve_export", {
        "benchmark": "serve_export", "reports": args.reports, "format": args.format,
        "export_seconds": summary["seconds"], "exported": summary["exported"], "files_written": written,
        "tampered": len(summary["tampered"]),
        "reports_per_s": round(summary["exported"] / summary["seconds"], 1),
        "api_verify_each_seconds_total": round(per_request_s, 3),
        "save_and_sign_seconds_total": round(signing_s, 2),
        "machine_note": "shared 2-core machine with other jobs running",
    })


if __name__ == "__main__":
    main()
