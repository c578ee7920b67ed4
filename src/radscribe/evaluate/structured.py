"""Structured-report metrics (SpineVLM's markdown templates): conformance, fields, findings, numbers.

Each prediction is parsed with :func:`radscribe.templates.parse` against the reference's template.
A prediction that does not parse counts as wrong everywhere (never skipped): not conformant, every
field wrong, no findings, every reference number missed.

* ``template-conformance``: share of predictions that parse and :func:`~radscribe.templates.validate`
  finds no issue in.
* ``field-accuracy``: over every scalar field of every reference (findings lists excluded), the share
  whose predicted value equals the reference: enums case-insensitively, text after lowercasing and
  collapsing spaces, numbers within the field's tolerance, blank equals blank. Per-field values are in
  ``details``.
* ``diagnostic-precision/recall/f1`` (pooled counts): the diagnostic findings of a report are (a)
  every enum field whose value is not the template's normal value, as ``field=value``, and (b) every
  item of a findings list, keyed by its enum sub-field values (e.g. ``alignment.curves:
  region=thoracic, convexity=right``). Multisets are matched.
* ``numeric-within-tolerance``: over every reference number (scalar fields, and numeric sub-fields of
  findings items whose keys match), the share predicted within tolerance; a missing or unparseable
  prediction counts as outside. ``numeric-mae``: the mean absolute error over the numbers that both
  sides have (its coverage is in ``details``).
Tolerances default to 5 for fields in degrees and 0 (exact) otherwise; pass ``tolerances`` to change.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radscribe.evaluate.base import Score, register_metric
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic
from radscribe.templates import (
    Field,
    FilledTemplate,
    GroundedFinding,
    Template,
    TemplateParseError,
    load_template,
    parse,
    validate,
)

UNIT_TOLERANCES: dict[str, float] = {"degrees": 5.0}
PROTOCOL = "radscribe-template"


@dataclass
class SampleStructure:
    """Per-sample counts; corpus values (and bootstrap resamples) are sums over samples."""

    parsed: bool
    conformant: bool
    field_correct: dict[str, bool] = field(default_factory=dict)
    tp: int = 0
    n_pred: int = 0
    n_ref: int = 0
    numbers_total: int = 0
    numbers_within: int = 0
    abs_errors: list[float] = field(default_factory=list)
    error: str = ""


def _norm_text(value: Any) -> str:
    return " ".join(str(value).lower().split())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tolerance(spec: Field, field_id: str, tolerances: dict[str, float]) -> float:
    if field_id in tolerances:
        return tolerances[field_id]
    return UNIT_TOLERANCES.get(spec.unit or "", 0.0)


def _same_value(spec: Field, ref: Any, hyp: Any, tolerance: float) -> bool:
    if ref is None or ref == "":
        return hyp is None or hyp == ""
    if spec.kind == "number":
        return _is_number(ref) and _is_number(hyp) and abs(float(ref) - float(hyp)) <= tolerance
    return hyp is not None and _norm_text(ref) == _norm_text(hyp)


def _finding_key(field_id: str, spec: Field, item: GroundedFinding) -> str:
    parts = [f"{sub.id}={_norm_text(item.values.get(sub.id))}" for sub in spec.fields if sub.kind == "enum"]
    return f"{field_id}: {', '.join(parts)}"


def diagnostic_findings(filled: FilledTemplate, template: Template) -> Counter[str]:
    """The abnormal assertions of a report (module docstring), as a multiset of strings."""
    found: Counter[str] = Counter()
    for section in template.sections:
        values = filled.sections.get(section.id, {})
        for spec in section.fields:
            field_id = f"{section.id}.{spec.id}"
            value = values.get(spec.id)
            if spec.kind == "enum" and spec.normal is not None and value not in (None, ""):
                if _norm_text(value) != _norm_text(spec.normal):
                    found[f"{field_id}={_norm_text(value)}"] += 1
            elif spec.kind == "findings" and isinstance(value, list):
                for item in value:
                    found[_finding_key(field_id, spec, item)] += 1
    return found


def _numbers(
    ref: FilledTemplate, hyp: FilledTemplate | None, template: Template, tolerances: dict[str, float]
) -> tuple[int, int, list[float]]:
    """(reference numbers, predicted within tolerance, absolute errors where both exist)."""
    total, within, errors = 0, 0, []

    def compare(spec: Field, field_id: str, r: Any, h: Any) -> None:
        nonlocal total, within
        if not _is_number(r):
            return
        total += 1
        if _is_number(h):
            errors.append(abs(float(r) - float(h)))
            within += int(errors[-1] <= _tolerance(spec, field_id, tolerances))

    for section in template.sections:
        ref_values = ref.sections.get(section.id, {})
        hyp_values = hyp.sections.get(section.id, {}) if hyp else {}
        for spec in section.fields:
            field_id = f"{section.id}.{spec.id}"
            if spec.kind == "number":
                compare(spec, field_id, ref_values.get(spec.id), hyp_values.get(spec.id))
            elif spec.kind == "findings" and isinstance(ref_values.get(spec.id), list):
                # Pair items with equal keys in order, so a curve's angle is compared with the same curve's.
                pool: dict[str, list[GroundedFinding]] = {}
                hyp_items = hyp_values.get(spec.id)
                for item in hyp_items if isinstance(hyp_items, list) else []:
                    pool.setdefault(_finding_key(field_id, spec, item), []).append(item)
                for item in ref_values[spec.id]:
                    candidates = pool.get(_finding_key(field_id, spec, item)) or []
                    partner = candidates.pop(0) if candidates else None
                    for sub in spec.fields:
                        if sub.kind == "number":
                            sub_id = f"{field_id}.{sub.id}"
                            compare(sub, sub_id, item.values.get(sub.id), partner.values.get(sub.id) if partner else None)
    return total, within, errors


def sample_structure(
    reference: str | FilledTemplate, prediction: str | None, template: Template | str, tolerances: dict[str, float] | None = None
) -> SampleStructure:
    """Score one prediction (markdown, or ``None`` when missing) against its reference."""
    spec = load_template(template)
    tolerances = tolerances or {}
    ref = reference if isinstance(reference, FilledTemplate) else parse(reference, spec)
    hyp: FilledTemplate | None = None
    error = ""
    if prediction is None:
        error = "missing prediction"
    else:
        try:
            hyp = parse(prediction, spec)
        except TemplateParseError as exc:
            error = str(exc)
    sample = SampleStructure(parsed=hyp is not None, conformant=hyp is not None and not validate(hyp, spec), error=error)
    for section in spec.sections:
        for item in section.fields:
            if item.kind == "findings":
                continue
            field_id = f"{section.id}.{item.id}"
            ref_value = ref.sections.get(section.id, {}).get(item.id)
            hyp_value = hyp.sections.get(section.id, {}).get(item.id) if hyp else None
            sample.field_correct[field_id] = hyp is not None and _same_value(
                item, ref_value, hyp_value, _tolerance(item, field_id, tolerances)
            )
    ref_findings = diagnostic_findings(ref, spec)
    hyp_findings = diagnostic_findings(hyp, spec) if hyp else Counter()
    sample.tp = sum((ref_findings & hyp_findings).values())
    sample.n_ref = sum(ref_findings.values())
    sample.n_pred = sum(hyp_findings.values())
    sample.numbers_total, sample.numbers_within, sample.abs_errors = _numbers(ref, hyp, spec, tolerances)
    return sample


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def sample_vector(s: SampleStructure) -> list[float]:
    """Per-sample sufficient statistics, in the column order :func:`corpus_from_sums` reads."""
    return [
        1.0, float(s.conformant), float(sum(s.field_correct.values())), float(len(s.field_correct)),
        s.tp, s.n_pred, s.n_ref, s.numbers_within, s.numbers_total, float(sum(s.abs_errors)), float(len(s.abs_errors)),
    ]


def corpus_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Corpus values for (B, 11) summed sample vectors (``numeric-mae`` is NaN when no number pairs exist)."""
    n, conformant, correct, fields, tp, n_pred, n_ref, within, numbers, err_sum, err_n = sums.T
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_ref)
    mae = np.full(len(sums), np.nan)
    np.divide(err_sum, err_n, out=mae, where=err_n > 0)
    return {
        "template-conformance": _ratio(conformant, n),
        "field-accuracy": _ratio(correct, fields),
        "diagnostic-precision": precision,
        "diagnostic-recall": recall,
        "diagnostic-f1": _ratio(2 * precision * recall, precision + recall),
        "numeric-within-tolerance": _ratio(within, numbers),
        "numeric-mae": mae,
    }


def _sample_value(name: str, s: SampleStructure) -> float:
    if name == "template-conformance":
        return float(s.conformant)
    if name == "field-accuracy":
        return sum(s.field_correct.values()) / len(s.field_correct) if s.field_correct else float("nan")
    total = s.n_pred + s.n_ref
    return 2 * s.tp / total if total else float("nan")


@register_metric("structured")
class StructuredScorer:
    """Scores predicted markdown against reference markdown (or filled templates) of one template."""

    name = "structured"

    def __init__(self, template: str | Template | None = None, tolerances: dict[str, float] | None = None):
        self.template = template
        self.tolerances = dict(tolerances or {})

    def samples(
        self, refs: Sequence[str | FilledTemplate], hyps: Sequence[str | None], templates: Sequence[str] | None = None
    ) -> list[SampleStructure]:
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} references but {len(hyps)} predictions")
        out = []
        for index, (ref, hyp) in enumerate(zip(refs, hyps)):
            template = templates[index] if templates else (ref.template if isinstance(ref, FilledTemplate) else self.template)
            if template is None:
                raise ValueError(f"sample {index}: no template named for the structured reference")
            out.append(sample_structure(ref, hyp, template, self.tolerances))
        return out

    def statistics(self, samples: Sequence[SampleStructure]) -> dict[str, WeightedStatistic]:
        """One bootstrap-ready statistic per score key."""
        vectors = np.array([sample_vector(s) for s in samples], dtype=float)
        return {
            f"{name}@{PROTOCOL}": SufficientStatistic(vectors, lambda sums, n=name: corpus_from_sums(sums)[n])
            for name in corpus_from_sums(vectors[:1])
        }

    def scores_from(self, samples: Sequence[SampleStructure]) -> list[Score]:
        if not samples:
            raise ValueError("no samples to score")
        scores = []
        for key, statistic in self.statistics(samples).items():
            name = key.partition("@")[0]
            per_sample = [_sample_value(name, s) for s in samples] if name in ("template-conformance", "field-accuracy", "diagnostic-f1") else None
            details: dict[str, Any] = {}
            if name == "field-accuracy":
                per_field: dict[str, list[bool]] = {}
                for s in samples:
                    for field_id, ok in s.field_correct.items():
                        per_field.setdefault(field_id, []).append(ok)
                details["per_field"] = {k: sum(v) / len(v) for k, v in per_field.items()}
            if name == "template-conformance":
                details["unparseable"] = sum(not s.parsed for s in samples)
            if name == "numeric-mae":
                total = sum(s.numbers_total for s in samples)
                details["coverage"] = sum(len(s.abs_errors) for s in samples) / total if total else 0.0
            scores.append(Score(name, statistic.value(), per_sample, PROTOCOL, details))
        return scores

    def compute_score(self, refs: Sequence[str | FilledTemplate], hyps: Sequence[str | None]) -> list[Score]:
        return self.scores_from(self.samples(refs, hyps))
