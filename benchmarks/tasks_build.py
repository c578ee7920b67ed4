"""Examples per task on the shared data sets, build time, and target length per box codec.

Usage: python benchmarks/tasks_build.py [--data ../shared/data] [--repeats 3]

Imports each shared data set (CADMA spine, VQA-RAD, NIH ChestX-ray14 subset, IU X-ray reports) into a
temporary manifest, then builds every task's examples with each box codec. Reports, per data set:
studies, examples per task (IU reports as text-only ``report`` examples, the only task its
image-less studies support), the build time (best of ``--repeats``, excluding the import), and
the mean target length in characters of the grounding tasks per codec (how verbose each format is).
Writes benchmarks/results/tasks_build.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from provenance import write_result

from radscribe.data import read_manifest
from radscribe.data.importers import import_dataset
from radscribe.grounding import list_codecs
from radscribe.tasks import TASKS, build_examples

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = {  # importer name -> folder under the shared data
    "cadma": "spine-cadma",
    "vqa-rad": "vqa-rad",
    "nih-cxr14": "nih-cxr14-621",
    "iu-xray": "iu-xray-reports",
}
GROUNDING_TASKS = ("grounded_report", "phrase_grounding", "region")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, folder in DATASETS.items():
            source = args.data / folder
            if not source.exists():
                print(f"skip {kind}: {source} not found")
                continue
            manifest = Path(scratch) / f"{kind}.jsonl"
            started = time.perf_counter()
            import_dataset(kind, source, manifest)
            import_seconds = time.perf_counter() - started
            studies = read_manifest(manifest)
            options = {"report": {"allow_text_only": True}, "structured_report": {"allow_text_only": True}}
            timings, per_codec = [], {}
            for codec in list_codecs():
                for _ in range(args.repeats if codec == "radscribe" else 1):
                    started = time.perf_counter()
                    built = build_examples(studies, Path(scratch), list(TASKS), codec, options)
                    if codec == "radscribe":
                        timings.append(time.perf_counter() - started)
                per_codec[codec] = {
                    task: round(statistics.fmean(len(e.target) for e in built if e.task == task), 1)
                    for task in GROUNDING_TASKS
                    if built.counts[task]
                }
                if codec == "radscribe":
                    counts = built.counts
            results[kind] = {
                "studies": len(studies),
                "examples_per_task": counts,
                "examples_total": sum(counts.values()),
                "import_seconds": round(import_seconds, 3),
                "build_seconds_best": round(min(timings), 3),
                "mean_target_chars_by_codec": per_codec,
            }

    print(f"{'data set':<10} {'studies':>7} " + " ".join(f"{t:>17}" for t in TASKS) + f" {'build s':>8}")
    for kind, row in results.items():
        cells = " ".join(f"{row['examples_per_task'][t]:>17}" for t in TASKS)
        print(f"{kind:<10} {row['studies']:>7} {cells} {row['build_seconds_best']:>8.3f}")
    print("\nmean target characters (grounding tasks) by codec:")
    for kind, row in results.items():
        for codec, lengths in row["mean_target_chars_by_codec"].items():
            if lengths:
                print(f"  {kind:<10} {codec:<12} {lengths}")

    payload = {
        "benchmark": "tasks_build",
        "command": "python benchmarks/tasks_build.py",
        "repeats": args.repeats,
        "results": results,
    }
    write_result("tasks_build", payload, RESULTS)


if __name__ == "__main__":
    main()
