"""What training the embedded model cost and reached: a summary of a `radscribe train` run folder.

    /usr/bin/time -v radscribe train configs/radscribe-tiny.yaml --run-dir runs/radscribe-tiny 2> runs/radscribe-tiny.time
    python benchmarks/train_embedded.py runs/radscribe-tiny --time-logs runs/radscribe-tiny.time

Reads the run's result.json and metrics.jsonl (validation losses per stage, examples drawn per task)
and, when given, the GNU ``time -v`` logs of the process(es) that ran it: a run interrupted and
resumed has one log per process, and the wall times add up while peak memory is the largest.
Writes benchmarks/results/train_embedded.json (or --out) and copies the loss curve beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def parse_time_log(path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) from a GNU ``time -v`` log."""
    text = path.read_text(encoding="utf-8", errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        sys.exit(f"{path}: not a GNU time -v log (no 'Elapsed (wall clock)' / 'Maximum resident set size' line)")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds, int(rss.group(1)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--time-logs", type=Path, nargs="*", default=[])
    parser.add_argument("--note", default="", help="what the logs do not show (e.g. segments run without time -v)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_embedded.json")
    args = parser.parse_args()

    result = json.loads((args.run_dir / "result.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    valid = [{"step": r["step"], "stage": r["stage"], "loss": round(r["loss"], 4),
              "task_loss": {k: round(v, 4) for k, v in r["task_loss"].items()}} for r in records if r.get("kind") == "valid"]
    stages = [{"stage": r["stage"], "from_step": r["step"], "tasks": r["tasks"]} for r in records if r.get("kind") == "stage"]
    summary = {
        "benchmark": "train_embedded",
        "command": " ".join(["python benchmarks/train_embedded.py", str(args.run_dir),
                             *(["--time-logs", *map(str, args.time_logs)] if args.time_logs else []),
                             *([f"--note {json.dumps(args.note)}"] if args.note else [])]),
        "recipe": "configs/radscribe-tiny.yaml",
        "steps": result["steps"],
        "stages": stages,
        "validation": valid,
        "final_model": result["final_model"],
        "weights_bytes": (Path(result["final_model"]) / "model.safetensors").stat().st_size,
    }
    if args.time_logs:
        measured = [parse_time_log(path) for path in args.time_logs]
        summary["wall_s"] = round(sum(wall for wall, _ in measured), 1)
        summary["peak_rss_gib"] = round(max(rss for _, rss in measured), 2)
        summary["processes_timed"] = len(measured)
    if args.note:
        summary["note"] = args.note
    write_result(args.out.stem, summary, args.out.parent)
    shutil.copyfile(args.run_dir / "loss_curve.png", args.out.with_name(args.out.stem + "_loss_curve.png"))


if __name__ == "__main__":
    main()
