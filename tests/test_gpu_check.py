"""benchmarks/gpu_check.py is ready for the GPU machine: its --smoke mode runs the same code on CPU with tiny shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_mode_trains_plans_and_decodes(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--results", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check_smoke.json").read_text())
    assert report["smoke"] and set(report["models"]) == {"gemma3", "qwen2.5-vl"}
    for entry in report["models"].values():
        training = entry["training"]
        assert training["step_s"] > 0 and training["mfu"] > 0 and training["planned_gib"] > 0
        assert 0 < training["trainable"] < training["parameters"]
        assert entry["decoding"]["radscribe_processor"]["seconds"] > 0
