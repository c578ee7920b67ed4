"""Where a benchmark number came from: every result file records the commit, version, command and machine.

Every script in ``benchmarks/`` ends with :func:`write_result`, which stamps a ``provenance`` block
into its JSON and writes ``benchmarks/results/<name>.json`` atomically (a killed run never leaves a
half-written result)::

    from provenance import write_result
    write_result("import_cadma", {"median_wall_s": 0.71, ...})

``python benchmarks/<script>.py`` puts this folder on ``sys.path``, so the plain import works.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def provenance() -> dict[str, Any]:
    """Commit (with a dirty flag), radscribe version, the command line, machine and time of this run."""
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "radscribe_version": _radscribe_version(),
        "command": " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "torch_threads": _torch_threads(),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict[str, Any], folder: Path = RESULTS) -> Path:
    """Stamp ``result`` with :func:`provenance`, write ``folder/<name>.json`` atomically, print it; returns the path."""
    from radscribe.data.manifest import atomic_write

    stamped = {**result, "provenance": provenance()}
    path = folder / f"{name}.json"
    with atomic_write(path) as handle:
        json.dump(stamped, handle, indent=2)
        handle.write("\n")
    print(json.dumps(stamped, indent=2))
    return path


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _radscribe_version() -> str | None:
    try:
        import radscribe
    except ImportError:
        return None
    return radscribe.__version__


def _torch_threads() -> int | None:
    if "torch" not in sys.modules:  # only report what the benchmark itself used
        return None
    return sys.modules["torch"].get_num_threads()
