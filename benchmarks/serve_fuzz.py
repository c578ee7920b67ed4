"""The schemathesis fuzz of the workstation API (tests/test_serve_fuzz.py) with a chosen budget: cases, errors, time.

    python benchmarks/serve_fuzz.py [--examples 15]

Runs the fuzz test in a pytest subprocess with ``RADSCRIBE_FUZZ_EXAMPLES`` generated requests per
operation and records what it counted: cases sent, server errors (5xx), failed schema checks
(undocumented status, wrong content type or headers, a body that does not match the response
schema), answers by status code, and the wall time. Writes benchmarks/results/serve_fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "tally.json"
        environment = {**os.environ, "RADSCRIBE_FUZZ_EXAMPLES": str(args.examples), "RADSCRIBE_FUZZ_REPORT": str(report)}
        began = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_serve_fuzz.py"],
                             cwd=ROOT, env=environment, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        tally = json.loads(report.read_text()) if report.exists() else {}
    print(run.stdout[-3000:])
    write_result("serve_fuzz", {
        "benchmark": "serve_fuzz", "examples_per_operation": args.examples, "pytest_exit_code": run.returncode,
        "cases": tally.get("cases", 0), "server_errors": tally.get("server_errors", 0),
        "schema_check_failures": tally.get("failures", 0),
        "status_codes": {key[7:]: value for key, value in sorted(tally.items()) if key.startswith("status_")},
        "checks": ["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance"],
        "wall_seconds": round(seconds, 1),
        "machine_note": f"shared 2-core machine (load average {os.getloadavg()[0]:.1f} at the end)",
    })


if __name__ == "__main__":
    main()
