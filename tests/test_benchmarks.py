"""benchmarks/: every result file has its script and a row in benchmarks/README.md; results carry their provenance."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import radscribe

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def script_of(result_name: str, scripts: set[str]) -> str | None:
    """The script a result belongs to: ``<script>.<ext>`` or ``<script>_<variant>...``; the longest name wins."""
    stem = result_name.split(".")[0]
    candidates = [script for script in scripts if stem == script or stem.startswith(f"{script}_")]
    return max(candidates, key=len, default=None)


def readme_rows() -> dict[str, str]:
    """Result name -> script, from the table in benchmarks/README.md."""
    rows = {}
    for line in (BENCHMARKS / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].endswith(".py`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name.rstrip("/")] = cells[1].strip("`")
    return rows


def test_every_result_has_a_script_of_its_name_and_a_row_saying_how_to_rerun_it():
    scripts = {path.stem for path in BENCHMARKS.glob("*.py")} - {"provenance"}
    rows = readme_rows()
    for entry in sorted((BENCHMARKS / "results").iterdir()):
        script = script_of(entry.name, scripts)
        assert script is not None, f"benchmarks/results/{entry.name}: no script in benchmarks/ named like it"
        assert entry.name in rows, f"benchmarks/results/{entry.name}: no row in the table of benchmarks/README.md"
        assert rows[entry.name] == f"{script}.py", f"{entry.name}: the README names {rows[entry.name]}, expected {script}.py"
    for name in rows:
        assert (BENCHMARKS / "results" / name).exists(), f"benchmarks/README.md lists {name}, which is not in benchmarks/results/"


def test_write_result_stamps_commit_version_command_and_machine(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import provenance

    path = provenance.write_result("example", {"value": 1.5}, tmp_path)
    assert path == tmp_path / "example.json"
    stamped = json.loads(path.read_text(encoding="utf-8"))
    assert stamped["value"] == 1.5
    stamp = stamped["provenance"]
    assert stamp["radscribe_version"] == radscribe.__version__
    assert Path(sys.argv[0]).name in stamp["command"]
    assert "cores" in stamp["machine"] and stamp["finished_utc"].endswith("+00:00")
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", stamp["commit"]) and isinstance(stamp["dirty"], bool)
    assert [p.name for p in tmp_path.iterdir()] == ["example.json"]  # nothing half-written left beside it
