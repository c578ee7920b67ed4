"""The spine recipe trained on a GPU: what 850 steps reach (the model card's "GPU run of the spine recipe").

Trains configs/radscribe-tiny-spine.yaml with the stage lengths of that run (pairing 250, reference 150,
grounding 450 steps; every other key as the recipe) on the GPU, unless the run folder already holds a
finished run, then writes the run's result.json, stamped, to benchmarks/results/train_spine_gpu.json and
its loss curve beside it. Minutes on one GPU, hours on a CPU.

    python benchmarks/train_spine_gpu.py [--run-dir runs/gpu-spine-850]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from provenance import RESULTS, write_result

from radscribe.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "radscribe-tiny-spine.yaml"
OVERRIDES = [
    "stages=[{name: pairing, kind: pairing, steps: 250}, {name: reference, kind: reference, steps: 150, reference_max_chars: 600}, "
    "{name: grounding, kind: grounding, steps: 450, reference_max_chars: 600, tasks: {structured_report: 1.0, phrase_grounding: 1.0, region: 0.5}}]",
    "device=cuda",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "gpu-spine-850")
    args = parser.parse_args()

    if not (args.run_dir / "result.json").exists():
        train(load_config(RECIPE, OVERRIDES), args.run_dir, resume=(args.run_dir / "config.yaml").exists())
    result = json.loads((args.run_dir / "result.json").read_text(encoding="utf-8"))
    write_result("train_spine_gpu", {"recipe": str(RECIPE.relative_to(ROOT)), "overrides": OVERRIDES, **result})
    shutil.copyfile(args.run_dir / "loss_curve.png", RESULTS / "train_spine_gpu_loss_curve.png")


if __name__ == "__main__":
    main()
