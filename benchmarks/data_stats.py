"""Import every shared dataset to a temporary folder and record `radscribe data stats --json` for each.

Writes benchmarks/results/data_stats.json: {dataset: stats}. Datasets absent from ../shared/data are
listed as skipped.

    python benchmarks/data_stats.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATASETS = {
    "spine-cadma": ("cadma", SHARED / "spine-cadma"),
    "vqa-rad": ("vqa-rad", SHARED / "vqa-rad"),
    "nih-cxr14-621": ("nih-cxr14", SHARED / "nih-cxr14-621"),
    "iu-xray-reports": ("iu-xray", SHARED / "iu-xray-reports"),
}


def main() -> None:
    executable = shutil.which("radscribe") or str(Path(sys.executable).with_name("radscribe"))
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (kind, source) in DATASETS.items():
            if not source.exists():
                results[name] = {"skipped": f"not found: {source}"}
                continue
            out = Path(folder) / f"{name}.jsonl"
            subprocess.run([executable, "data", "import", kind, str(source), "--out", str(out)], check=True, capture_output=True)
            stats = subprocess.run([executable, "data", "stats", str(out), "--json"], check=True, capture_output=True, text=True)
            results[name] = {"importer": kind, **json.loads(stats.stdout)}
            print(f"{name}: {results[name]['studies']} studies", file=sys.stderr)
    write_result("data_stats", results)


if __name__ == "__main__":
    main()
