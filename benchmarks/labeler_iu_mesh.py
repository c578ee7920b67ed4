"""chexpert-lite vs the human-coded MeSH "major" terms of the IU X-ray reports.

Usage: python benchmarks/labeler_iu_mesh.py [--reports ../shared/data/iu-xray-reports/reports.jsonl]

Writes benchmarks/results/labeler_iu_mesh.json and labeler_iu_mesh.md; prints the table. Scored
reports: those with findings or impression text and at least one real MeSH code (reports coded only
"No Indexing" are excluded, see rules/iu_mesh_mapping.yaml). Also measures labelling speed on one
core (reports/s, best of 3 passes over all reports).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from provenance import write_result

from radscribe.data import atomic_write
from radscribe.labeling import CHEXPERT_OBSERVATIONS, ChexpertLite
from radscribe.labeling.validation import (
    DEFAULT_MIN_SUPPORT,
    MESH_MAPPING_PATH,
    iu_report_text,
    load_iu_reports,
    load_mesh_mapping,
    score_against_mesh,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = ROOT.parent / "shared" / "data" / "iu-xray-reports" / "reports.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    parser.add_argument("--min-support", type=int, default=DEFAULT_MIN_SUPPORT)
    args = parser.parse_args()

    records = load_iu_reports(args.reports)
    mapping = load_mesh_mapping()
    labeler = ChexpertLite()
    texts = [iu_report_text(record) for record in records]

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        labels = labeler.label_many(texts)
        timings.append(time.perf_counter() - started)
    speed = len(texts) / min(timings)

    scored = [
        (record, label)
        for record, text, label in zip(records, texts, labels)
        if text and not mapping.excluded(record["mesh_major"])
    ]
    mesh_present = [mapping.observations(record["mesh_major"]) for record, _ in scored]
    values = [label.values for _, label in scored]
    variants = [
        score_against_mesh(values, mesh_present, uncertain_as_positive=False, min_support=args.min_support),
        score_against_mesh(values, mesh_present, uncertain_as_positive=True, min_support=args.min_support),
    ]
    result = {
        "labeler": "chexpert-lite (approximation of the CheXpert labeler; radscribe negation/uncertainty cues)",
        "reference": "IU X-ray MeSH major terms (human coders), mapped by " + MESH_MAPPING_PATH.name,
        "reports_total": len(records),
        "reports_scored": len(scored),
        "reports_excluded": {
            "empty_text": sum(1 for text in texts if not text),
            "not_indexed": sum(1 for r, t in zip(records, texts) if t and mapping.excluded(r["mesh_major"])),
        },
        "variants": variants,
        "speed": {"reports_per_s": round(speed, 1), "reports": len(texts)},
    }
    write_result("labeler_iu_mesh", result, RESULTS)
    markdown = _markdown(result)
    with atomic_write(RESULTS / "labeler_iu_mesh.md") as handle:
        handle.write(markdown)
    print(markdown)


def _markdown(result: dict) -> str:
    lines = [
        "# chexpert-lite vs IU X-ray MeSH major terms",
        "",
        f"Reports scored: {result['reports_scored']} of {result['reports_total']} "
        f"(excluded: {result['reports_excluded']}). Speed: {result['speed']['reports_per_s']} reports/s, one core.",
        "",
    ]
    for variant in result["variants"]:
        lines += [
            f"## {variant['variant']}",
            "",
            f"Macro F1 over reliable observations ({variant['reliable_rule']}): **{variant['macro_f1_reliable']:.3f}** "
            f"(kappa {variant['macro_kappa_reliable']:.3f}); macro F1 over all 14: {variant['macro_f1_all']:.3f}.",
            "",
            "| observation | support | predicted | precision | recall | F1 | kappa | reliable |",
            "|---|---|---|---|---|---|---|---|",
        ]
        reliable = set(variant["reliable_observations"])
        for row in variant["per_observation"]:
            lines.append(
                f"| {row['observation']} | {row['support']} | {row['predicted']} | {row['precision']:.3f} | "
                f"{row['recall']:.3f} | {row['f1']:.3f} | {row['kappa']:.3f} | {'yes' if row['observation'] in reliable else 'no'} |"
            )
        lines.append("")
    assert [row["observation"] for row in result["variants"][0]["per_observation"]] == list(CHEXPERT_OBSERVATIONS)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
