"""Time the whole `radscribe evaluate` command on 3,000 IU X-ray report pairs (nlg + ce, bootstrap 1000).

References are the first 3,000 IU reports with text (findings + impression), imported with the iu-xray
importer; predictions are the same reports perturbed deterministically (seed 0): each sentence is dropped
with probability 0.25, each "no " is removed with probability 0.1 (a negation flip), and one sentence
of another report is appended with probability 0.3. Writes benchmarks/results/evaluate_command.json.

Run: python benchmarks/evaluate_command.py   (needs ../shared/data/iu-xray-reports)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
IU = REPO.parent / "shared" / "data" / "iu-xray-reports"
PAIRS = 3000
RESAMPLES = 1000


def perturb(text: str, donor: str, rng: random.Random) -> str:
    sentences = [s.strip() for s in text.split(".") if s.strip()]
    kept = [s for s in sentences if rng.random() >= 0.25] or sentences[:1]
    kept = [s.replace("No ", "", 1) if s.startswith("No ") and rng.random() < 0.1 else s for s in kept]
    if rng.random() < 0.3:
        extra = [s.strip() for s in donor.split(".") if s.strip()]
        if extra:
            kept.append(rng.choice(extra))
    return ". ".join(kept) + "."


def main() -> None:
    if not IU.exists():
        sys.exit(f"IU X-ray reports not found at {IU}")
    from radscribe.data.importers import import_dataset
    from radscribe.data.manifest import read_manifest, write_manifest

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        import_dataset("iu-xray", IU, work / "all.jsonl")
        studies = [s for s in read_manifest(work / "all.jsonl") if s.report_text][:PAIRS]
        write_manifest(studies, work / "refs.jsonl")
        rng = random.Random(0)
        with (work / "preds.jsonl").open("w") as handle:
            for i, study in enumerate(studies):
                donor = studies[(i * 7919 + 13) % len(studies)].report_text
                handle.write(json.dumps({"id": study.id, "report": perturb(study.report_text, donor, rng)}) + "\n")
        command = [sys.executable, "-m", "radscribe.cli.main", "evaluate", str(work / "preds.jsonl"), "--refs", str(work / "refs.jsonl"),
                   "--metrics", "nlg,ce", "--bootstrap", str(RESAMPLES), "--out", str(work / "out")]
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if completed.returncode != 0:
            sys.exit(f"radscribe evaluate failed:\n{completed.stderr[-3000:]}")
        metrics = json.loads((work / "out" / "metrics.json").read_text())
    headline = {
        m["key"]: {"value": m["value"], "ci95": m["ci95"]}
        for m in metrics["metrics"]
        if m["key"] in ("bleu4@r2gen", "rouge_l@r2gen", "cider_d@r2gen", "ce-f1@pos-only/micro/14@chexpert-lite",
                        "ce-f1@pos-only/macro/14@chexpert-lite", "ce-f1@uncertain-as-pos/example/14@chexpert-lite")
    }
    result = {
        "benchmark": "evaluate_command",
        "command": "radscribe evaluate PREDS --refs REFS --metrics nlg,ce --bootstrap 1000",
        "pairs": len(studies),
        "bootstrap_resamples": RESAMPLES,
        "metric_values": len(metrics["metrics"]),
        "wall_seconds": round(seconds, 2),
        "headline": headline,
        "note": "2 cores shared with other jobs",
    }
    write_result("evaluate_command", result)


if __name__ == "__main__":
    main()
