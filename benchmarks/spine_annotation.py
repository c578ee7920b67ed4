"""Spine annotation on every CADMA image (train + valid; the test split is held back and absent).

Imports CADMA with the `cadma` importer, runs the spine pipeline (vertebra boxes -> centre line ->
curves with a centre-line Cobb proxy -> spine-ap-alignment template), and reports the severity
distribution, the share of derived templates that parse back and validate (goal: all), the time,
and an outside check of the convexity convention: 74 CADMA file names carry the clinical diagnosis
("Rt-TAIS" = right thoracic, "Rt-T-and-Lt-L-AIS" = right thoracic and left lumbar curves), compared
with the derived curves.

    python benchmarks/spine_annotation.py [--data ../shared/data/spine-cadma] [--overlays DIR]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from provenance import write_result

from radscribe.annotate import annotate_spine_manifest, filled_of
from radscribe.data import read_manifest
from radscribe.data.importers import import_dataset

REPO = Path(__file__).resolve().parents[1]
DIAGNOSIS = re.compile(r"(Rt|Lt)-(TL|T|L)?(?=-|AIS)")
REGIONS = {"T": "thoracic", "TL": "thoracolumbar", "L": "lumbar"}


def named_curves(study_id: str) -> list[tuple[str, str | None]]:
    """(patient side, region or None) for each curve a CADMA file name states."""
    return [("right" if side == "Rt" else "left", REGIONS.get(region)) for side, region in DIAGNOSIS.findall(study_id)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "spine-cadma")
    parser.add_argument("--overlays", type=Path, default=None, help="also draw review PNGs here (timed separately)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "spine_annotation.json")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"CADMA data not found at {args.data} (see ../shared/data/README.md)")

    with tempfile.TemporaryDirectory() as folder:
        imported = Path(folder) / "cadma.jsonl"
        annotated = Path(folder) / "spine.jsonl"
        import_dataset("cadma", args.data, imported)
        start = time.perf_counter()
        summary = annotate_spine_manifest(imported, annotated)
        seconds = time.perf_counter() - start
        overlay_seconds = None
        if args.overlays is not None:
            start = time.perf_counter()
            annotate_spine_manifest(imported, Path(folder) / "with-overlays.jsonl", overlays_dir=args.overlays)
            overlay_seconds = time.perf_counter() - start
        studies = read_manifest(annotated)

    curves_per_image: Counter[int] = Counter()
    curve_kinds: Counter[str] = Counter()
    curve_severity: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    named = matched_side_region = matched_main_side = labelled = 0
    for study in studies:
        splits[study.split or "none"] += 1
        if study.template is None:
            continue
        curves = filled_of(study).get("alignment.curves") or []
        curves_per_image[len(curves)] += 1
        for curve in curves:
            curve_kinds[f"{curve.values['region']} convex {curve.values['convexity']}"] += 1
            curve_severity[curve.values["severity"]] += 1
        stated = named_curves(study.id)
        if not stated:
            continue
        labelled += 1
        scoliotic = [c.values for c in curves if c.values["severity"] != "none"]
        for side, region in stated:
            named += 1
            matched_side_region += any(c["convexity"] == side and (region is None or c["region"] == region) for c in scoliotic)
        if curves:
            main_curve = max(curves, key=lambda c: c.values["angle"]).values
            matched_main_side += main_curve["convexity"] == stated[0][0]

    result = {
        "dataset": "spine-cadma train+valid (CC BY 4.0)",
        "images": summary.total,
        "splits": dict(splits),
        "annotated": summary.annotated,
        "skipped": len(summary.skipped),
        "templates_valid": summary.valid,
        "valid_share": round(summary.valid_share, 4),
        "overall_severity": {name: summary.severity.get(name, 0) for name in ("none", "mild", "moderate", "severe")},
        "curve_severity": {name: curve_severity.get(name, 0) for name in ("none", "mild", "moderate", "severe")},
        "curves_per_image": {str(k): v for k, v in sorted(curves_per_image.items())},
        "curves_by_region_and_convexity": dict(sorted(curve_kinds.items())),
        "angle_method": "centre-line Cobb proxy (not an endplate Cobb angle)",
        "level_anchor": "bottom-L5 (levels are estimates)",
        "filename_diagnosis_check": {
            "images_with_diagnosis_in_name": labelled,
            "named_curves": named,
            "named_curve_found_same_side_and_region": matched_side_region,
            "largest_curve_same_side_as_first_named": matched_main_side,
        },
        "seconds_annotate": round(seconds, 2),
        "seconds_annotate_with_overlays": None if overlay_seconds is None else round(overlay_seconds, 2),
        "command": "python benchmarks/spine_annotation.py" + (" --overlays DIR" if args.overlays else ""),
    }
    write_result(args.out.stem, result, args.out.parent)


if __name__ == "__main__":
    main()
