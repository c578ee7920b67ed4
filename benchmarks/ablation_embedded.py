"""The model card's ablation: S2D-Align stages and the memory adapter on a reduced, equal step budget.

Trains every setting `radscribe ablate` derives from configs/radscribe-tiny.yaml (pairing only; pairing
then grounding; the same without memory slots) for 180 optimiser steps each, a fifth of the shipped
recipe, one seed, and writes benchmarks/results/ablation_embedded.json (the rows, stamped) and
ablation_embedded.md (the table). Hours of CPU time; a finished run folder is reused, not retrained.

    OMP_NUM_THREADS=1 python benchmarks/ablation_embedded.py [--run-dir runs/radscribe-tiny-ablation]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from provenance import RESULTS, write_result

from radscribe.data.manifest import atomic_write
from radscribe.train import load_config, run_ablation
from radscribe.train.ablation import ablation_table

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "radscribe-tiny.yaml"
# Two stages sharing the 180-step budget: 60 of pairing, then 120 of grounding with the full task mixture.
OVERRIDES = [
    "stages=[{name: pairing, kind: pairing, steps: 60}, {name: grounding, kind: grounding, steps: 120, reference: false, "
    "tasks: {structured_report: 1.0, vqa: 0.6, region: 0.2, phrase_grounding: 1.0}}]",
    "eval.every=60",
    "optim.warmup_steps=20",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "radscribe-tiny-ablation")
    args = parser.parse_args()

    finished = args.run_dir / "ablation.json"
    if finished.exists():
        rows = json.loads(finished.read_text(encoding="utf-8"))
    else:
        rows = run_ablation(load_config(RECIPE, OVERRIDES), args.run_dir)
    write_result("ablation_embedded", {
        "benchmark": "ablation_embedded",
        "recipe": str(RECIPE.relative_to(ROOT)),
        "overrides": OVERRIDES,
        "budget": "180 optimiser steps per setting (a fifth of the shipped recipe's 900), batch 16, seed 0, one run per setting",
        "run_dir": str(args.run_dir),
        "rows": rows,
    })  # fmt: skip
    with atomic_write(RESULTS / "ablation_embedded.md") as handle:
        handle.write(ablation_table(rows))


if __name__ == "__main__":
    main()
