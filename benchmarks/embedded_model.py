"""The model card's numbers: a radscribe model and the baselines on the validation splits, with 95% CIs.

Tasks (validation splits carved from the training data by image; manifests from `bash configs/prepare-data.sh`):

- spine: CADMA valid (262 films). The model writes the constrained `spine-ap-alignment` report, then
  the constrained vertebra grounding pass (radscribe.infer.Reporter), and answers the region task
  ("Locate the spine column.", constrained to one box when the codec is `radscribe`). Scored by
  radscribe.evaluate.spine (vertebra F1 at IoU 0.5 with Hungarian matching, matched IoU, count errors,
  severity accuracy, angle MAE, column IoU), radscribe.evaluate.structured (template conformance, field
  accuracy...) and radscribe.evaluate.nlg (BLEU-4, ROUGE-L, CIDEr-D on r2gen-cleaned markdown).
- chest: the NIH carve-out (75 images), template `chest-pa`, no grounding pass. Scored by
  radscribe.evaluate.chest (per-field and macro F1 against the NIH labels: weak labels) and NLG; the
  model's macro F1 minus each label prior's, paired bootstrap over the same resamples.
- vqa: VQA-RAD carve-out (464 questions on 47 images), Reporter.ask, strict and llava-med-compat.

Baselines (radscribe.evaluate.baselines), on the same images: retrieval by the model's image
embeddings, the field-wise majority report (chest also the `positive` and `sampled` label priors; VQA the
majority answer per answer type, and per question text), and the mean training spine.

Every value comes with a 95% percentile bootstrap interval (1,000 resamples, seed 0) over images; VQA
resamples images too, with all their questions (questions about one image are not independent).

Model predictions are cached as JSONL per task under --cache-dir (default runs/eval/embedded_model/<weights
fingerprint>), so an interrupted run resumes where it stopped.

    python benchmarks/embedded_model.py --model runs/radscribe-tiny/final
    python benchmarks/embedded_model.py --model runs/gpu-spine-850/final --limit 8 --out /tmp/dev.json
    python benchmarks/embedded_model.py --model runs/radscribe-tiny/final --baselines-only

Writes benchmarks/results/embedded_model.json (or --out; --baselines-only: embedded_model_baselines.json)
and, with model predictions, spine overlays (best, median, worst vertebra F1) in --overlays.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TASKS = ("spine", "chest", "vqa")
SPINE_TEMPLATE, CHEST_TEMPLATE = "spine-ap-alignment", "chest-pa"
GOALS = {
    "spine": {"vertebra-f1": ">= 0.80", "severity-accuracy": ">= 0.75", "angle-mae": "<= 7 degrees", "template-conformance": "= 1.0"},
    "chest": {"macro-f1 minus prior": "> 0 with the 95% CI excluding 0"},
    "vqa": {"closed-accuracy": ">= 0.70"},
}
ANCHORS = {"vqa": {"MEVF (published, VQA-RAD test set)": {"closed-accuracy": 0.751, "open": 0.439}}}
STRUCTURED_KEYS = ("template-conformance", "field-accuracy", "diagnostic-f1", "numeric-within-tolerance")
REGION_PHRASE = "spine column"
# Enough for "<box>spine column" + four location tokens + "</box>" even written one character per token.
REGION_TOKENS = 64
OVERLAY_SCALE = 2
OVERLAY_MIN_WIDTH = 400  # pixels: room for the legend beside narrow films
OVERLAY_MAX_BYTES = 200_000  # the model card embeds these


# ----- data -----------------------------------------------------------------------------------------------


def load_split(manifest: Path, split: str, limit: int) -> list[Any]:
    from radscribe.data.manifest import read_manifest

    if not manifest.exists():
        sys.exit(f"{manifest} is missing: build the manifests with `bash configs/prepare-data.sh` (see configs/radscribe-tiny.yaml)")
    studies = [study for study in read_manifest(manifest) if study.split == split]
    if not studies:
        sys.exit(f"{manifest}: no study in split '{split}'")
    return studies[:limit] if limit and split == "valid" else studies


def display(path: Path) -> str:
    """A path as the JSON shows it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ----- prediction cache -----------------------------------------------------------------------------------


class Cache:
    """Append-only JSONL of model predictions keyed by ``key``; a torn last line (a killed run) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.records[record["key"]] = record

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
                self.records[record["key"]] = record
            handle.flush()


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())


def _box_dicts(boxes: Sequence[Any]) -> list[dict[str, Any]]:
    return [box.to_dict() for box in boxes]


def result_record(key: str, result: Any) -> dict[str, Any]:
    """What the cache keeps of a Reporter result (a ReportError becomes an error record)."""
    if not result.ok:
        return {"key": key, "error": f"{result.stage}: {result.reason}"}
    return {
        "key": key,
        "text": result.text,
        "filled": result.filled.to_dict() if result.filled is not None else None,
        "valid": result.valid,
        "issues": result.issues,
        "boxes": _box_dicts(result.boxes),
        "box_errors": len(result.box_errors),
        "seconds": round(sum(result.timings.values()), 4),
    }


def predict_reports(model: Any, studies: Sequence[Any], manifest: Path, cache: Cache, args: argparse.Namespace, task: str) -> None:
    """Run the Reporter (and for spine the region task) on every study not cached yet."""
    from radscribe.evaluate.baselines import image_paths
    from radscribe.infer import Reporter, RFIConfig

    template = SPINE_TEMPLATE if task == "spine" else CHEST_TEMPLATE
    reporter = Reporter(
        model, template=template, rfi=RFIConfig() if args.rfi else None, constrained=True,
        ground=None if task == "spine" else (), batch_size=args.batch_size,
    )  # fmt: skip
    todo = [study for study in studies if study.id not in cache.records]
    region = RegionTask(model) if task == "spine" else None
    with progress_bar() as bar:
        handle = bar.add_task(f"{task}: model reports", total=len(studies), completed=len(studies) - len(todo))
        for batch in chunks(todo, args.batch_size):
            paths = image_paths(batch, manifest)
            start = time.perf_counter()
            results = reporter.report(paths)
            records = [result_record(study.id, result) for study, result in zip(batch, results)]
            if region is not None:
                sizes = [(study.images[0].width, study.images[0].height) for study in batch]
                for record, (text, column) in zip(records, region.locate(paths, sizes)):
                    record["region_text"], record["column"] = text, column.to_dict() if column is not None else None
            for record in records:
                record["batch_seconds_per_image"] = round((time.perf_counter() - start) / len(batch), 4)
            cache.add(records)
            bar.advance(handle, len(batch))


class RegionTask:
    """The region task: 'Locate the spine column.' -> one box, decoded with the model's codec."""

    def __init__(self, model: Any):
        from radscribe.grounding import create_codec
        from radscribe.infer import TokenConstraint, Vocabulary, grounding_grammar
        from radscribe.tasks import prompt

        self.model = model
        self.codec = create_codec(model.codec_name)
        self.prompt = prompt("region", region=REGION_PHRASE)
        self.constraint = None
        if self.codec.name == "radscribe":
            self.constraint = TokenConstraint(grounding_grammar(REGION_PHRASE, self.codec.name, 1), Vocabulary.from_model(model))

    def locate(self, paths: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> list[tuple[str, Any]]:
        from radscribe.infer import constrained_generate_kwargs

        # a constrained logits processor follows the rows of one generate call: a new one per call
        kwargs = constrained_generate_kwargs(self.constraint, REGION_TOKENS) if self.constraint is not None else {"max_new_tokens": REGION_TOKENS}
        texts = self.model.generate(list(paths), [self.prompt] * len(paths), tasks=["region"] * len(paths), **kwargs)
        out = []
        for text, size in zip(texts, sizes):
            boxes = self.codec.decode(text, size).boxes
            out.append((text, boxes[0] if boxes else None))
        return out


def predict_answers(model: Any, studies: Sequence[Any], manifest: Path, cache: Cache, limit: int) -> None:
    from radscribe.evaluate.baselines import image_paths
    from radscribe.infer import Reporter

    reporter = Reporter(model, ground=())
    questions = question_list(studies, limit)
    paths = dict(zip((s.id for s in studies), image_paths(studies, manifest)))
    todo = [(key, study, qa) for key, study, qa in questions if key not in cache.records]
    with progress_bar() as bar:
        handle = bar.add_task("vqa: model answers", total=len(questions), completed=len(questions) - len(todo))
        for key, study, qa in todo:
            start = time.perf_counter()
            result = reporter.ask(paths[study.id], qa.question)
            record = {"key": key, "answer": result.text} if result.ok else {"key": key, "error": f"{result.stage}: {result.reason}"}
            record["seconds"] = round(time.perf_counter() - start, 4)
            cache.add([record])
            bar.advance(handle)


def question_list(studies: Sequence[Any], limit: int) -> list[tuple[str, Any, Any]]:
    """(key, study, qa) for every validation question (the first ``limit`` with --limit)."""
    questions = [(f"{study.id}#{qa.id or index}", study, qa) for study in studies for index, qa in enumerate(study.qa)]
    return questions[:limit] if limit else questions


def model_reports(studies: Sequence[Any], cache: Cache, template: str) -> list[Any]:
    """Cached model records -> ReportPredictions (an error or unparseable report has ``filled=None``)."""
    from radscribe.evaluate.baselines import ReportPrediction
    from radscribe.evaluate.spine import vertebra_boxes
    from radscribe.templates import FilledTemplate, render
    from radscribe.types import Box

    out = []
    for study in studies:
        record = cache.records[study.id]
        filled = FilledTemplate.from_dict(record["filled"]) if record.get("filled") else None
        markdown = render(filled) if filled is not None else record.get("text", "")
        boxes = [Box.from_dict(box) for box in record.get("boxes", [])]
        column = Box.from_dict(record["column"]) if record.get("column") else None
        vertebrae = tuple(vertebra_boxes(boxes)) if template == SPINE_TEMPLATE else None
        out.append(ReportPrediction(markdown, filled, vertebrae, column, source="model"))
    return out


# ----- scoring --------------------------------------------------------------------------------------------


def interval(statistic: Any, args: argparse.Namespace) -> dict[str, float]:
    from radscribe.evaluate.bootstrap import bootstrap

    result = bootstrap(statistic, n_resamples=args.resamples, seed=args.seed)
    return {"value": round(result.estimate, 4), "low": round(result.low, 4), "high": round(result.high, 4)}


def report_statistics(references: Sequence[str], predictions: Sequence[Any], template: str) -> dict[str, Any]:
    """Template conformance and field metrics (structured) and BLEU-4 / ROUGE-L / CIDEr-D (nlg, r2gen)."""
    from radscribe.evaluate.nlg import NLGCorpus
    from radscribe.evaluate.structured import StructuredScorer
    from radscribe.templates import render

    scorer = StructuredScorer(template)
    hyps = [render(p.filled) if p.filled is not None else None for p in predictions]
    structured = scorer.statistics(scorer.samples(list(references), hyps))
    out = {key.partition("@")[0]: structured[key] for key in structured if key.partition("@")[0] in STRUCTURED_KEYS}
    corpus = NLGCorpus.from_texts(list(references), [p.markdown for p in predictions], protocol="r2gen")
    out[f"bleu4@{corpus.protocol}"] = corpus.bleu_statistic(4)
    out[f"rouge_l@{corpus.protocol}"] = corpus.rouge_l_statistic()
    out[f"cider_d@{corpus.protocol}"] = corpus.cider_statistic()
    return out


def spine_samples(studies: Sequence[Any], predictions: Sequence[Any]) -> list[Any]:
    from radscribe.evaluate.spine import spine_sample
    from radscribe.templates import parse

    return [
        spine_sample(study.boxes, parse(study.structured, study.template), p.vertebrae or (), p.filled, p.column)
        for study, p in zip(studies, predictions)
    ]


def score_spine(studies: Sequence[Any], systems: dict[str, list[Any]], args: argparse.Namespace) -> dict[str, Any]:
    from radscribe.evaluate.spine import BOX_METRICS, COLUMN_METRICS, TEMPLATE_METRICS, spine_statistics

    references = [study.structured for study in studies]
    out: dict[str, Any] = {}
    for name, predictions in systems.items():
        metrics = list(TEMPLATE_METRICS)
        if predictions[0].vertebrae is not None:
            metrics += BOX_METRICS
        if any(p.column is not None for p in predictions) or name == "model":
            metrics += COLUMN_METRICS
        statistics = spine_statistics(spine_samples(studies, predictions), metrics)
        statistics.update(report_statistics(references, predictions, SPINE_TEMPLATE))
        out[name] = {key: interval(statistic, args) for key, statistic in statistics.items()}
    return out


def score_chest(studies: Sequence[Any], systems: dict[str, list[Any]], args: argparse.Namespace) -> dict[str, Any]:
    from radscribe.evaluate.bootstrap import paired_bootstrap
    from radscribe.evaluate.chest import chest_statistics, per_field_table, predicted_positives, reference_positives

    reference = reference_positives([study.findings for study in studies])
    references = [study.structured for study in studies]
    out: dict[str, Any] = {"systems": {}, "per_field": {}, "paired_macro_f1_difference": {}}
    macro = {}
    for name, predictions in systems.items():
        predicted = predicted_positives([p.filled for p in predictions])
        statistics = chest_statistics(reference, predicted)
        macro[name] = statistics["macro-f1"]
        statistics.update(report_statistics(references, predictions, CHEST_TEMPLATE))
        out["systems"][name] = {key: interval(statistic, args) for key, statistic in statistics.items()}
        out["per_field"][name] = per_field_table(reference, predicted)
    if "model" in macro:
        for name, statistic in macro.items():
            if name == "model":
                continue
            paired = paired_bootstrap(macro["model"], statistic, n_resamples=args.resamples, seed=args.seed)
            out["paired_macro_f1_difference"][f"model - {name}"] = {
                "difference": round(paired.difference, 4), "low": round(paired.low, 4), "high": round(paired.high, 4),
                "p_value": round(paired.p_value, 4), "share_model_better": round(paired.share_a_better, 4),
            }  # fmt: skip
    return out


def vqa_image_statistics(samples: Sequence[Any], image_of: Sequence[int], n_images: int) -> dict[str, Any]:
    """Per metric the mean over the questions it applies to, from per-IMAGE sums (resampling images)."""
    from radscribe.evaluate.bootstrap import SufficientStatistic

    names = list(dict.fromkeys(name for sample in samples for name in sample.values))
    out = {}
    for name in names:
        sums = np.zeros((n_images, 2))
        for sample, image in zip(samples, image_of):
            if name in sample.values and sample.values[name] is not None:
                sums[image] += (float(sample.values[name]), 1.0)
        out[name] = SufficientStatistic(sums, lambda totals: np.divide(totals[:, 0], totals[:, 1], out=np.zeros(len(totals)), where=totals[:, 1] > 0))
    return out


def score_vqa(questions: Sequence[tuple[str, Any, Any]], systems: dict[str, list[str]], args: argparse.Namespace) -> dict[str, Any]:
    from radscribe.evaluate.vqa import MODES, VQAScorer

    image_ids = list(dict.fromkeys(study.id for _, study, _ in questions))
    image_of = [image_ids.index(study.id) for _, study, _ in questions]
    references = [qa for _, _, qa in questions]
    out: dict[str, Any] = {}
    for name, answers in systems.items():
        out[name] = {}
        for mode in MODES:
            samples = VQAScorer(mode).samples(references, answers)
            statistics = vqa_image_statistics(samples, image_of, len(image_ids))
            out[name][mode] = {key: interval(statistic, args) for key, statistic in statistics.items()}
            if mode == "llava-med-compat":
                out[name][mode]["closed_dropped"] = sum(s.answer_type == "closed" and s.values["closed-accuracy"] is None for s in samples)
    return out


# ----- overlays -------------------------------------------------------------------------------------------


def draw_overlay(path: Path, image_path: Path, truth: Sequence[Any], prediction: Any, sample: Any, reference: Any, title: str) -> Path:
    """True vertebra boxes (green), predicted ones (red), predicted column (yellow); small palette PNG."""
    from PIL import Image, ImageDraw

    from radscribe.data.images import read_image
    from radscribe.data.manifest import atomic_write
    from radscribe.evaluate.spine import largest_curve_angle

    radiograph = read_image(image_path)
    width, height = radiograph.width, radiograph.height
    severity = prediction.filled.sections.get("alignment", {}).get("severity") if prediction.filled else None
    lines = [
        title,
        f"vertebra F1 {sample.f1:.2f} ({sample.tp} matched of {sample.n_pred} predicted, {sample.n_true} true)",
        f"severity {severity or '-'} (reference {reference.get('alignment.severity')})",
        f"largest angle {largest_curve_angle(prediction.filled):.1f} (reference {largest_curve_angle(reference):.1f}) deg",
        f"column IoU {sample.column_iou:.2f}   green truth, red model, yellow model column",
    ]
    band = 6 + 11 * len(lines)  # the legend sits on black above the film, legible at any film width
    film = radiograph.to_pil().convert("RGB").resize((width * OVERLAY_SCALE, height * OVERLAY_SCALE), Image.Resampling.BILINEAR)
    image = Image.new("RGB", (max(film.width, OVERLAY_MIN_WIDTH), film.height + band))
    image.paste(film, (0, band))
    draw = ImageDraw.Draw(image)

    def corners(box: Any) -> list[float]:
        scale_x, scale_y = width * OVERLAY_SCALE, height * OVERLAY_SCALE
        return [box.x_min * scale_x, band + box.y_min * scale_y, box.x_max * scale_x, band + box.y_max * scale_y]

    for box in truth:
        draw.rectangle(corners(box), outline=(60, 220, 60), width=1)
    for box in prediction.vertebrae or ():
        draw.rectangle(corners(box), outline=(255, 60, 60), width=1)
    if prediction.column is not None:
        draw.rectangle(corners(prediction.column), outline=(250, 210, 40), width=1)
    for row, text in enumerate(lines):
        draw.text((4, 3 + 11 * row), text, fill=(255, 255, 255))
    with atomic_write(path, "wb") as handle:
        handle.write(small_png(image))
    return path


def small_png(image: Any, limit: int = OVERLAY_MAX_BYTES) -> bytes:
    """Palette PNG bytes under ``limit``: fewer colours first, then a smaller picture."""
    import io

    colors = 64
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=colors).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit:
            return buffer.getvalue()
        if colors > 16:
            colors //= 2
        else:
            image = image.resize((image.width * 3 // 4, image.height * 3 // 4))


def write_overlays(folder: Path, studies: Sequence[Any], predictions: Sequence[Any], samples: Sequence[Any], manifest: Path) -> list[str]:
    from radscribe.evaluate.baselines import image_paths
    from radscribe.evaluate.spine import vertebra_boxes
    from radscribe.templates import parse

    order = sorted(range(len(samples)), key=lambda i: (samples[i].f1, studies[i].id))
    picks = {"worst": order[0], "median": order[len(order) // 2], "best": order[-1]}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, index in picks.items():
        study = studies[index]
        path = folder / f"{rank}.png"
        draw_overlay(
            path, image_paths([study], manifest)[0], vertebra_boxes(study.boxes), predictions[index], samples[index],
            parse(study.structured, study.template), f"{rank} by vertebra F1: {study.id[:28]}",
        )  # fmt: skip
        written.append(display(path))
    return written


# ----- main -----------------------------------------------------------------------------------------------


def embedder(model: Any):
    import torch

    def embed(paths: Sequence[Path]) -> np.ndarray:
        with torch.no_grad():
            return model.image_embeddings(list(paths)).cpu().numpy()

    return embed


def cached_embeddings(cache_dir: Path, name: str, studies: Sequence[Any], manifest: Path, embed: Any) -> np.ndarray:
    from radscribe.data.manifest import atomic_write
    from radscribe.evaluate.baselines import embed_studies

    path = cache_dir / f"embeddings-{name}.npz"
    ids = np.array([study.id for study in studies])
    if path.exists():
        stored = np.load(path)
        if stored["ids"].shape == ids.shape and (stored["ids"] == ids).all():
            return stored["vectors"]
    vectors = embed_studies(studies, manifest, embed)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, ids=ids, vectors=vectors)
    return vectors


def generation_seconds(cache: Cache, keys: Sequence[str]) -> dict[str, float]:
    seconds = [cache.records[key].get("batch_seconds_per_image", cache.records[key].get("seconds", 0.0)) for key in keys]
    return {"seconds_per_item_mean": round(float(np.mean(seconds)), 3), "items": len(seconds)} if seconds else {}


def run_model_reports(model, valid, manifest, cache_dir, args, task, template, section) -> list[Any]:
    """The model's reports for ``task`` (cached, resumable), with their error, validity and timing counts in ``section``."""
    cache = Cache(cache_dir / f"{task}.jsonl")
    predict_reports(model, valid, manifest, cache, args, task)
    section["model_errors"] = sum("error" in cache.records[s.id] for s in valid)
    section["model_reports_valid"] = sum(bool(cache.records[s.id].get("valid")) for s in valid) / len(valid)
    section["model_timing"] = generation_seconds(cache, [s.id for s in valid])
    return model_reports(valid, cache, template)


def run_spine(args, model, embed, cache_dir, result) -> None:
    from radscribe.evaluate import baselines

    manifest = args.spine_manifest
    train, valid = load_split(manifest, "train", 0), load_split(manifest, "valid", args.limit)
    index = baselines.NearestStudy(train, cached_embeddings(cache_dir, "spine-train", train, manifest, embed))
    systems: dict[str, list[Any]] = {}
    section: dict[str, Any] = {"images": len(valid), "manifest": display(manifest)}
    if not args.baselines_only:
        systems["model"] = run_model_reports(model, valid, manifest, cache_dir, args, "spine", SPINE_TEMPLATE, section)
    systems["retrieval"] = baselines.retrieval_reports(index, cached_embeddings(cache_dir, "spine-valid", valid, manifest, embed), with_boxes=True)
    systems["prior"] = baselines.prior_reports(train, len(valid), SPINE_TEMPLATE)
    systems["mean-spine"] = baselines.mean_spine_reports(baselines.mean_spine(train), valid)
    section["systems"] = score_spine(valid, systems, args)
    section["constant_angle"] = constant_angle(train, valid, args)
    if "model" in systems:
        samples = spine_samples(valid, systems["model"])
        section["overlays"] = write_overlays(args.overlays, valid, systems["model"], samples, manifest)
    result["spine"] = section


def constant_angle(train: Sequence[Any], valid: Sequence[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Angle MAE of always answering the training median of the largest curve angle (the best constant)."""
    from radscribe.evaluate.bootstrap import SampleMean
    from radscribe.evaluate.spine import largest_curve_angle
    from radscribe.templates import parse

    median = float(np.median([largest_curve_angle(parse(s.structured, s.template)) for s in train]))
    errors = [abs(largest_curve_angle(parse(s.structured, s.template)) - median) for s in valid]
    return {"angle": round(median, 2), "angle-mae": interval(SampleMean(errors), args), "note": "a reference number for angle-mae, not a report"}


def run_chest(args, model, embed, cache_dir, result) -> None:
    from radscribe.evaluate import baselines
    from radscribe.evaluate.chest import nih_fields

    manifest = args.chest_manifest
    train, valid = load_split(manifest, "train", 0), load_split(manifest, "valid", args.limit)
    index = baselines.NearestStudy(train, cached_embeddings(cache_dir, "chest-train", train, manifest, embed))
    systems: dict[str, list[Any]] = {}
    section: dict[str, Any] = {
        "images": len(valid), "manifest": display(manifest), "fields": list(nih_fields()),
        "labels": "NIH ChestX-ray14 image labels (weak, NLP-mined)",
    }  # fmt: skip
    if not args.baselines_only:
        systems["model"] = run_model_reports(model, valid, manifest, cache_dir, args, "chest", CHEST_TEMPLATE, section)
    systems["retrieval"] = baselines.retrieval_reports(index, cached_embeddings(cache_dir, "chest-valid", valid, manifest, embed), with_boxes=False)
    systems["prior"] = baselines.prior_reports(train, len(valid), CHEST_TEMPLATE)
    for kind in baselines.CHEST_PRIORS:
        systems[f"prior-{kind}"] = baselines.chest_label_prior(train, len(valid), kind, seed=args.seed)
    section.update(score_chest(valid, systems, args))
    result["chest"] = section


def run_vqa(args, model, embed, cache_dir, result) -> None:
    from radscribe.evaluate import baselines

    manifest = args.vqa_manifest
    train, valid = load_split(manifest, "train", 0), load_split(manifest, "valid", 0)
    questions = question_list(valid, args.limit)
    valid = [s for s in valid if any(study.id == s.id for _, study, _ in questions)]
    index = baselines.NearestStudy(train, cached_embeddings(cache_dir, "vqa-train", train, manifest, embed))
    systems: dict[str, list[str]] = {}
    section: dict[str, Any] = {
        "questions": len(questions), "images": len(valid), "manifest": display(manifest),
        "closed": sum(qa.answer_type == "closed" for _, _, qa in questions),
        "open": sum(qa.answer_type == "open" for _, _, qa in questions),
    }  # fmt: skip
    if not args.baselines_only:
        cache = Cache(cache_dir / "vqa.jsonl")
        predict_answers(model, valid, manifest, cache, args.limit)
        systems["model"] = [cache.records[key].get("answer", "") for key, _, _ in questions]
        section["model_errors"] = sum("error" in cache.records[key] for key, _, _ in questions)
        section["model_timing"] = generation_seconds(cache, [key for key, _, _ in questions])
    train_qas = [qa for study in train for qa in study.qa]
    per_image = baselines.retrieval_answers(index, cached_embeddings(cache_dir, "vqa-valid", valid, manifest, embed), [s.qa for s in valid])
    retrieved = {f"{study.id}#{qa.id or i}": answer for study, answers in zip(valid, per_image) for i, (qa, answer) in enumerate(zip(study.qa, answers))}
    systems["retrieval"] = [retrieved[key] for key, _, _ in questions]
    for name, by_question in (("majority", False), ("question-prior", True)):
        prior = baselines.AnswerPrior(train_qas, by_question=by_question)
        systems[name] = [prior.answer(qa) for _, _, qa in questions]
    section["systems"] = score_vqa(questions, systems, args)
    section["anchors"] = ANCHORS["vqa"]
    result["vqa"] = section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved model folder (also the image embedder of the retrieval baseline)")
    parser.add_argument("--limit", type=int, default=0, help="first N validation images (spine, chest) / questions (vqa); 0: all")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of spine,chest,vqa")
    parser.add_argument("--baselines-only", action="store_true", help="score only the baselines (the model embeds images for retrieval)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rfi", action="store_true", help="Region-Focused Inference crops before the spine/chest report")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spine-manifest", type=Path, default=ROOT / "data" / "cadma" / "spine.jsonl")
    parser.add_argument("--chest-manifest", type=Path, default=ROOT / "data" / "nih" / "chest.jsonl")
    parser.add_argument("--vqa-manifest", type=Path, default=ROOT / "data" / "vqa-rad" / "vqa.jsonl")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: runs/eval/embedded_model/<weights fingerprint>")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--overlays", type=Path, default=None, help="default: <--out without .json>_overlays/")
    args = parser.parse_args()
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        sys.exit(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    out = args.out or RESULTS / ("embedded_model_baselines.json" if args.baselines_only else "embedded_model.json")
    args.overlays = args.overlays or out.with_name(out.stem + "_overlays")

    from radscribe.data.manifest import atomic_write
    from radscribe.infer import load_model, model_version

    started = time.perf_counter()
    model, description = load_model(str(args.model))
    version = model_version(model)
    # Keyed by the weights and by RFI (which changes what the model sees), so runs never mix predictions.
    cache_dir = args.cache_dir or ROOT / "runs" / "eval" / "embedded_model" / (version.replace(":", "-") + ("-rfi" if args.rfi else ""))
    result: dict[str, Any] = {
        "benchmark": "embedded_model",
        "command": "python benchmarks/embedded_model.py " + " ".join(sys.argv[1:]),
        "model": {"path": str(args.model), "description": description, "version": version, "predictions": "none (--baselines-only)" if args.baselines_only else display(cache_dir)},
        "protocol": {
            "splits": "validation splits carved from the training data by image (CADMA valid/, NIH and VQA-RAD carve-outs)",
            "limit": args.limit or None,
            "confidence_intervals": f"95% percentile bootstrap, {args.resamples} resamples, seed {args.seed}, resampling images (VQA: images with all their questions)",
            "decoding": f"greedy; reports constrained to the template; spine vertebra grounding pass; RFI {'on' if args.rfi else 'off'}; batch {args.batch_size}",
            "definitions": "radscribe.evaluate.spine / chest / structured / nlg / vqa / baselines module docstrings",
            "nlg_text": "reference = the manifest's markdown template; hypothesis = the system's markdown (model: re-rendered from the parsed template, raw text if unparseable); r2gen cleaning, no <unk> vocabulary",
        },
        "goals": GOALS,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    embed = embedder(model)
    runners = {"spine": run_spine, "chest": run_chest, "vqa": run_vqa}
    for task in tasks:
        runners[task](args, model, embed, cache_dir, result)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(json.dumps(summary(result), indent=2))
    print(f"wrote {out}")


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers per system, for the terminal."""
    heads = {
        "spine": ("vertebra-f1", "vertebra-matched-iou", "count-error-boxes", "severity-accuracy", "angle-mae", "column-iou", "template-conformance"),
        "chest": ("macro-f1", "micro-f1", "bleu4@r2gen"),
    }
    out: dict[str, Any] = {}
    for task, keys in heads.items():
        systems = result.get(task, {}).get("systems", {})
        out[task] = {name: {k: v[k]["value"] for k in keys if k in v} for name, v in systems.items()}
    if "spine" in result:
        out["spine_constant_angle"] = result["spine"]["constant_angle"]
    if "chest" in result:
        out["chest_paired"] = result["chest"]["paired_macro_f1_difference"]
    if "vqa" in result:
        out["vqa"] = {
            name: {mode: {k: v["value"] for k, v in scores.items() if isinstance(v, dict)} for mode, scores in modes.items()}
            for name, modes in result["vqa"]["systems"].items()
        }
    return out


if __name__ == "__main__":
    main()
