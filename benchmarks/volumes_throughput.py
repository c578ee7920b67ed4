"""Slices per second of radscribe.volumes on a 512 x 512 x 300 CT with a 100-class label map (synthetic).

Usage: OMP_NUM_THREADS=1 nice -n 10 python benchmarks/volumes_throughput.py [--slices 300] [--classes 100]

The CT (int16 HU, noise) and the label map (uint8; 100 ellipsoids, one class each, TotalSegmentator ids
1..100, spread so that every slice holds several classes) are written as uncompressed NIfTI, then:
(1) reading both and reorienting to display; (2) ``label_boxes`` on every slice, per component and per
class; (3) the whole ``ground_study`` (mentions, slice selection, three CT windows to an RGB PNG,
boxes, intersection, manifest study) with no slice limit. Best of ``--repeats`` runs each.
Writes benchmarks/results/volumes_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nibabel
import numpy as np
from provenance import write_result

from radscribe.volumes import GroundingOptions, LexiconMapper, ground_study, label_boxes, load_schema, read_volume, to_display

REPORT = (
    "The liver, spleen, kidneys and pancreas are unremarkable. The lungs are clear. The heart and aorta are normal. "
    "Degenerative change of the spine. The stomach, small bowel and colon are normal. No rib fracture. "
    "The adrenal glands, esophagus, trachea and thyroid are normal."
)


def synthetic(shape: tuple[int, int, int], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ct = rng.normal(-200, 300, size=shape).astype(np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    for class_id in range(1, classes + 1):
        radii = np.array([rng.integers(10, 45), rng.integers(10, 45), min(int(rng.integers(15, 80)), shape[2] // 2 - 1)])
        centre = np.array([rng.integers(r, s - r) for r, s in zip(radii, shape)])
        lo, hi = centre - radii, centre + radii + 1
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
        region = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        region[inside] = class_id
        ct[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = 40
    return ct, labels


def best_of(repeats: int, function) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    shape = (512, 512, args.slices)
    schema = load_schema("totalsegmentator")
    ct, labels = synthetic(shape, args.classes)
    affine = np.diag([-0.78, -0.78, 1.5, 1.0])
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        nibabel.save(nibabel.Nifti1Image(ct, affine), folder / "ct.nii")
        nibabel.save(nibabel.Nifti1Image(labels, affine), folder / "ct_labels.nii")
        read_s, (volume, label_volume) = best_of(args.repeats, lambda: (
            to_display(read_volume(folder / "ct.nii")), to_display(read_volume(folder / "ct_labels.nii"))))
        slices = [label_volume.axial(k) for k in range(shape[2])]
        component_s, found = best_of(args.repeats, lambda: [label_boxes(s, schema, per="component") for s in slices])
        class_s, _ = best_of(args.repeats, lambda: [label_boxes(s, schema, per="class") for s in slices])
        mapper = LexiconMapper(schema)
        options = GroundingOptions(max_slices=None, modality="CT")
        out = folder / "out" / "m.jsonl"

        def run():
            return ground_study(folder / "ct.nii", folder / "ct_labels.nii", REPORT, schema, mapper, out, folder / "out", options)

        pipeline_s, outcome = best_of(args.repeats, run)
    boxes_per_slice = float(np.mean([len(f) for f in found]))
    classes_per_slice = float(np.mean([len(np.unique(s)) - 1 for s in slices]))
    write_result("volumes_throughput", {
        "what": "radscribe.volumes on a synthetic CT + label map, one process, OMP_NUM_THREADS=1, nice 10",
        "shape": list(shape), "classes": args.classes, "classes_per_slice_mean": round(classes_per_slice, 2),
        "read_and_reorient_s": round(read_s, 3),
        "label_boxes_per_component": {"slices_per_s": round(shape[2] / component_s, 1), "boxes_per_slice": round(boxes_per_slice, 2)},
        "label_boxes_per_class": {"slices_per_s": round(shape[2] / class_s, 1)},
        "ground_study": {
            "slices_written": len(outcome.studies), "wall_s": round(pipeline_s, 2),
            "slices_per_s": round(len(outcome.studies) / pipeline_s, 2),
            "mentions": outcome.mentions, "grounded_phrases": outcome.grounded_phrases,
            "note": "includes reading both NIfTI files, the CT windows, PNG encoding and writing",
        },
        "repeats": args.repeats,
        "load_average_1_5_15_at_end": [round(v, 2) for v in os.getloadavg()],
        "machine_note": "a shared 2-core machine running two CPU training jobs; nice 10 gets a small share of it",
    })


if __name__ == "__main__":
    main()
