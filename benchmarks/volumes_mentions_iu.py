"""Mention mapping (radscribe.volumes.LexiconMapper) against our annotations of 240 IU X-ray report sentences.

Usage: python benchmarks/volumes_mentions_iu.py [--reports ../shared/data/iu-xray-reports/reports.jsonl]

Scores per sentence the set of TotalSegmentator classes the mapper names (present mentions) against the
annotated set (benchmarks/annotations/iu_anatomy_mentions, README there): precision, recall and F1 over
(sentence, class) pairs, overall and per class group of the schema (a class counts in its group), and
the share of sentences whose class set is exactly right; also the present anatomy mentions per report over
all IU reports (an upper bound of grounded phrases per report). Writes benchmarks/results/volumes_mentions_iu.json
(sentence ids only; the report text is CC BY-NC-ND and stays in ../shared/data).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
from collections import Counter
from pathlib import Path

from provenance import write_result

from radscribe.labeling import split_sentences
from radscribe.volumes import LexiconMapper, load_schema

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = ROOT / "benchmarks" / "annotations" / "iu_anatomy_mentions" / "annotations.jsonl"
DEFAULT_REPORTS = ROOT.parent / "shared" / "data" / "iu-xray-reports" / "reports.jsonl"


def load_sentences(reports: Path, annotations: list[dict]) -> dict[str, str]:
    wanted = {record["id"] for record in annotations}
    texts = {}
    with reports.open(encoding="utf-8") as handle:
        for line in handle:
            report = json.loads(line)
            for section in ("findings", "impression"):
                for index, sentence in enumerate(split_sentences(report.get(section) or "")):
                    key = f"{report['uid']}:{section}:{index}"
                    if key in wanted:
                        texts[key] = sentence.text
    return texts


def mappable_phrases_per_report(reports: Path, mapper: LexiconMapper) -> dict[str, float | int]:
    """Present anatomy mentions per report (findings + impression) over all IU reports: the most phrases a
    report could ground if every class it names were on the slice (no IU images or masks exist here)."""
    counts = []
    with reports.open(encoding="utf-8") as handle:
        for line in handle:
            report = json.loads(line)
            text = " ".join(report.get(section) or "" for section in ("findings", "impression")).strip()
            if text:
                counts.append(sum(1 for mention in mapper.map_report(text) if mention.status == "present"))
    return {
        "reports": len(counts),
        "mean": round(sum(counts) / len(counts), 3),
        "median": sorted(counts)[len(counts) // 2],
        "share_with_at_least_one": round(sum(1 for c in counts if c) / len(counts), 4),
    }


def scores(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    args = parser.parse_args()
    schema = load_schema("totalsegmentator")
    names = list(schema.classes.values())
    annotations = [json.loads(line) for line in ANNOTATIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = load_sentences(args.reports, annotations)
    mapper = LexiconMapper(schema)
    counts: dict[str, Counter] = {}
    exact, errors = 0, []
    for record in annotations:
        text = texts.get(record["id"])
        if text is None:
            raise SystemExit(f"{args.reports}: sentence {record['id']} not found (another version of the reports?)")
        digest = hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()[:10]
        if digest != record["sha1"]:
            raise SystemExit(f"{record['id']}: the sentence differs from the annotated one (sha1 {digest} != {record['sha1']})")
        gold = {name for pattern in record["classes"] for name in names if fnmatch.fnmatchcase(name, pattern)}
        predicted = {name for mention in mapper.map_report(text) if mention.status == "present" for name in mention.classes}
        exact += gold == predicted
        if gold != predicted:
            errors.append({"id": record["id"], "missed": sorted(gold - predicted), "extra": sorted(predicted - gold)})
        for name in gold | predicted:
            for key in ("overall", schema.group_of(name)):
                counts.setdefault(key, Counter())["tp" if name in gold and name in predicted else "fp" if name in predicted else "fn"] += 1
    per_report = mappable_phrases_per_report(args.reports, mapper)
    result = {
        "what": "lexicon mention mapper vs our annotations of IU X-ray sentences, (sentence, class) pairs",
        "sentences": len(annotations),
        "sentences_with_classes": sum(1 for record in annotations if record["classes"]),
        "overall": scores(counts["overall"]["tp"], counts["overall"]["fp"], counts["overall"]["fn"]),
        "per_group": {group: scores(c["tp"], c["fp"], c["fn"]) for group, c in sorted(counts.items()) if group != "overall"},
        "sentence_exact_match": round(exact / len(annotations), 4),
        "errors": errors,
        "mappable_phrases_per_report": per_report,
        "annotations": str(ANNOTATIONS.relative_to(ROOT)),
        "label_source": "radscribe developers' annotations (one annotator, not radiologists)",
    }
    write_result("volumes_mentions_iu", result)


if __name__ == "__main__":
    main()
