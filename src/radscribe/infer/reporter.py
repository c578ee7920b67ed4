"""Reporter: images in, grounded structured reports out (RFI crop, constrained decoding, boxes mapped back).

One model is loaded once and reused; images are read, checked and cropped one by one (a bad file
becomes a :class:`ReportError` naming it, and the batch goes on), then generated in batches with the
KV cache: constrained, a batch's report and grounding passes decode together in our own loop
(:mod:`radscribe.infer.decoding`). Three tasks:

- ``report``: the template's structured report (constrained by default), boxes decoded from any
  grounding in it, then one grounding pass per phrase in ``ground`` (default for the spine template:
  ``vertebra``), each constrained to ``<box>phrase<loc..>..</box>``;
- ``ground``: only the grounding passes;
- ``vqa`` (:meth:`Reporter.ask`): free-text answer to a question, on the whole image.

Boxes the model writes are normalised on the image it saw (the RFI crop); they are mapped back to
the original image before anything is returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radscribe.data.images import ImageReadError, Radiograph
from radscribe.grounding import BoxCodec, create_codec
from radscribe.infer.constrained import (
    ConstraintLimits,
    TokenConstraint,
    Vocabulary,
    constrained_generate_kwargs,
    grounding_grammar,
    template_grammar,
)
from radscribe.infer.decoding import DecodeStats, DraftMemory, generate_constrained, supports_fast_decoding
from radscribe.infer.features import FeatureFn, feature_fn
from radscribe.infer.inputs import read_radiograph
from radscribe.infer.loading import model_version
from radscribe.infer.rfi import RegionCrop, RFIConfig, locate_region, whole_image
from radscribe.tasks import prompt
from radscribe.templates import FilledTemplate, Template, TemplateParseError, load_template, parse, validate
from radscribe.types import Box

DEFAULT_TEMPLATE = "spine-ap-alignment"  # the embedded model is a spine model
# Phrases grounded after a report, per template (CADMA's vertebra label).
DEFAULT_GROUNDING: dict[str, tuple[str, ...]] = {"spine-ap-alignment": ("vertebra",)}
# Room for short text fields, per template: about twice the longest value in the training data
# (CADMA: levels 5 tokens, curve levels 2), so a model that rambles is made to close the field.
DEFAULT_LIMITS: dict[str, ConstraintLimits] = {
    "spine-ap-alignment": ConstraintLimits(
        field_tokens={"vertebrae.levels": 12, "alignment.curves.apex": 6, "alignment.curves.upper": 6, "alignment.curves.lower": 6}
    ),
}
TASKS = ("report", "ground", "vqa")


@dataclass
class ReportResult:
    image: str
    task: str
    text: str                                   # what the model wrote for the main task
    filled: FilledTemplate | None = None        # the parsed template (report task)
    issues: list[str] = field(default_factory=list)   # parse or validation problems (empty: valid)
    boxes: list[Box] = field(default_factory=list)     # on the ORIGINAL image
    box_errors: list[str] = field(default_factory=list)
    grounding: dict[str, str] = field(default_factory=dict)  # phrase -> raw grounding text
    crop: RegionCrop | None = None
    timings: dict[str, float] = field(default_factory=dict)
    model: dict[str, str] = field(default_factory=dict)
    template: dict[str, str] | None = None
    constrained: bool = True
    question: str | None = None
    image_size: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return True

    @property
    def valid(self) -> bool:
        return not self.issues

    def findings(self) -> list[dict[str, Any]]:
        """Every item of the template's findings lists, with its boxes (original image)."""
        if self.filled is None:
            return []
        found = []
        for section, fields in self.filled.sections.items():
            for name, value in fields.items():
                if isinstance(value, list):
                    for index, item in enumerate(value):
                        found.append({"field": f"{section}.{name}", "index": index, **item.to_dict()})
        return found

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "image_size": list(self.image_size) if self.image_size else None,
            "task": self.task,
            "model": self.model,
            "template": self.template,
            "constrained": self.constrained,
            "text": self.text,
            "valid": self.valid,
            "issues": self.issues,
            "fields": self.filled.to_dict()["sections"] if self.filled is not None else None,
            "findings": self.findings(),
            "boxes": [box.to_dict() for box in self.boxes],
            "box_errors": self.box_errors,
            "grounding": self.grounding,
            "rfi_crop": self.crop.to_dict() if self.crop is not None else None,
            "timings_s": {key: round(value, 4) for key, value in self.timings.items()},
        }
        if self.question is not None:
            out["question"] = self.question
        return out


@dataclass
class ReportError:
    image: str
    reason: str
    stage: str = "input"

    @property
    def ok(self) -> bool:
        return False

    def to_dict(self) -> dict[str, str]:
        return {"image": self.image, "stage": self.stage, "reason": self.reason}


@dataclass(frozen=True)
class _Pass:
    """One generation per image: the report, or the grounding of one phrase."""

    key: str               # "report" or "ground:<phrase>" (also the constraint's cache key)
    prompt: str
    task: str
    max_new_tokens: int


@dataclass
class _Prepared:
    name: str
    image: Radiograph
    crop: RegionCrop
    seen: Radiograph            # what the model sees (the crop, or the whole image)
    timings: dict[str, float]


class Reporter:
    """Grounded structured reports from one loaded model (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        template: Template | str | None = None,
        rfi: RFIConfig | None = None,
        constrained: bool = True,
        codec: BoxCodec | str | None = None,
        *,
        ground: Sequence[str] | None = None,
        limits: ConstraintLimits | None = None,
        max_new_tokens: int = 768,
        grounding_boxes: int = 24,
        batch_size: int = 4,
        features: FeatureFn | None = None,
    ):
        self.model = model
        self.template = load_template(template or DEFAULT_TEMPLATE)
        self.rfi = rfi
        self.constrained = constrained
        self.codec = create_codec(codec or model.codec_name) if not isinstance(codec, BoxCodec) else codec
        self.ground = tuple(ground) if ground is not None else DEFAULT_GROUNDING.get(self.template.name, ())
        self.limits = limits or DEFAULT_LIMITS.get(self.template.name, ConstraintLimits())
        self.max_new_tokens = max_new_tokens
        self.grounding_boxes = grounding_boxes
        self.batch_size = max(1, batch_size)
        self._features = features
        self._vocabulary: Vocabulary | None = None
        self._constraints: dict[str, TokenConstraint] = {}
        self.decode_stats = DecodeStats()  # totals of every constrained decoding run by this reporter
        self._drafts = DraftMemory()       # earlier outputs, to draft from (speed only; outputs are the same)
        self.model_info = {
            "name": model.name,
            "family": model.config.family,
            "codec": self.codec.name,
            "version": model_version(model),
        }

    # ----- public API ---------------------------------------------------------------------------
    def report(self, images: Sequence[Path | str | Radiograph], task: str = "report") -> list[ReportResult | ReportError]:
        """One result per image, in order; ``task`` is ``report`` or ``ground``."""
        if task not in ("report", "ground"):
            raise ValueError(f"Reporter.report: task must be 'report' or 'ground', got {task!r} (use ask() for vqa)")
        results: list[ReportResult | ReportError] = []
        for start in range(0, len(images), self.batch_size):
            results += self._report_batch(images[start : start + self.batch_size], task)
        return results

    def ask(self, image: Path | str | Radiograph, question: str, max_new_tokens: int = 64) -> ReportResult | ReportError:
        """A free-text answer about the whole image (no RFI: a question may concern anything on it)."""
        if not question.strip():
            raise ValueError("ask() needs a non-empty question")
        prepared = self._prepare(image, use_rfi=False)
        if isinstance(prepared, ReportError):
            return prepared
        start = time.perf_counter()
        answer = self.model.generate([prepared.seen], [prompt("vqa", question=question.strip())], max_new_tokens=max_new_tokens, tasks=["vqa"])[0]
        prepared.timings["generate"] = time.perf_counter() - start
        return ReportResult(
            prepared.name, "vqa", answer.strip(), crop=prepared.crop, timings=prepared.timings, model=self.model_info,
            constrained=False, question=question.strip(), image_size=(prepared.image.width, prepared.image.height),
        )

    # ----- steps --------------------------------------------------------------------------------
    def _report_batch(self, images: Sequence[Path | str | Radiograph], task: str) -> list[ReportResult | ReportError]:
        prepared = [self._prepare(image, use_rfi=self.rfi is not None) for image in images]
        ready = [item for item in prepared if isinstance(item, _Prepared)]
        results: dict[int, ReportResult] = {}
        if ready:
            for item in ready:
                results[id(item)] = ReportResult(
                    item.name, task, "", crop=item.crop, timings=item.timings, model=self.model_info,
                    template={"name": self.template.name, "version": self.template.version} if task == "report" else None,
                    constrained=self.constrained, image_size=(item.image.width, item.image.height),
                )
            if task == "ground" and not self.ground:
                raise ValueError("task 'ground' needs at least one phrase (Reporter(ground=[...]))")
            passes = ([self._report_pass()] if task == "report" else []) + [self._grounding_pass(phrase) for phrase in self.ground]
            texts = self._generate(ready, passes, results)
            if task == "report":
                self._structured(ready, results, texts["report"])
            for phrase in self.ground:
                self._grounding(ready, results, phrase, texts[f"ground:{phrase}"])
        return [results[id(item)] if isinstance(item, _Prepared) else item for item in prepared]

    def _prepare(self, image: Path | str | Radiograph, use_rfi: bool) -> _Prepared | ReportError:
        name = str(image.path if isinstance(image, Radiograph) else image)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            radiograph = image if isinstance(image, Radiograph) else read_radiograph(image)
        except ImageReadError as error:
            return ReportError(name, error.reason, "input")
        except (OSError, ValueError, ImportError) as error:
            return ReportError(name, str(error), "input")
        if isinstance(image, Radiograph) and image.is_color:
            return ReportError(name, "looks like a colour photograph, not a radiograph; refused", "input")
        timings["read"] = time.perf_counter() - start
        crop = whole_image(radiograph, "RFI off")
        if use_rfi:
            start = time.perf_counter()
            try:
                crop = locate_region(radiograph, self._feature_fn(), self.rfi)
            except (ValueError, RuntimeError) as error:
                return ReportError(name, f"region-focused inference failed: {error}", "rfi")
            timings["rfi"] = time.perf_counter() - start
        seen = radiograph if crop.note else crop.crop(radiograph)
        return _Prepared(name, radiograph, crop, seen, timings)

    def _feature_fn(self) -> FeatureFn:
        if self._features is None:
            self._features = feature_fn(self.rfi.encoder, self.model)
        return self._features

    def _constraint(self, key: str) -> TokenConstraint:
        if key not in self._constraints:
            if self._vocabulary is None:
                self._vocabulary = Vocabulary.from_model(self.model)
            grammar = (
                template_grammar(self.template, self.codec.name, self.limits)
                if key == "report"
                else grounding_grammar(key.removeprefix("ground:"), self.codec.name, self.grounding_boxes)
            )
            self._constraints[key] = TokenConstraint(grammar, self._vocabulary)
        return self._constraints[key]

    def _report_pass(self) -> _Pass:
        return _Pass("report", prompt("structured_report"), "structured_report", self.max_new_tokens)

    def _grounding_pass(self, phrase: str) -> _Pass:
        budget = 16 + 4 * 4 * self.grounding_boxes + len(phrase)
        return _Pass(f"ground:{phrase}", prompt("phrase_grounding", phrase=phrase), "phrase_grounding", budget)

    def _generate(self, ready: list[_Prepared], passes: list[_Pass], results: dict[int, ReportResult]) -> dict[str, list[str]]:
        """Each pass's text per image. Constrained passes run together, one row per image and pass,
        through our own decoding loop where the model family has it (timed as one, ``generate_<keys>``)."""
        texts: dict[str, list[str]] = {}
        if self.constrained and supports_fast_decoding(self.model):
            rows = [(item, each) for each in passes for item in ready]
            start = time.perf_counter()
            decoded, stats = generate_constrained(
                self.model, [item.seen for item, _ in rows], [each.prompt for _, each in rows],
                [self._constraint(each.key) for _, each in rows], [each.max_new_tokens for _, each in rows],
                tasks=[each.task for _, each in rows], memory=self._drafts,
            )
            seconds = (time.perf_counter() - start) / len(ready)
            self.decode_stats.add(stats)
            for index, each in enumerate(passes):
                texts[each.key] = [row.text for row in decoded[index * len(ready) : (index + 1) * len(ready)]]
            for item in ready:
                results[id(item)].timings["generate_" + "+".join(each.key for each in passes)] = seconds
            return texts
        for each in passes:
            kwargs: dict[str, Any] = {"max_new_tokens": each.max_new_tokens}
            if self.constrained:
                kwargs = constrained_generate_kwargs(self._constraint(each.key), each.max_new_tokens)
            start = time.perf_counter()
            texts[each.key] = self.model.generate([item.seen for item in ready], [each.prompt] * len(ready), tasks=[each.task] * len(ready), **kwargs)
            seconds = (time.perf_counter() - start) / len(ready)
            for item in ready:
                results[id(item)].timings[f"generate_{each.key}"] = seconds
        return texts

    def _structured(self, ready: list[_Prepared], results: dict[int, ReportResult], texts: list[str]) -> None:
        for item, text in zip(ready, texts):
            result = results[id(item)]
            result.text = text
            start = time.perf_counter()
            errors: list[str] = []

            def box_parser(grounding: str, item: _Prepared = item, errors: list[str] = errors) -> list[Box]:
                decoded = self.codec.decode(grounding, (item.seen.width, item.seen.height))
                errors.extend(decoded.errors)
                return [item.crop.to_original(box) for box in decoded.boxes]

            try:
                result.filled = parse(text, self.template, box_parser=box_parser)
                result.issues = [str(issue) for issue in validate(result.filled, self.template)]
                result.boxes += result.filled.boxes()
            except TemplateParseError as error:
                result.issues = [f"unparseable: {error}"]
            result.box_errors += errors
            result.timings["parse"] = time.perf_counter() - start

    def _grounding(self, ready: list[_Prepared], results: dict[int, ReportResult], phrase: str, texts: list[str]) -> None:
        for item, text in zip(ready, texts):
            result = results[id(item)]
            result.grounding[phrase] = text
            decoded = self.codec.decode(text, (item.seen.width, item.seen.height))
            result.boxes += [item.crop.to_original(box) for box in decoded.boxes]
            result.box_errors += [f"grounding '{phrase}': {error}" for error in decoded.errors]
