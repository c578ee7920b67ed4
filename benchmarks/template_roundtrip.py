"""Round trip render -> parse -> render over generated and real-data-derived filled templates.

Counts: random filled templates per shipped template (seeded; values valid, invalid and blank
mixed), every CADMA-derived spine-ap-alignment template, every NIH-derived chest-pa template.
Identity means the re-rendered markdown is byte-identical and the parsed values equal the
first parse.

    python benchmarks/template_roundtrip.py [--random 2000]
"""

from __future__ import annotations

import argparse
import random
import string
import tempfile
import time
from pathlib import Path

from provenance import write_result

from radscribe.annotate import annotate_chest_manifest, annotate_spine_manifest
from radscribe.data import read_manifest
from radscribe.data.importers import import_dataset
from radscribe.templates import FilledTemplate, GroundedFinding, list_templates, load_template, parse, render, validate

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ALPHABET = string.ascii_letters + string.digits + " .,;:-()/%*#_\t" + "éß°µ"


def random_value(field, rng: random.Random):
    roll = rng.random()
    if roll < 0.1:
        return None
    if field.kind == "enum":
        return rng.choice(field.values) if roll < 0.9 else "".join(rng.choices(ALPHABET, k=rng.randint(1, 12)))
    if field.kind == "number":
        low = field.minimum if field.minimum is not None else -1000
        high = field.maximum if field.maximum is not None else 1000
        value = rng.uniform(low - 10, high + 10)
        return round(value) if field.integer else value
    if field.kind == "text":
        return "".join(rng.choices(ALPHABET, k=rng.randint(0, 60)))
    return [GroundedFinding({sub.id: random_value(sub, rng) for sub in field.fields}) for _ in range(rng.randint(0, 4))]


def random_filled(name: str, rng: random.Random) -> FilledTemplate:
    template = load_template(name)
    return FilledTemplate(name, {s.id: {f.id: random_value(f, rng) for f in s.fields} for s in template.sections})


def round_trips(markdown: str, template: str) -> bool:
    first = parse(markdown, template)
    again = render(first)
    return again == markdown and parse(again, template) == first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=2000, help="random filled templates per shipped template")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "template_roundtrip.json")
    args = parser.parse_args()
    rng = random.Random(0)
    start = time.perf_counter()
    groups: dict[str, dict[str, int]] = {}
    for name in list_templates():
        ok = invalid = 0
        for _ in range(args.random):
            filled = random_filled(name, rng)
            ok += round_trips(render(filled), name)
            invalid += bool(validate(filled))
        groups[f"random {name}"] = {"count": args.random, "identical": ok, "with_validation_issues": invalid}

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sources = [
            ("cadma-derived spine-ap-alignment", "cadma", DATA / "spine-cadma", annotate_spine_manifest),
            ("nih-derived chest-pa", "nih-cxr14", DATA / "nih-cxr14-621", annotate_chest_manifest),
        ]
        for label, importer, source, annotate in sources:
            if not source.is_dir():
                groups[label] = {"count": 0, "identical": 0, "note": f"data absent: {source}"}
                continue
            import_dataset(importer, source, folder / f"{importer}.jsonl")
            annotate(folder / f"{importer}.jsonl", folder / f"{importer}-annotated.jsonl")
            studies = [s for s in read_manifest(folder / f"{importer}-annotated.jsonl") if s.structured]
            groups[label] = {"count": len(studies), "identical": sum(round_trips(s.structured, s.template) for s in studies)}

    total = sum(group["count"] for group in groups.values())
    identical = sum(group["identical"] for group in groups.values())
    result = {
        "groups": groups,
        "templates": total,
        "identical": identical,
        "identity_share": round(identical / total, 6) if total else None,
        "seconds": round(time.perf_counter() - start, 2),
        "command": f"python benchmarks/template_roundtrip.py --random {args.random}",
    }
    write_result(args.out.stem, result, args.out.parent)


if __name__ == "__main__":
    main()
