"""The model card's numbers: `radscribe predict` then `radscribe evaluate` on each validation split, nothing more.

Systems (validation splits carved by image; manifests from `bash configs/prepare-data.sh`):

- spine, CADMA valid: ``release`` (the model folder as shipped: its reports carry the boxes its
  release.json names, ``boxes_from``), ``vlm+detector`` (the model's own vertebra grounding with the
  detector's boxes in its prompt, the template derived from its boxes), ``vlm`` (``--detector none``: the model alone from the
  image), ``detector`` (``--task detector``: the detector's boxes and the template derived from them);
  each scored by the ``spine`` family with the ``mean-spine`` and ``majority`` baselines, and the VLM
  paired against the detector (``--compare``);
- chest, NIH carve-out: the ``chest-pa`` report, ``chest`` + ``structured`` families, label priors;
- vqa, VQA-RAD carve-out: every question through Reporter.ask (``--no-abstain``: what the model answers,
  before the release's VQA abstention), the ``vqa`` family (strict) with the
  majority, per-question, nearest-question (MiniLM) and question-classifier (MiniLM) baselines.

Every value has a 95% bootstrap CI over images (VQA: images with all their questions) and each model
metric a paired-bootstrap difference with each baseline (`radscribe evaluate --baselines all`).
Predictions are kept in --predictions-dir (default runs/eval/embedded_model/<weights files digest>), so
an interrupted run resumes; each `radscribe predict` refuses a file written by other weights.

    python benchmarks/embedded_model.py --model src/radscribe/models/assets/embedded
    python benchmarks/embedded_model.py --model runs/radscribe-tiny/final --limit 8 --out /tmp/dev.json
    python benchmarks/embedded_model.py --baselines-only

Writes benchmarks/results/embedded_model.json (or --out) with provenance, and spine overlays (best,
median, worst film by the VLM's vertebra F1) beside it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from provenance import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = {"spine": ROOT / "data/cadma/spine.jsonl", "chest": ROOT / "data/nih/chest.jsonl", "vqa": ROOT / "data/vqa-rad/vqa.jsonl"}
FAMILIES = {"spine": "spine", "chest": "chest,structured", "vqa": "vqa"}
# system name -> (task, `radscribe predict` options)
SYSTEMS = {
    "spine": {
        "release": ("spine", []),
        "vlm+detector": ("spine", ["--boxes-from", "model"]),
        "vlm": ("spine", ["--detector", "none"]),
        "detector": ("spine", ["--task", "detector"]),
    },
    "chest": {"vlm": ("chest", [])},
    # the VLM's own answers: the release abstains on VQA (abstain.json), which would score nothing
    "vqa": {"vlm": ("vqa", ["--task", "vqa", "--no-abstain"])},
}
OVERLAY_SYSTEM = "release"


def radscribe(*args: str) -> None:
    """One `radscribe` command, exactly as a user types it (its output goes to this terminal)."""
    command = [sys.executable, "-m", "radscribe.cli.main", *args]
    print("$ radscribe " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def weights_digest(model: Path) -> str:
    """A short digest of the model folder's weight files (detector included), to name its predictions folder."""
    digest = hashlib.sha256()
    for path in sorted(model.rglob("*.safetensors")):
        digest.update(str(path.relative_to(model)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def evaluate(task: str, predictions: Path | None, out: Path, args: argparse.Namespace, compare: Path | None = None) -> dict[str, Any]:
    command = ["evaluate", "--refs", str(MANIFESTS[task]), "--split", "valid", "--metrics", FAMILIES[task],
               "--bootstrap", str(args.resamples), "--seed", str(args.seed), "--out", str(out)]  # fmt: skip
    command += [str(predictions), "--baselines", "all"] if predictions is not None else ["--baselines-only"]
    if compare is not None:
        command += ["--compare", str(compare)]
    radscribe(*command)
    return json.loads((out / "metrics.json").read_text())


def overlays(predictions: Path, per_sample: Path, folder: Path) -> list[str]:
    """Best, median and worst film by vertebra F1: true boxes green, predicted red."""
    from PIL import ImageDraw

    from radscribe.data.images import read_image
    from radscribe.data.manifest import read_manifest, resolve_image_path
    from radscribe.evaluate import read_predictions

    predicted = read_predictions(predictions).predictions
    with per_sample.open() as handle:
        scores = {row["sample_id"]: float(row["value"]) for row in csv.DictReader(handle)
                  if row["metric"] == "vertebra-f1" and row["value"] and row["sample_id"] in predicted}  # fmt: skip
    if not scores:
        return []
    order = sorted(scores, key=lambda key: (scores[key], key))
    studies = {s.id: s for s in read_manifest(MANIFESTS["spine"])}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, study_id in (("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])):
        study = studies[study_id]
        film = read_image(resolve_image_path(MANIFESTS["spine"], study.images[0].path))
        image = film.to_pil().convert("RGB")
        draw = ImageDraw.Draw(image)
        for boxes, colour in ((study.boxes, (60, 220, 60)), ([b for b in predicted[study_id].boxes or [] if b is not None], (255, 60, 60))):
            for box in boxes:
                draw.rectangle(list(box.to_pixels(film.width, film.height)), outline=colour, width=1)
        draw.text((4, 4), f"{rank}: vertebra F1 {scores[study_id]:.2f}", fill=(255, 255, 255))
        path = folder / f"{rank}.png"
        image.save(path, optimize=True)
        written.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "src/radscribe/models/assets/embedded", help="saved model folder (with detector/ for the detector systems)")
    parser.add_argument("--tasks", default="spine,chest,vqa")
    parser.add_argument("--limit", type=int, default=0, help="first N validation studies per task (0: all)")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predictions-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(SYSTEMS))
    if unknown:
        sys.exit(f"unknown tasks {unknown}; known: {', '.join(SYSTEMS)}")
    for task in tasks:
        if not MANIFESTS[task].exists():
            sys.exit(f"{MANIFESTS[task]} is missing: build the manifests with `bash configs/prepare-data.sh`")
    name = "embedded_model_baselines" if args.baselines_only else "embedded_model"
    out = args.out or RESULTS / f"{name}.json"
    work = args.predictions_dir or ROOT / "runs/eval/embedded_model" / ("baselines" if args.baselines_only else weights_digest(args.model))
    has_detector = (args.model / "detector").is_dir()
    result: dict[str, Any] = {"benchmark": name, "model": None if args.baselines_only else str(args.model), "predictions": str(work),
                              "limit": args.limit or None, "tasks": {}}  # fmt: skip
    for task in tasks:
        section: dict[str, Any] = {"manifest": str(MANIFESTS[task].relative_to(ROOT)), "systems": {}}
        if args.baselines_only:
            section["systems"]["baselines"] = evaluate(task, None, work / f"{task}-baselines", args)
            result["tasks"][task] = section
            continue
        files: dict[str, Path] = {}
        for system, (_, options) in SYSTEMS[task].items():
            if not has_detector and system in ("release", "detector", "vlm+detector"):
                section["systems"][system] = f"not run: {args.model} has no detector/"
                continue
            files[system] = work / f"{task}-{system.replace('+', '-')}.jsonl"
            radscribe("predict", str(MANIFESTS[task]), "--split", "valid", "--model", str(args.model), "--out", str(files[system]),
                      "--limit", str(args.limit), "--batch-size", str(args.batch_size), *options)  # fmt: skip
        for system, path in files.items():
            compare = files.get("detector") if task == "spine" and system != "detector" else None
            section["systems"][system] = evaluate(task, path, work / f"{task}-{system.replace('+', '-')}-eval", args, compare)
        if task == "spine" and OVERLAY_SYSTEM in files:
            section["overlays"] = overlays(files[OVERLAY_SYSTEM], work / "spine-release-eval" / "per_sample.csv", out.with_name(out.stem + "_overlays"))
        result["tasks"][task] = section
    path = write_result(out.stem, result, out.parent)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
