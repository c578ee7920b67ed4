"""Evaluate a predictions file against a reference manifest: every requested metric family, each value
with its protocol tag and a bootstrap confidence interval, optionally compared with a second system.

Predictions are joined to reference studies by study id. A reference study without a prediction is
scored as an empty prediction (empty report, no boxes, no answers) and listed in ``missing``; a
prediction for an unknown study is listed in ``extra`` and ignored. A family with nothing to score
(e.g. no study has boxes) is listed in ``unavailable`` with the reason, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radscribe.data.manifest import read_manifest
from radscribe.evaluate import chest as _chest_family, spine as _spine_family  # noqa: F401  (they register their families)
from radscribe.evaluate.base import FAMILY_FUNCTIONS, FamilyOutput, MetricUnavailable, Score, register_family
from radscribe.evaluate.bootstrap import SufficientStatistic, WeightedStatistic, bootstrap, grouped, paired_bootstrap
from radscribe.evaluate.predictions import Prediction, PredictionFile, read_predictions
from radscribe.types import Study

# Details kept in memory for plots but left out of metrics.json (their per-sample data is in per_sample.csv).
BULKY_DETAILS: frozenset[str] = frozenset({"gt_ious"})
DEFAULT_FAMILIES: tuple[str, ...] = ("nlg", "ce")
MODEL, COMPARED = "model", "compare"   # system names of the predictions file and of --compare


@dataclass
class MetricValue:
    family: str
    name: str
    protocol: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    samples: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    system: str = "model"   # the predictions file ("model"), --compare ("compare") or "baseline:<name>"

    @property
    def key(self) -> str:
        return f"{self.name}@{self.protocol}" if self.protocol else self.name


@dataclass
class Comparison:
    key: str
    estimate_a: float
    estimate_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    other: str = "compare"   # the system subtracted: --compare or "baseline:<name>"


@dataclass
class EvaluationResult:
    values: list[MetricValue]
    per_sample: list[tuple[str, str, float]]  # (sample id, metric key, value)
    missing: list[str]
    extra: list[str]
    unavailable: dict[str, str]
    warnings: list[str]
    comparisons: list[Comparison]
    settings: dict[str, Any]

    def value(self, key: str, system: str = "model") -> MetricValue:
        for item in self.values:
            if item.key == key and item.system == system:
                return item
        raise KeyError(f"no metric '{key}' of system '{system}'; have: {', '.join(sorted({f'{v.system}/{v.key}' for v in self.values}))}")

    def comparison(self, key: str, other: str) -> Comparison:
        """The model minus ``other`` (``compare`` or ``baseline:<name>``) on metric ``key``."""
        for item in self.comparisons:
            if item.key == key and item.other == other:
                return item
        raise KeyError(f"no comparison of '{key}' with '{other}'")

    def to_dict(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "settings": self.settings,
            "metrics": [
                {
                    "key": v.key, "system": v.system, "family": v.family, "name": v.name, "protocol": v.protocol, "value": clean(v.value),
                    "ci95": None if v.ci_low is None else [clean(v.ci_low), clean(v.ci_high)],
                    "samples": v.samples,
                    "details": _json_safe({k: d for k, d in v.details.items() if k not in BULKY_DETAILS}),
                }
                for v in self.values
            ],
            "comparisons": [
                {"key": c.key, "other": c.other, "a": clean(c.estimate_a), "b": clean(c.estimate_b), "difference": clean(c.difference),
                 "ci95": [clean(c.ci_low), clean(c.ci_high)], "p_value": c.p_value}
                for c in self.comparisons
            ],
            "missing_predictions": self.missing,
            "extra_predictions": self.extra,
            "unavailable": self.unavailable,
            "warnings": self.warnings,
        }

    def to_markdown(self) -> str:
        """A markdown table of every value with its protocol and CI, then comparisons and caveats."""
        def fmt(value: float | None) -> str:
            return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"

        lines = [
            f"# Evaluation of `{self.settings['predictions']}`",
            "",
            f"{self.settings['studies']} reference studies; {len(self.missing)} without a prediction (scored as empty); "
            f"bootstrap: {self.settings['bootstrap_resamples']} resamples, seed {self.settings['seed']}, 95% percentile CI.",
            "",
            "| family | metric | protocol | value | 95% CI | n | system |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in self.values:
            ci = "" if v.ci_low is None else f"[{fmt(v.ci_low)}, {fmt(v.ci_high)}]"
            lines.append(f"| {v.family} | {v.name} | `{v.protocol}` | {fmt(v.value)} | {ci} | {v.samples} | {v.system} |")
        if self.comparisons:
            lines += ["", "## Paired comparisons (the model minus the other system, same bootstrap resamples)", "",
                      "| metric | other | this | other value | difference | 95% CI | p |", "|---|---|---|---|---|---|---|"]
            for c in self.comparisons:
                other = self.settings["compare"] if c.other == COMPARED else c.other
                lines.append(f"| `{c.key}` | {other} | {fmt(c.estimate_a)} | {fmt(c.estimate_b)} | {fmt(c.difference)} | "
                             f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}] | {c.p_value:.3f} |")
        if self.unavailable:
            lines += ["", "## Not computed", ""] + [f"- **{k}**: {v}" for k, v in self.unavailable.items()]
        if self.missing:
            shown = ", ".join(self.missing[:20]) + (" ..." if len(self.missing) > 20 else "")
            lines += ["", f"## Missing predictions ({len(self.missing)})", "", shown]
        if self.warnings:
            lines += ["", f"## Warnings ({len(self.warnings)})", ""] + [f"- {w}" for w in self.warnings[:50]]
        return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class EvaluationOptions:
    protocol: str = "r2gen"
    labeler: str = "chexpert-lite"
    ref_labels: Path | None = None
    pred_labels: Path | None = None
    labels_name: str = "csv"
    chexbert_weights: Path | None = None
    chexbert_tokenizer: Path | None = None
    vqa_mode: str = "strict"
    match_box_labels: bool = True
    phrase_similarity: str = "label"
    tolerances: dict[str, float] = field(default_factory=dict)
    judge: Any = None  # a radscribe.evaluate.judge.JudgeClient
    judge_prompts: tuple[str, ...] = ("llmscore",)


@register_family("nlg")
def _nlg(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.nlg import NLGCorpus

    chosen = [s for s in studies if s.report_text]
    if not chosen:
        raise MetricUnavailable("no reference study has a findings or impression text")
    hyps = [(predictions[s.id].report or "") if s.id in predictions else "" for s in chosen]
    corpus = NLGCorpus.from_texts([s.report_text for s in chosen], hyps, protocol=options.protocol)
    scores = corpus.scores(("bleu", "rouge_l", "cider_d"))
    statistics: dict[str, WeightedStatistic] = {}
    for score in scores:
        if score.name.startswith("bleu"):
            statistics[score.key] = corpus.bleu_statistic(int(score.name[4:]))
        elif score.name == "rouge_l":
            statistics[score.key] = corpus.rouge_l_statistic()
        elif score.name == "cider_d":
            statistics[score.key] = corpus.cider_statistic()
    return FamilyOutput(scores, [s.id for s in chosen], statistics)


@register_family("ce")
def _ce(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.clinical import LabelMatrix, ce_statistics, clinical_scores, label_texts, read_label_csv

    labeler_options = {"chexbert_weights": options.chexbert_weights, "chexbert_tokenizer": options.chexbert_tokenizer}
    if options.ref_labels:
        ref = read_label_csv(options.ref_labels)
        if ref.ids is not None:
            known = set(ref.ids)
            chosen = [s for s in studies if s.id in known]
            ref = ref.select([s.id for s in chosen])
        else:
            chosen = list(studies)
        if len(ref) != len(chosen):
            raise ValueError(f"{options.ref_labels} has {len(ref)} rows and no id column, but the manifest has {len(chosen)} studies")
    else:
        chosen = [s for s in studies if s.report_text]
        if not chosen:
            raise MetricUnavailable("no reference study has a report text to label")
        ref = label_texts([s.report_text for s in chosen], options.labeler, **labeler_options)
    ids = [s.id for s in chosen]
    if options.pred_labels:
        pred_file = read_label_csv(options.pred_labels)
        hyp = pred_file.select(ids) if pred_file.ids else pred_file
        if len(hyp) != len(ids):
            raise ValueError(f"{options.pred_labels} has {len(hyp)} rows and no id column, for {len(ids)} studies")
    elif ids and all(i in predictions and predictions[i].labels is not None for i in ids):
        hyp = LabelMatrix.from_rows([predictions[i].labels or {} for i in ids], ids)
    else:
        hyp = label_texts([(predictions[i].report or "") if i in predictions else "" for i in ids], options.labeler, **labeler_options)
    both_files = options.ref_labels and options.pred_labels
    name = options.labels_name if both_files else options.labeler
    if (options.ref_labels or options.pred_labels) and not both_files:
        name = f"{options.labels_name}+{options.labeler}"
    ref, hyp = LabelMatrix(ref.values, tuple(ids)), LabelMatrix(hyp.values, tuple(ids))
    return FamilyOutput(clinical_scores(ref, hyp, name), ids, ce_statistics(ref, hyp, name))


@register_family("structured")
def _structured(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.structured import StructuredScorer

    chosen = [s for s in studies if s.structured and s.template]
    if not chosen:
        raise MetricUnavailable("no reference study has a structured report with its template")
    scorer = StructuredScorer(tolerances=options.tolerances)
    hyps = [predictions[s.id].report if s.id in predictions else None for s in chosen]
    samples = scorer.samples([s.structured for s in chosen], hyps, [s.template for s in chosen])  # type: ignore[misc]
    return FamilyOutput(scorer.scores_from(samples), [s.id for s in chosen], scorer.statistics(samples))


@register_family("grounding")
def _grounding(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.grounding import GroundingScorer

    chosen = [s for s in studies if s.boxes]
    if not chosen:
        raise MetricUnavailable("no reference study has boxes")
    scorer = GroundingScorer(match_labels=options.match_box_labels, similarity=options.phrase_similarity)
    hyps = [(predictions[s.id].boxes or []) if s.id in predictions else [] for s in chosen]
    samples = scorer.samples([s.boxes for s in chosen], hyps)
    return FamilyOutput(scorer.scores_from(samples), [s.id for s in chosen], scorer.statistics(samples))


@register_family("vqa")
def _vqa(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.vqa import VQAScorer

    pairs = [(s, index, qa) for s in studies for index, qa in enumerate(s.qa)]
    if not pairs:
        raise MetricUnavailable("no reference study has questions")
    scorer = VQAScorer(options.vqa_mode)
    answers = [predictions[s.id].answer_for(qa.id, qa.question) if s.id in predictions else None for s, _, qa in pairs]
    samples = scorer.samples([qa for _, _, qa in pairs], answers)
    ids = [f"{s.id}#{qa.id if qa.id is not None else index}" for s, index, qa in pairs]
    # questions about one image are not independent: the bootstrap resamples images with all their questions
    image_of = {s.id: number for number, s in enumerate(studies)}
    images = [image_of[s.id] for s, _, _ in pairs]
    statistics = {key: grouped(statistic, images) if isinstance(statistic, SufficientStatistic) else statistic
                  for key, statistic in scorer.statistics(samples).items()}
    return FamilyOutput(scorer.scores_from(samples), ids, statistics)


@register_family("judge")
def _judge(studies: list[Study], predictions: dict[str, Prediction], options: EvaluationOptions) -> FamilyOutput:
    from radscribe.evaluate.bootstrap import SampleMean
    from radscribe.evaluate.judge import judge_scores

    if options.judge is None:
        raise MetricUnavailable("the LLM judge is off; give --judge-url to enable it")
    chosen = [s for s in studies if s.report_text]
    hyps = [(predictions[s.id].report or "") if s.id in predictions else "" for s in chosen]
    scores: list[Score] = []
    for prompt in options.judge_prompts:
        scores += judge_scores(options.judge, prompt, [s.report_text for s in chosen], hyps)
    statistics: dict[str, WeightedStatistic] = {}
    for score in scores:
        judged = [v for v in score.per_sample or [] if v == v]
        if judged and len(judged) == len(chosen):
            statistics[score.key] = SampleMean(judged)
    return FamilyOutput(scores, [s.id for s in chosen], statistics)


FAMILIES: tuple[str, ...] = tuple(FAMILY_FUNCTIONS)


def _load(predictions: PredictionFile | Path | str) -> PredictionFile:
    return predictions if isinstance(predictions, PredictionFile) else read_predictions(predictions)


def _split(studies: list[Study], split: str | None, source: Any) -> list[Study]:
    if split is None:
        return studies
    chosen = [s for s in studies if s.split == split]
    if not chosen:
        raise ValueError(f"{source}: no study in split '{split}' (splits present: {', '.join(sorted({str(s.split) for s in studies}))})")
    return chosen


def evaluate(
    predictions: PredictionFile | Path | str | None,
    refs_manifest: Sequence[Study] | Path | str,
    metrics: Sequence[str] = DEFAULT_FAMILIES,
    protocol: str = "r2gen",
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    compare: PredictionFile | Path | str | None = None,
    options: EvaluationOptions | None = None,
    on_family: Callable[[str], None] | None = None,
    split: str | None = None,
    baselines: Sequence[str] | bool = (),
    train_split: str = "train",
) -> EvaluationResult:
    """Score ``predictions`` against the reference studies (those of ``split`` when given) for the
    requested metric families.

    ``n_resamples=0`` turns the bootstrap off. With ``compare``, every metric is also computed for the
    second predictions file and the difference (this minus other) gets a paired-bootstrap CI and p-value.
    ``baselines`` (names, or True for every baseline of each family, :data:`baselines.BASELINES`) are
    learned from the manifest's ``train_split`` and scored as systems of their own; each metric of the
    model then gets a paired difference with each baseline. ``predictions=None`` scores the baselines only.
    """
    from radscribe.evaluate.baselines import BASELINES, baseline_predictions

    options = options or EvaluationOptions()
    options.protocol = protocol
    unknown = [m for m in metrics if m not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown metric family {unknown}; known: {', '.join(FAMILIES)}")
    all_studies = list(refs_manifest) if not isinstance(refs_manifest, (str, Path)) else read_manifest(refs_manifest)
    studies = _split(all_studies, split, refs_manifest if isinstance(refs_manifest, (str, Path)) else "the reference studies")
    if predictions is None and not baselines:
        raise ValueError("nothing to score: give a predictions file or baselines")
    if baselines and baselines is not True:
        known = {name for family in metrics for name in BASELINES.get(family, ())}
        wrong = sorted(set(baselines) - known)  # type: ignore[arg-type]
        if wrong:
            raise ValueError(f"unknown baselines {wrong} for families {', '.join(metrics)}; known: {', '.join(sorted(known)) or 'none'}")
    system = _load(predictions) if predictions is not None else None
    other = _load(compare) if compare is not None else None
    train = [s for s in all_studies if s.split == train_split] if baselines else []
    ref_ids = {s.id for s in studies}
    values: list[MetricValue] = []
    per_sample: list[tuple[str, str, float]] = []
    unavailable: dict[str, str] = {}
    comparisons: list[Comparison] = []
    for family in metrics:
        if on_family:
            on_family(family)
        systems: dict[str, dict[str, Prediction]] = {}
        if system is not None:
            systems[MODEL] = system.predictions
        if other is not None:
            systems[COMPARED] = other.predictions
        names = BASELINES.get(family, ()) if baselines is True else [b for b in baselines if b in BASELINES.get(family, ())]  # type: ignore[union-attr]
        if baselines and not train and names:
            unavailable[f"{family}/baselines"] = f"no study in the training split '{train_split}' to learn baselines from"
            names = []
        for name in names:
            try:
                systems[f"baseline:{name}"] = baseline_predictions(family, name, train, studies, seed=seed)
            except (MetricUnavailable, ValueError) as reason:
                unavailable[f"{family}/baseline:{name}"] = str(reason)
        outputs: dict[str, FamilyOutput] = {}
        for name, predicted in systems.items():
            try:
                outputs[name] = FAMILY_FUNCTIONS[family](studies, predicted, options)
            except MetricUnavailable as reason:
                unavailable[family if name in (MODEL, COMPARED) else f"{family}/{name}"] = str(reason)
        primary = MODEL if MODEL in outputs else None
        for name, output in outputs.items():
            for score in output.scores:
                statistic = output.statistics.get(score.key)
                item = MetricValue(family, score.name, score.protocol, score.value, samples=len(output.sample_ids), details=score.details, system=name)
                if statistic is not None and n_resamples > 0 and math.isfinite(score.value):
                    result = bootstrap(statistic, n_resamples=n_resamples, seed=seed)
                    item.ci_low, item.ci_high = result.low, result.high
                if name != COMPARED:  # --compare is reported through the paired differences only
                    values.append(item)
                if name == MODEL and score.per_sample is not None and len(score.per_sample) == len(output.sample_ids):
                    per_sample += [(sid, score.key, v) for sid, v in zip(output.sample_ids, score.per_sample)]
                if primary is None or name == MODEL or statistic is None or n_resamples <= 0:
                    continue
                mine = outputs[MODEL].statistics.get(score.key)
                if mine is None or mine.size != statistic.size:
                    continue
                paired = paired_bootstrap(mine, statistic, n_resamples=n_resamples, seed=seed)
                comparisons.append(
                    Comparison(score.key, paired.estimate_a, paired.estimate_b, paired.difference, paired.low, paired.high, paired.p_value, other=name)
                )
    settings = {
        "predictions": str(system.path) if system is not None else None, "compare": str(other.path) if other else None,
        "metrics": list(metrics), "split": split, "baselines": sorted({v.system for v in values} - {MODEL, COMPARED}),
        "train_split": train_split if baselines else None,
        "protocol": protocol, "bootstrap_resamples": n_resamples, "seed": seed, "ci_level": 0.95,
        "labeler": options.labeler, "vqa_mode": options.vqa_mode, "studies": len(studies),
    }
    predicted_ids = set(system.predictions) if system is not None else ref_ids
    return EvaluationResult(
        values=values,
        per_sample=per_sample,
        missing=sorted(ref_ids - predicted_ids),
        extra=sorted(predicted_ids - ref_ids),
        unavailable=unavailable,
        warnings=list(system.warnings) if system is not None else [],
        comparisons=comparisons,
        settings=settings,
    )


def write_result(result: EvaluationResult, out_dir: Path | str) -> list[Path]:
    """Write metrics.json, metrics.md, per_sample.csv and the PNG plots (atomically); returns the paths."""
    import csv
    import io
    import json

    from radscribe.data.manifest import atomic_write
    from radscribe.evaluate.plots import plot_iou_histogram, plot_label_f1

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_write(out / "metrics.json") as handle:
        json.dump(result.to_dict(), handle, indent=2)
        handle.write("\n")
    written.append(out / "metrics.json")
    with atomic_write(out / "metrics.md") as handle:
        handle.write(result.to_markdown())
    written.append(out / "metrics.md")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sample_id", "metric", "value"])
    for sample_id, key, value in result.per_sample:
        writer.writerow([sample_id, key, "" if not math.isfinite(value) else repr(float(value))])
    with atomic_write(out / "per_sample.csv") as handle:
        handle.write(buffer.getvalue())
    written.append(out / "per_sample.csv")
    for plot, name in ((plot_label_f1, "ce_label_f1.png"), (plot_iou_histogram, "iou_histogram.png")):
        target = out / f".{name}.tmp.png"
        if plot(result, target) is not None:
            target.replace(out / name)
            written.append(out / name)
    return written
