"""Time `radscribe data import cadma` on the CADMA train split (926 images, 14,773 boxes).

Runs the CLI as a subprocess N times and reports the median wall time and the peak resident memory
of the children (RUSAGE_CHILDREN ru_maxrss, KiB on Linux). Writes benchmarks/results/import_cadma.json.

    python benchmarks/import_cadma.py [--runs 5] [--source ../shared/data/spine-cadma/train]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "spine-cadma" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"CADMA not found at {args.source} (see ../shared/data/README.md)")
    executable = shutil.which("radscribe") or str(Path(sys.executable).with_name("radscribe"))

    times = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "cadma.jsonl"
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([executable, "data", "import", "cadma", str(args.source), "--out", str(out)], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        studies = sum(1 for _ in out.open())
        boxes = sum(line.count('"label"') for line in out.open())
    peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    result = {
        "command": f"radscribe data import cadma {args.source} --out OUT",
        "runs": args.runs,
        "studies": studies,
        "boxes": boxes,
        "median_wall_s": round(statistics.median(times), 3),
        "min_wall_s": round(min(times), 3),
        "max_wall_s": round(max(times), 3),
        "images_per_s": round(studies / statistics.median(times), 1),
        "peak_rss_mib": round(peak_rss_mib, 1),
    }
    write_result("import_cadma", result)


if __name__ == "__main__":
    main()
