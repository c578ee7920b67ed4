"""Validating a labeler against a human reference: IU X-ray MeSH "major" terms.

The mapping from MeSH headings to CheXpert observations is data (``rules/iu_mesh_mapping.yaml``).
Agreement is scored per observation as binary presence: precision, recall, F1, Cohen's kappa and
the reference support, then macro-averaged over the observations the reference codes reliably.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from radscribe.labeling.rules import CHEXPERT_OBSERVATIONS, RULES_DIR, RulesError, read_rules_yaml

MESH_MAPPING_PATH = RULES_DIR / "iu_mesh_mapping.yaml"
# Observations with fewer reference positives than this are reported but left out of the macro
# average: F1 on a handful of cases says more about single reports than about the labeler.
DEFAULT_MIN_SUPPORT = 30


@dataclass(frozen=True)
class _Rule:
    heading: str
    qualifiers_any: tuple[str, ...] = ()
    qualifiers_all: tuple[str, ...] = ()
    qualifiers_none: tuple[str, ...] = ()

    def matches(self, heading: str, qualifiers: set[str]) -> bool:
        if heading != self.heading.lower():
            return False
        if self.qualifiers_any and not qualifiers & set(self.qualifiers_any):
            return False
        if not set(self.qualifiers_all) <= qualifiers:
            return False
        return not qualifiers & set(self.qualifiers_none)


@dataclass(frozen=True)
class MeshMapping:
    rules: dict[str, tuple[_Rule, ...]]
    exclude_only: frozenset[str]

    def observations(self, terms: Iterable[str]) -> set[str]:
        """The observations a report's MeSH major terms code as present."""
        present = set()
        for term in terms:
            heading, *qualifiers = [part.strip().lower() for part in term.split("/")]
            qualifier_set = set(qualifiers)
            for observation, rules in self.rules.items():
                if any(rule.matches(heading, qualifier_set) for rule in rules):
                    present.add(observation)
        return present

    def excluded(self, terms: Sequence[str]) -> bool:
        """A report that was never coded (e.g. only "No Indexing") cannot serve as a reference."""
        headings = {term.split("/")[0].strip() for term in terms}
        return not headings or headings <= self.exclude_only


def load_mesh_mapping(path: Path | str | None = None) -> MeshMapping:
    path = Path(path) if path is not None else MESH_MAPPING_PATH
    data = read_rules_yaml(path, "MeSH mapping")
    rules: dict[str, tuple[_Rule, ...]] = {}
    for observation, entries in (data.get("observations") or {}).items():
        if observation not in CHEXPERT_OBSERVATIONS:
            raise RulesError(f"{path}: field 'observations': unknown observation {observation!r}")
        parsed = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or "heading" not in entry:
                raise RulesError(f"{path}: field 'observations.{observation}[{index}]': expected a mapping with 'heading'")
            parsed.append(
                _Rule(
                    heading=entry["heading"],
                    qualifiers_any=tuple(q.lower() for q in entry.get("qualifiers_any", ())),
                    qualifiers_all=tuple(q.lower() for q in entry.get("qualifiers_all", ())),
                    qualifiers_none=tuple(q.lower() for q in entry.get("qualifiers_none", ())),
                )
            )
        rules[observation] = tuple(parsed)
    return MeshMapping(rules, frozenset(data.get("exclude_reports_with_only", ())))


@dataclass(frozen=True)
class Agreement:
    observation: str
    support: int  # reference positives
    predicted: int  # labeler positives
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    kappa: float


def agreement(observation: str, reference: Sequence[bool], predicted: Sequence[bool]) -> Agreement:
    """Binary agreement of one observation; 0/0 ratios are 0 (stated, not hidden)."""
    tp = sum(r and p for r, p in zip(reference, predicted))
    fp = sum((not r) and p for r, p in zip(reference, predicted))
    fn = sum(r and (not p) for r, p in zip(reference, predicted))
    tn = len(reference) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(reference)
    observed = (tp + tn) / n if n else 0.0
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n) if n else 0.0
    kappa = (observed - expected) / (1 - expected) if expected < 1 else 0.0
    return Agreement(observation, tp + fn, tp + fp, tp, fp, fn, tn, precision, recall, f1, kappa)


def score_against_mesh(
    values: Sequence[dict[str, Any]],
    mesh_present: Sequence[set[str]],
    uncertain_as_positive: bool = False,
    min_support: int = DEFAULT_MIN_SUPPORT,
) -> dict[str, Any]:
    """Per-observation agreement and macro averages (reliable observations and all)."""
    positive = (1, -1) if uncertain_as_positive else (1,)
    rows = []
    for observation in CHEXPERT_OBSERVATIONS:
        reference = [observation in present for present in mesh_present]
        predicted = [report[observation] in positive for report in values]
        rows.append(agreement(observation, reference, predicted))
    reliable = [row for row in rows if row.support >= min_support]
    return {
        "variant": "uncertain_as_positive" if uncertain_as_positive else "positive_only",
        "reliable_rule": f"observations with at least {min_support} MeSH-positive reports",
        "reliable_observations": [row.observation for row in reliable],
        "macro_f1_reliable": _mean(row.f1 for row in reliable),
        "macro_kappa_reliable": _mean(row.kappa for row in reliable),
        "macro_f1_all": _mean(row.f1 for row in rows),
        "per_observation": [asdict(row) for row in rows],
    }


def load_iu_reports(path: Path | str) -> list[dict[str, Any]]:
    """The IU X-ray ``reports.jsonl`` records."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def iu_report_text(record: dict[str, Any]) -> str:
    """Findings then impression: the text the labeler reads, as for CheXpert."""
    return "\n".join(part.strip() for part in (record.get("findings") or "", record.get("impression") or "") if part.strip())


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
