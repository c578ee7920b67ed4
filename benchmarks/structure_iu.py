"""Structure every IU X-ray report (findings + impression) into the chest-pa template.

Usage: python benchmarks/structure_iu.py [--reports ../shared/data/iu-xray-reports/reports.jsonl]

Counts statuses (ok / empty / unparseable), templates that validate after render -> parse, exact
render -> parse -> render round trips, field values, and how well provenance and sentence routing
cover the text; times structuring on one core (reports/s, best of 3 passes). Writes
benchmarks/results/structure_iu.json and prints it.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from provenance import write_result

from radscribe.labeling import structure_report
from radscribe.labeling.validation import load_iu_reports
from radscribe.templates import TemplateParseError, parse, render, validate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = ROOT.parent / "shared" / "data" / "iu-xray-reports" / "reports.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    args = parser.parse_args()
    records = load_iu_reports(args.reports)
    pairs = [(record.get("findings") or "", record.get("impression") or "") for record in records]

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        reports = [structure_report(findings, impression) for findings, impression in pairs]
        timings.append(time.perf_counter() - started)

    statuses = Counter(report.status for report in reports)
    valid = round_trips = 0
    problems = []
    values: dict[str, Counter[str]] = {}
    filled_fields = cited_fields = 0
    sentences = unrouted = 0
    started = time.perf_counter()
    for record, report in zip(records, reports):
        if report.filled is None:
            if report.status != "empty":
                problems.append({"uid": record["uid"], "status": report.status, "reason": report.reason})
            continue
        markdown = render(report.filled)
        try:
            parsed = parse(markdown, "chest-pa")
        except TemplateParseError as error:
            problems.append({"uid": record["uid"], "status": "unparseable-markdown", "reason": str(error)})
            continue
        issues = validate(parsed)
        valid += not issues
        round_trips += render(parsed) == markdown
        if issues:
            problems.append({"uid": record["uid"], "status": "invalid", "reason": "; ".join(map(str, issues))})
        for section, fields in parsed.sections.items():
            for name, value in fields.items():
                if isinstance(value, str) and section not in ("impression", "technique"):
                    field_id = f"{section}.{name}"
                    values.setdefault(field_id, Counter())[value] += 1
                    if value != "not assessed":
                        filled_fields += 1
                        cited_fields += bool(report.provenance.get(field_id))
        routed = {(s.section, s.span) for group in report.routed.values() for s in group}
        sentences += len(routed | {(s.section, s.span) for s in report.unrouted})
        unrouted += len(report.unrouted)
    check_seconds = time.perf_counter() - started

    result = {
        "task": "IU X-ray free-text reports -> chest-pa (chexpert-lite labels + sentence routing)",
        "reports_total": len(records),
        "statuses": dict(statuses),
        "valid_templates": valid,
        "round_trip_identical": round_trips,
        "problems": problems[:20],
        "problem_count": len(problems),
        "assessed_fields_with_provenance": {"fields": filled_fields, "with_sentences": cited_fields},
        "sentences": {"total": sentences, "unrouted": unrouted, "unrouted_share": round(unrouted / max(sentences, 1), 4)},
        "projection": dict(Counter(r.filled.get("technique.projection") for r in reports if r.filled is not None)),
        "projection_assumed": sum(1 for r in reports if r.filled is not None and "assumed" in (r.filled.get("technique.label_source") or "")),
        "field_values": {field_id: dict(counts.most_common()) for field_id, counts in sorted(values.items())},
        "speed": {
            "reports_per_s": round(len(pairs) / min(timings), 1),
            "passes_s": [round(t, 2) for t in timings],
            "render_parse_validate_s": round(check_seconds, 2),
            "note": "one core of a shared 2-core machine; structure_report only (labeling included)",
        },
    }
    write_result("structure_iu", result, RESULTS)


if __name__ == "__main__":
    main()
