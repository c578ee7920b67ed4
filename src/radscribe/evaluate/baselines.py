"""Baselines measured on the same validation splits as a model, so its numbers mean something.

Every baseline learns only from the training split and predicts, for each validation image, what a
model would: a report (markdown and its parsed template), and for spine the vertebra boxes and the
column box (:class:`ReportPrediction`); for VQA an answer string.

* **Retrieval** (:class:`NearestStudy`): the nearest training study by cosine similarity of image
  embeddings; its reference report (template) is copied, and for spine its vertebra boxes too
  (normalised coordinates, placed as they are). The embedding is any ``embed(paths) -> (n, d)``
  callable (the benchmark passes the model's ``image_embeddings``), so this module imports no model.
  VQA (:func:`retrieval_answers`): among training questions of the same answer type (closed/open),
  the one with the most similar wording (token Jaccard of normalised questions) is taken, ties broken
  by the most similar image, and its answer copied; an identical question asked about the nearest
  image that was asked it is therefore the first choice.
* **Prior / majority** (:func:`majority_template`): per template field the most frequent training
  value (text and enum fields), the median for numbers (the constant with the least absolute error),
  and for findings lists the most frequent item count, item ``i`` built the same way from the
  training items at position ``i``. For chest, the majority is "absent" for every label, which scores
  F1 0 on every label by construction, so two label priors are measured beside it
  (:func:`chest_label_prior`): ``positive`` ("present" for every label: a constant prediction's F1
  for a label of prevalence p is 2p/(1+p) when positive and 0 when negative, so this is the best
  constant for F1) and ``sampled`` ("present" at random with the label's training prevalence, seeded).
  VQA (:class:`AnswerPrior`): the most frequent training answer per answer type ("yes"/"no" for
  closed questions, the most frequent open answer), optionally per normalised question text first.
* **Mean training spine** (:func:`mean_spine`): every training image's vertebra boxes in reading order,
  indexed from the bottom (CADMA films end at L5, their tops vary); box ``k`` from the bottom is the
  mean normalised box over the images that have a ``k``-th box, for the rounded mean count of boxes.
  The same boxes go on every validation image, and its template is derived from them by the
  annotation code (:func:`radscribe.annotate.analyze_spine` with that image's size, since angles are
  measured in pixels).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radscribe.annotate import analyze_spine, spine_template
from radscribe.data.manifest import resolve_image_path
from radscribe.evaluate.chest import POSITIVE_VALUE, nih_fields
from radscribe.evaluate.predictions import Prediction
from radscribe.evaluate.spine import column_of, vertebra_boxes
from radscribe.evaluate.vqa import normalise_answer
from radscribe.templates import Field, FilledTemplate, GroundedFinding, Template, load_template, parse, render
from radscribe.types import QA, Box, Study

Embed = Callable[[Sequence[Path]], np.ndarray]
CHEST_PRIORS: tuple[str, ...] = ("positive", "sampled")


@dataclass(frozen=True)
class ReportPrediction:
    """One system's output for one image. ``vertebrae`` is ``None`` for a system that predicts no boxes."""

    markdown: str
    filled: FilledTemplate | None
    vertebrae: tuple[Box, ...] | None = None
    column: Box | None = None
    source: str = ""  # where it came from, e.g. the retrieved training study's id


def image_paths(studies: Sequence[Study], manifest: Path | str) -> list[Path]:
    """The first image of each study, resolved against its manifest."""
    paths = []
    for study in studies:
        if not study.images:
            raise ValueError(f"{manifest}: study '{study.id}' has no image")
        paths.append(resolve_image_path(manifest, study.images[0].path))
    return paths


def embed_studies(studies: Sequence[Study], manifest: Path | str, embed: Embed, batch_size: int = 32) -> np.ndarray:
    """(n, d) L2-normalised embeddings of each study's first image, computed in batches."""
    paths = image_paths(studies, manifest)
    if not paths:
        return np.zeros((0, 0))
    chunks = [np.asarray(embed(paths[start : start + batch_size]), dtype=np.float64) for start in range(0, len(paths), batch_size)]
    vectors = np.concatenate(chunks)
    if vectors.shape[0] != len(paths):
        raise ValueError(f"embed returned {vectors.shape[0]} vectors for {len(paths)} images")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class NearestStudy:
    """Nearest training study by cosine similarity of (normalised) image embeddings."""

    def __init__(self, train: Sequence[Study], embeddings: np.ndarray):
        if len(train) != len(embeddings):
            raise ValueError(f"{len(train)} training studies but {len(embeddings)} embeddings")
        if not train:
            raise ValueError("retrieval needs at least one training study")
        self.train = list(train)
        self.embeddings = np.asarray(embeddings, dtype=np.float64)

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """(Q, N) cosine similarities of query embeddings to every training study."""
        return np.asarray(queries, dtype=np.float64) @ self.embeddings.T

    def nearest(self, queries: np.ndarray) -> list[Study]:
        # argmax takes the first of equal scores: ties go to the earlier training study, deterministically.
        return [self.train[index] for index in np.argmax(self.similarities(queries), axis=1)]


def copied_report(study: Study, with_boxes: bool) -> ReportPrediction:
    """A training study's reference report (and vertebra boxes) as a prediction."""
    if study.structured is None or study.template is None:
        raise ValueError(f"training study '{study.id}' has no structured report to copy")
    vertebrae = tuple(vertebra_boxes(study.boxes)) if with_boxes else None
    return ReportPrediction(
        study.structured,
        parse(study.structured, study.template),
        vertebrae,
        column_of(vertebrae) if vertebrae else None,
        source=study.id,
    )


def retrieval_reports(index: NearestStudy, queries: np.ndarray, with_boxes: bool) -> list[ReportPrediction]:
    """The retrieval baseline's reports (spine: ``with_boxes=True``)."""
    return [copied_report(study, with_boxes) for study in index.nearest(queries)]


# ----- prior / majority ---------------------------------------------------------------------------------


def _mode(values: Sequence[object]) -> object:
    """The most frequent value; ties go to the one seen first (Counter keeps insertion order)."""
    return Counter(values).most_common(1)[0][0]


def _number(spec: Field, values: Sequence[object]) -> float | int | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not numbers:
        return None
    median = float(np.median(numbers))
    return int(round(median)) if spec.integer else round(median, spec.decimals)


def _scalar(spec: Field, values: Sequence[object]) -> object:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return None
    return _number(spec, present) if spec.kind == "number" else _mode(present)


def majority_template(templates: Sequence[FilledTemplate], template: Template | str) -> FilledTemplate:
    """The field-wise prior report of ``templates`` (module docstring); boxes are not kept."""
    spec = load_template(template)
    if not templates:
        raise ValueError(f"no training templates to take the majority of ({spec.name})")
    out = spec.blank()
    for section in spec.sections:
        for item in section.fields:
            field_id = f"{section.id}.{item.id}"
            values = [t.sections.get(section.id, {}).get(item.id) for t in templates]
            if item.kind != "findings":
                out.set(field_id, _scalar(item, values))
                continue
            lists = [v if isinstance(v, list) else [] for v in values]
            count = int(_mode([len(v) for v in lists]))
            findings = []
            for position in range(count):
                at = [v[position] for v in lists if len(v) > position]
                findings.append(GroundedFinding({sub.id: _scalar(sub, [f.values.get(sub.id) for f in at]) for sub in item.fields}))
            out.set(field_id, findings)
    return out


def prior_reports(train: Sequence[Study], count: int, template: str) -> list[ReportPrediction]:
    """The majority report of the training split's ``template`` reports, ``count`` times."""
    filled = majority_template([parse(s.structured, template) for s in train if s.template == template and s.structured], template)
    markdown = render(filled)
    return [ReportPrediction(markdown, filled.copy(), source="majority") for _ in range(count)]


def chest_label_prior(train: Sequence[Study], count: int, kind: str, seed: int = 0) -> list[ReportPrediction]:
    """The chest majority report with its NIH-label fields set by a label prior (module docstring)."""
    if kind not in CHEST_PRIORS:
        raise ValueError(f"unknown chest label prior '{kind}'; known: {', '.join(CHEST_PRIORS)}")
    templates = [parse(s.structured, "chest-pa") for s in train if s.template == "chest-pa" and s.structured]
    base = majority_template(templates, "chest-pa")
    fields = nih_fields()
    prevalence = np.array([np.mean([t.get(f) == POSITIVE_VALUE for t in templates]) for f in fields])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        filled = base.copy()
        positive = np.ones(len(fields), dtype=bool) if kind == "positive" else rng.random(len(fields)) < prevalence
        for field, is_positive in zip(fields, positive):
            filled.set(field, POSITIVE_VALUE if is_positive else "absent")
        filled.set("impression.no_finding", "no" if positive.any() else "yes")
        out.append(ReportPrediction(render(filled), filled, source=f"label prior: {kind}"))
    return out


class AnswerPrior:
    """Most frequent training answer per answer type; with ``by_question``, per normalised question first."""

    def __init__(self, train: Sequence[QA], by_question: bool = False):
        if not train:
            raise ValueError("the answer prior needs training questions")
        self.by_question = by_question
        by_type: dict[str, list[str]] = {}
        by_text: dict[tuple[str, str], list[str]] = {}
        for qa in train:
            answer = normalise_answer(qa.answer)
            by_type.setdefault(qa.answer_type, []).append(answer)
            by_text.setdefault((qa.answer_type, normalise_answer(qa.question)), []).append(answer)
        self.by_type = {kind: str(_mode(answers)) for kind, answers in by_type.items()}
        self.by_text = {key: str(_mode(answers)) for key, answers in by_text.items()}

    def answer(self, qa: QA) -> str:
        if self.by_question:
            found = self.by_text.get((qa.answer_type, normalise_answer(qa.question)))
            if found is not None:
                return found
        return self.by_type.get(qa.answer_type) or next(iter(self.by_type.values()))


def _words(text: str) -> frozenset[str]:
    return frozenset(normalise_answer(text).split())


def retrieval_answers(index: NearestStudy, queries: np.ndarray, questions: Sequence[Sequence[QA]]) -> list[list[str]]:
    """Per validation image (``queries`` row) an answer to each of its questions (module docstring)."""
    if len(queries) != len(questions):
        raise ValueError(f"{len(queries)} image embeddings but {len(questions)} question lists")
    pool = [(image, qa, _words(qa.question)) for image, study in enumerate(index.train) for qa in study.qa]
    if not pool:
        raise ValueError("no training questions to retrieve answers from")
    similarities = index.similarities(queries)
    answers = []
    for row, qas in enumerate(questions):
        image_similarity = similarities[row]
        chosen = []
        for qa in qas:
            words = _words(qa.question)
            best, best_key = None, (-1.0, -math.inf)
            for image, candidate, candidate_words in pool:
                if candidate.answer_type != qa.answer_type:
                    continue
                union = len(words | candidate_words)
                key = (len(words & candidate_words) / union if union else 0.0, float(image_similarity[image]))
                if key > best_key:
                    best, best_key = candidate, key
            chosen.append(best.answer if best is not None else "")
        answers.append(chosen)
    return answers


# ----- mean training spine ------------------------------------------------------------------------------


def mean_spine(train: Sequence[Study]) -> tuple[Box, ...]:
    """The mean training spine's vertebra boxes, top to bottom (module docstring)."""
    columns = []
    for study in train:
        boxes = sorted((b for b in vertebra_boxes(study.boxes) if b.image == 0), key=lambda b: (b.center[1], b.center[0]))
        if boxes:
            columns.append(np.array([b.xyxy for b in reversed(boxes)]))  # bottom first
    if not columns:
        raise ValueError("no training study has vertebra boxes")
    count = int(round(np.mean([len(c) for c in columns])))
    mean = [np.mean([c[k] for c in columns if len(c) > k], axis=0) for k in range(count)]
    return tuple(Box.from_xyxy("vertebra", tuple(xyxy), source="mean-training-spine") for xyxy in reversed(mean))


def mean_spine_reports(boxes: Sequence[Box], valid: Sequence[Study]) -> list[ReportPrediction]:
    """The mean spine on every validation image, its template derived for that image's size."""
    out = []
    for study in valid:
        image = study.images[0]
        if not (image.width and image.height):
            raise ValueError(f"study '{study.id}': the image size is needed to derive the mean spine's angles")
        geometry = analyze_spine(boxes, (image.width, image.height))
        filled = spine_template(geometry, projection=image.view if image.view in ("AP", "PA") else "AP")
        out.append(ReportPrediction(render(filled), filled, tuple(boxes), column_of(boxes), source="mean training spine"))
    return out


# ----- image-blind question baselines (frozen MiniLM question embeddings) --------------------------------


def _by_answer_type(train: Sequence[QA], questions: Sequence[QA]) -> dict[str, tuple[list[QA], list[int]]]:
    """Per answer type: the training questions of that type and the positions of the asked ones."""
    out: dict[str, tuple[list[QA], list[int]]] = {}
    for kind in dict.fromkeys(qa.answer_type for qa in questions):
        pool = [qa for qa in train if qa.answer_type == kind] or list(train)
        out[kind] = (pool, [i for i, qa in enumerate(questions) if qa.answer_type == kind])
    return out


def nearest_question_answers(train: Sequence[QA], questions: Sequence[QA], encode: Callable[[Sequence[str]], np.ndarray]) -> list[str]:
    """The (normalised) answer of the most similar training question of the same answer type, by cosine
    similarity of frozen sentence embeddings (``encode``: texts -> unit vectors); ties go to the first."""
    answers = [""] * len(questions)
    for pool, positions in _by_answer_type(train, questions).values():
        similarity = encode([questions[i].question for i in positions]) @ encode([qa.question for qa in pool]).T
        for row, position in enumerate(positions):
            answers[position] = normalise_answer(pool[int(np.argmax(similarity[row]))].answer)
    return answers


def question_classifier_answers(
    train: Sequence[QA], questions: Sequence[QA], encode: Callable[[Sequence[str]], np.ndarray], l2: float = 1.0, steps: int = 200
) -> list[str]:
    """Per answer type, a multinomial logistic regression from the frozen question embedding to the
    (normalised) training answers: cross-entropy plus ``l2 / (2 n) * |W|^2`` (scikit-learn's C = 1
    objective), fitted by full-batch L-BFGS from zero weights, so it is deterministic."""
    import torch

    answers = [""] * len(questions)
    for pool, positions in _by_answer_type(train, questions).values():
        labels = [normalise_answer(qa.answer) for qa in pool]
        classes = sorted(set(labels))
        x = torch.tensor(encode([qa.question for qa in pool]), dtype=torch.float64)
        y = torch.tensor([classes.index(label) for label in labels])
        weights = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS([weights, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimiser.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ weights + bias, y) + l2 / (2 * len(pool)) * (weights**2).sum()
            value.backward()
            return value

        optimiser.step(loss)
        asked = torch.tensor(encode([questions[i].question for i in positions]), dtype=torch.float64)
        with torch.no_grad():
            picks = (asked @ weights + bias).argmax(dim=1).tolist()
        for position, pick in zip(positions, picks):
            answers[position] = classes[pick]
    return answers


# ----- baselines as prediction files (what `radscribe evaluate --baselines` scores) -----------------------

# Per evaluate family, the image-blind baselines it can score, learned from the training split alone.
BASELINES: dict[str, tuple[str, ...]] = {
    "spine": ("majority", "mean-spine"),
    "chest": ("majority", "prior-positive", "prior-sampled"),
    "vqa": ("majority", "question-prior", "nearest-question", "question-classifier"),
}


def _as_prediction(study: Study, report: ReportPrediction, template: str) -> Prediction:
    boxes = list(report.vertebrae) if report.vertebrae is not None else None
    return Prediction(study.id, report=report.markdown, template=template, boxes=boxes, column=report.column, meta={"baseline": report.source})


def baseline_predictions(family: str, name: str, train: Sequence[Study], valid: Sequence[Study], seed: int = 0) -> dict[str, Prediction]:
    """Baseline ``name`` of ``family`` (:data:`BASELINES`) on ``valid``, learned from ``train`` only.

    Raises :class:`~radscribe.evaluate.base.MetricUnavailable` when it cannot be built here (e.g. the
    MiniLM package is missing) and ``ValueError`` for an unknown name or a training split without data."""
    if name not in BASELINES.get(family, ()):
        raise ValueError(f"unknown baseline '{name}' for family '{family}'; known: {', '.join(BASELINES.get(family, ())) or 'none'}")
    if family == "vqa":
        return _vqa_baseline(name, train, valid)
    template = "spine-ap-alignment" if family == "spine" else "chest-pa"
    chosen = [s for s in valid if s.template == template]
    if name == "majority":
        reports = prior_reports(train, len(chosen), template)
    elif name == "mean-spine":
        reports = mean_spine_reports(mean_spine(train), chosen)
    else:
        reports = chest_label_prior(train, len(chosen), name.removeprefix("prior-"), seed=seed)
    return {study.id: _as_prediction(study, report, template) for study, report in zip(chosen, reports)}


@functools.lru_cache(maxsize=1)
def _question_encoder() -> Callable[[Sequence[str]], np.ndarray]:
    """The frozen MiniLM, loaded once, each distinct text encoded once (both question baselines share it)."""
    from radscribe.evaluate.embeddings import MiniLMEncoder

    encoder, known = MiniLMEncoder(), {}

    def encode(texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        if missing:
            known.update(zip(missing, encoder.encode(missing)))
        return np.array([known[text] for text in texts])

    return encode


def _vqa_baseline(name: str, train: Sequence[Study], valid: Sequence[Study]) -> dict[str, Prediction]:
    train_qas = [qa for study in train for qa in study.qa]
    asked = [(study, index, qa) for study in valid for index, qa in enumerate(study.qa)]
    questions = [qa for _, _, qa in asked]
    if name in ("majority", "question-prior"):
        prior = AnswerPrior(train_qas, by_question=name == "question-prior")
        answers = [prior.answer(qa) for qa in questions]
    else:
        encode = _question_encoder()
        if not train_qas:
            raise ValueError("the question baselines need training questions")
        pick = nearest_question_answers if name == "nearest-question" else question_classifier_answers
        answers = pick(train_qas, questions, encode)
    out: dict[str, Prediction] = {study.id: Prediction(study.id, meta={"baseline": name}) for study in valid if study.qa}
    for (study, index, qa), answer in zip(asked, answers):
        out[study.id].answers[qa.id if qa.id is not None else qa.question] = answer
    return out
