"""Region-Focused Inference on CADMA: does the unsupervised crop hold the spine column?

Reference: the column box = union of an image's vertebra boxes (YOLO labels). Per image: recall =
share of the column box's area inside the crop (goal >= 0.98), IoU of crop and column box (goal >=
0.8), and seconds per image (features + PCA + mask + box). The encoder is named in the result and
whether it is trained is stated, because an untrained encoder's numbers mean something else.

    python benchmarks/rfi_cadma.py --encoder embedded            # the embedded model's vision encoder
    python benchmarks/rfi_cadma.py --encoder dinov2:/path/to/dinov2-small
    python benchmarks/rfi_cadma.py --encoder /path/to/saved/radscribe/model
    python benchmarks/rfi_cadma.py --encoder random-dinov2       # a randomly initialised DINOv2 (baseline)

Writes benchmarks/results/rfi_cadma.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "spine-cadma"


def column_box(label_file: Path) -> tuple[float, float, float, float] | None:
    boxes = []
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5:
            cx, cy, w, h = map(float, parts[1:5])
            boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    if not boxes:
        return None
    return (max(0.0, min(b[0] for b in boxes)), max(0.0, min(b[1] for b in boxes)),
            min(1.0, max(b[2] for b in boxes)), min(1.0, max(b[3] for b in boxes)))


def area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a, b) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def encoder_and_label(spec: str, seed: int):
    from radscribe.infer import dinov2_features, model_features

    if spec.startswith("dinov2:"):
        return dinov2_features(spec.removeprefix("dinov2:")), f"DINOv2 from {spec.removeprefix('dinov2:')} (pretrained weights)"
    if spec == "random-dinov2":
        import tempfile

        import torch
        from transformers import Dinov2Config, Dinov2Model

        torch.manual_seed(seed)
        folder = Path(tempfile.mkdtemp(prefix="random-dinov2-"))
        config = Dinov2Config(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768, patch_size=14, image_size=224)
        Dinov2Model(config).save_pretrained(folder)
        return dinov2_features(folder), "UNTRAINED DINOv2 (random init, ViT 192-d x 6, patch 14): a baseline, not the method's real encoder"
    from radscribe.infer import load_model

    model, description = load_model(None if spec == "embedded" else spec)
    return model_features(model), f"vision encoder of {description}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="embedded", help="embedded | dinov2:PATH | MODEL_PATH | random-dinov2")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--threshold", default="otsu")
    parser.add_argument("--prior", default="vertical")
    parser.add_argument("--margin", type=float, default=None)
    parser.add_argument("--band-fraction", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rfi_cadma.json")
    args = parser.parse_args()

    from radscribe.data import read_image
    from radscribe.infer import RFIConfig, locate_region

    folder = args.data / args.split
    if not (folder / "images").is_dir():
        sys.exit(f"no CADMA split at {folder} (expected images/ and labels/)")
    options = {"threshold": args.threshold, "prior": args.prior}
    if args.margin is not None:
        options["margin"] = args.margin
    if args.band_fraction is not None:
        options["band_fraction"] = args.band_fraction
    config = RFIConfig(**options)
    features, encoder_label = encoder_and_label(args.encoder, args.seed)
    images = sorted((folder / "images").iterdir())
    if args.limit:
        images = images[: args.limit]
    recalls, ious, seconds, whole = [], [], [], 0
    for path in images:
        reference = column_box(folder / "labels" / f"{path.stem}.txt")
        if reference is None:
            continue
        image = read_image(path)
        start = time.perf_counter()
        crop = locate_region(image, features, config)
        seconds.append(time.perf_counter() - start)
        whole += crop.note is not None
        box = crop.normalized().xyxy
        inside = intersection(box, reference)
        recalls.append(inside / area(reference))
        ious.append(inside / (area(box) + area(reference) - inside))
    result = {
        "dataset": f"CADMA {args.split} ({len(recalls)} images with vertebra labels), CC BY 4.0",
        "reference": "column box = union of the image's vertebra boxes",
        "encoder": args.encoder,
        "encoder_description": encoder_label,
        "config": {key: getattr(config, key) for key in ("threshold", "prior", "band_fraction", "margin", "min_area")},
        "images": len(recalls),
        "mean_recall": round(statistics.fmean(recalls), 4),
        "share_recall_ge_0_98": round(sum(r >= 0.98 for r in recalls) / len(recalls), 4),
        "mean_iou": round(statistics.fmean(ious), 4),
        "median_iou": round(statistics.median(ious), 4),
        "whole_image_fallbacks": whole,
        "seconds_per_image_mean": round(statistics.fmean(seconds), 4),
        "seconds_per_image_p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 4),
        "goals": {"mean_recall": 0.98, "mean_iou": 0.8},
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    from radscribe.data.manifest import atomic_write

    with atomic_write(args.out) as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
