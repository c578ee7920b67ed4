"""Reporter: images in, grounded structured reports out (RFI crop, constrained decoding, boxes mapped back).

One model is loaded once and reused; images are read under the reading contract of
:mod:`radscribe.data.images` (multi-frame files split by the ``frames`` rule), checked and cropped one
by one, then generated in batches with the KV cache: constrained, a batch's report and grounding
passes decode together in our own loop (:mod:`radscribe.infer.decoding`). Whatever goes wrong with
one image, expected refusal or unexpected exception, becomes that image's :class:`ReportError` with
the ``stage`` it failed in (``input``, ``rfi``, ``generate``) and a reason, and the batch goes on: a
batch whose generation fails is retried image by image, so only the image that fails is lost.
Three tasks:

- ``report``: the template's structured report (constrained by default), boxes decoded from any
  grounding in it, then one grounding pass per phrase in ``ground`` (default for the spine template:
  ``vertebra``), each constrained to ``<box>phrase<loc..>..</box>``. A template in
  :data:`DERIVED_TEMPLATES` (the spine template) is not generated at all: it is computed from the
  model's own boxes of its phrase (counts, levels, curves, severity, impression), so the report can
  never contradict the boxes drawn; with fewer than three vertebrae the report says no spine was found;
- ``ground``: only the grounding passes;
- ``vqa`` (:meth:`Reporter.ask`): free-text answer to a question, on the whole image.

With a ``detector`` (a :class:`~radscribe.models.detector.BoxDetector` for the grounded phrase, the
vertebra detector for the spine template), ``boxes_from`` says whose boxes the report carries for the
detector's phrases: ``"model"``, the model writes its own boxes from the image with the detector's
boxes in its grounding prompt (PromptMRG-style detected grounding); ``"detector"``, the detector's
boxes are the report's and the model is not asked to ground those phrases (a release whose model has
not learnt to localise as well as its detector ships this, see MODEL_CARD.md). Either way an image on
which the detector finds no spine gets the "no spine found" report without a grounding pass.
``abstain`` lists, per template, the fields the model showed no skill on in validation: they are
written "not assessed" whatever was generated; under the key ``vqa`` it lists answer types
(``closed``: yes/no and "X or Y" questions, ``open``: the rest) that :meth:`Reporter.ask` answers
"not assessed".

Boxes the model writes are normalised on the image it saw (the RFI crop); they are mapped back to
the original image before anything is returned. Boxes with no area are never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radscribe.data.images import FRAME_RULES, ImageReadError, Radiograph, check_radiograph, read_frames
from radscribe.grounding import BoxCodec, create_codec
from radscribe.infer.answers import answer_options, option_log_likelihoods
from radscribe.infer.constraint import TokenConstraint, box_order_hook, check_budget
from radscribe.infer.hf_generate import constrained_generate_kwargs
from radscribe.infer.template_grammar import ConstraintLimits, grounding_grammar, template_grammar
from radscribe.infer.tokens import Vocabulary
from radscribe.infer.decoding import DecodeStats, DraftMemory, generate_constrained, supports_fast_decoding
from radscribe.infer.features import FeatureFn, feature_fn
from radscribe.infer.loading import BOXES_FROM, model_version
from radscribe.infer.rfi import RegionCrop, RFIConfig, locate_region, whole_image
from radscribe.annotate import MIN_VERTEBRAE, NOT_ASSESSED, spine_report_from_boxes
from radscribe.tasks import prompt
from radscribe.tasks.builders import detected_prompt
from radscribe.templates import FilledTemplate, Template, TemplateParseError, load_template, parse, render, validate
from radscribe.types import Box

DEFAULT_TEMPLATE = "spine-ap-alignment"  # the embedded model is a spine model
VQA_ABSTAIN_KEY = "vqa"  # abstain.json key for the answer types ask() abstains on (closed, open)
# Phrases grounded after a report, per template (CADMA's vertebra label).
DEFAULT_GROUNDING: dict[str, tuple[str, ...]] = {"spine-ap-alignment": ("vertebra",)}
# Room for short text fields, per template: about twice the longest value in the training data
# (CADMA: levels 5 tokens, curve levels 2), so a model that rambles is made to close the field.
DEFAULT_LIMITS: dict[str, ConstraintLimits] = {
    "spine-ap-alignment": ConstraintLimits(
        field_tokens={"vertebrae.levels": 12, "alignment.curves.apex": 6, "alignment.curves.upper": 6, "alignment.curves.lower": 6}
    ),
}
# Templates computed from the model's boxes of one phrase, never generated: phrase and builder
# (boxes on the original image, its size) -> (filled template, geometry or None).
DERIVED_TEMPLATES: dict[str, tuple[str, Callable[..., tuple[FilledTemplate, Any]]]] = {
    "spine-ap-alignment": ("vertebra", spine_report_from_boxes),
}
REPORT_KINDS = ("report", "ground", "vqa")  # what a Reporter writes: reports, groundings, answers


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
    detections: list[Box] = field(default_factory=list)  # the detector's boxes (ORIGINAL image), the model's prompt
    abstained: list[str] = field(default_factory=list)   # fields written "not assessed" for lack of skill
    crop: RegionCrop | None = None
    timings: dict[str, float] = field(default_factory=dict)
    model: dict[str, str] = field(default_factory=dict)
    template: dict[str, str] | None = None
    constrained: bool = True
    question: str | None = None
    image_size: tuple[int, int] | None = None
    frame: int | None = None                    # 0-based frame of a multi-frame source (None: single frame)

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
            "detections": [box.to_dict() for box in self.detections],
            "abstained": self.abstained,
            "rfi_crop": self.crop.to_dict() if self.crop is not None else None,
            "timings_s": {key: round(value, 4) for key, value in self.timings.items()},
        }
        if self.question is not None:
            out["question"] = self.question
        if self.frame is not None:
            out["frame"] = self.frame
        return out


@dataclass
class ReportError:
    """One image that got no result: where it failed (``stage``), why, and a ``code`` to count by: a
    refusal code of :data:`radscribe.data.images.REFUSAL_CODES`, ``rfi-failed``, or ``unexpected`` for
    an exception nobody expected (its type and message are the reason)."""

    image: str
    reason: str
    stage: str = "input"
    code: str = "unexpected"

    @property
    def ok(self) -> bool:
        return False

    def to_dict(self) -> dict[str, str]:
        return {"image": self.image, "stage": self.stage, "code": self.code, "reason": self.reason}

    @classmethod
    def unexpected(cls, image: str, stage: str, error: BaseException) -> ReportError:
        return cls(image, f"unexpected {type(error).__name__}: {' '.join(str(error).split())}", stage, "unexpected")


@dataclass(frozen=True)
class _Pass:
    """One generation per image: the report, or the grounding of one phrase."""

    key: str               # "report" or "ground:<phrase>" (also the constraint's cache key)
    prompts: tuple[str, ...]   # one per image of the batch
    task: str
    max_new_tokens: int


@dataclass
class _Prepared:
    name: str
    image: Radiograph
    crop: RegionCrop
    seen: Radiograph            # what the model sees (the crop, or the whole image)
    timings: dict[str, float]
    detections: list[Box] | None = None   # the detector's boxes on ``seen`` (None: no detector ran)


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
        detector: Any = None,
        abstain: Mapping[str, Sequence[str]] | None = None,
        frames: str = "first",
        boxes_from: str = "model",
    ):
        if frames not in FRAME_RULES:
            raise ValueError(f"frames must be one of {', '.join(FRAME_RULES)}, got {frames!r}")
        if boxes_from not in BOXES_FROM:
            raise ValueError(f"boxes_from must be one of {', '.join(BOXES_FROM)}, got {boxes_from!r}")
        if boxes_from == "detector" and detector is None:
            raise ValueError("boxes_from='detector' needs a detector")
        self.model = model
        self.template = load_template(template or DEFAULT_TEMPLATE)
        self.rfi = rfi
        self.constrained = constrained
        self.codec = create_codec(codec or model.codec_name) if not isinstance(codec, BoxCodec) else codec
        self.derived = DERIVED_TEMPLATES.get(self.template.name)
        self.ground = tuple(ground) if ground is not None else DEFAULT_GROUNDING.get(self.template.name, ())
        self.detector = detector
        self.boxes_from = boxes_from
        self.abstain = {name: tuple(fields) for name, fields in (abstain or {}).items()}
        self.limits = limits or DEFAULT_LIMITS.get(self.template.name, ConstraintLimits())
        self.max_new_tokens = max_new_tokens
        self.grounding_boxes = grounding_boxes
        self.batch_size = max(1, batch_size)
        self.frames = frames               # which frames of a multi-frame file are reported on
        self._features = features
        self._vocabulary: Vocabulary | None = None
        self._constraints: dict[str, TokenConstraint] = {}
        self.decode_stats = DecodeStats()  # totals of every constrained decoding run by this reporter
        self._drafts = DraftMemory()       # earlier outputs, to draft from (speed only; outputs are the same)
        self.description = model.name  # one line for logs; from_pretrained says where the weights came from
        self.model_info = {
            "name": model.name,
            "family": model.config.family,
            "codec": self.codec.name,
            "version": model_version(model),
        }
        if detector is not None:
            self.model_info["detector"] = f"{detector.config.name} ({model_version(detector)})"
            self.model_info["boxes_from"] = boxes_from

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, **options: Any) -> Reporter:
        """A Reporter for a saved model folder (None: the embedded model) with its detector, abstentions
        and the release's ``boxes_from``; ``options`` override any of them."""
        from radscribe.infer.loading import load_abstentions, load_detector, load_model, load_release

        model, description = load_model(name_or_path)
        options.setdefault("detector", load_detector(name_or_path))
        options.setdefault("abstain", load_abstentions(name_or_path))
        if options["detector"] is not None:
            options.setdefault("boxes_from", load_release(name_or_path).get("boxes_from", "model"))
        reporter = cls(model, **options)
        reporter.description = description
        return reporter

    # ----- public API ---------------------------------------------------------------------------
    def report(self, images: Sequence[Path | str | Radiograph], task: str = "report") -> list[ReportResult | ReportError]:
        """Results in input order: one per image, or per frame of a multi-frame file under ``frames='all'``
        (a file refused as a whole gives one :class:`ReportError`); ``task`` is ``report`` or ``ground``."""
        if task not in ("report", "ground"):
            raise ValueError(f"Reporter.report: task must be 'report' or 'ground', got {task!r} (use ask() for vqa)")
        results: list[ReportResult | ReportError] = []
        for start in range(0, len(images), self.batch_size):
            results += self._report_batch(images[start : start + self.batch_size], task)
        return results

    def ask(self, image: Path | str | Radiograph, question: str, max_new_tokens: int = 64) -> ReportResult | ReportError:
        """An answer about the whole image (no RFI: a question may concern anything on it).

        A yes/no question is answered with the likelier of "yes" and "no" (:mod:`radscribe.infer.answers`;
        ``constrained`` is then true in the result); any other question by free generation.
        """
        if not question.strip():
            raise ValueError("ask() needs a non-empty question")
        if self.frames == "all":
            raise ValueError("ask() answers about one image: use frames='first' or 'middle'")
        prepared = self._prepare(image, use_rfi=False)
        if isinstance(prepared, ReportError):
            return prepared
        (item,) = prepared
        start = time.perf_counter()
        text = prompt("vqa", question=question.strip())
        options = answer_options(question) if self.constrained else None
        answer_type = "open" if answer_options(question) is None else "closed"
        if answer_type in self.abstain.get(VQA_ABSTAIN_KEY, ()):
            return ReportResult(
                item.name, "vqa", NOT_ASSESSED, crop=item.crop, timings=item.timings, model=self.model_info,
                constrained=False, question=question.strip(), image_size=(item.image.width, item.image.height),
                frame=item.image.frame, abstained=[f"{VQA_ABSTAIN_KEY}.{answer_type}"],
            )
        try:
            if options is not None:
                scores = option_log_likelihoods(self.model, item.seen, text, "vqa", options)
                answer = options[max(range(len(options)), key=scores.__getitem__)]
            else:
                answer = self.model.generate([item.seen], [text], max_new_tokens=max_new_tokens, tasks=["vqa"])[0]
        except Exception as error:  # one image's failure is its own result, never the caller's crash
            return ReportError.unexpected(item.name, "generate", error)
        item.timings["generate"] = time.perf_counter() - start
        return ReportResult(
            item.name, "vqa", answer.strip(), crop=item.crop, timings=item.timings, model=self.model_info,
            constrained=options is not None, question=question.strip(), image_size=(item.image.width, item.image.height),
            frame=item.image.frame,
        )

    # ----- steps --------------------------------------------------------------------------------
    def _report_batch(self, images: Sequence[Path | str | Radiograph], task: str) -> list[ReportResult | ReportError]:
        if task == "ground" and not self.ground:
            raise ValueError("task 'ground' needs at least one phrase (Reporter(ground=[...]))")
        prepared = [self._prepare(image, use_rfi=self.rfi is not None) for image in images]
        ready = [item for items in prepared if not isinstance(items, ReportError) for item in items]
        results: dict[int, ReportResult | ReportError] = {}
        for start in range(0, len(ready), self.batch_size):
            self._generate_reports(ready[start : start + self.batch_size], task, results)
        return [item for items in prepared for item in ([items] if isinstance(items, ReportError) else [results[id(one)] for one in items])]

    def _generate_reports(self, ready: list[_Prepared], task: str, results: dict[int, ReportResult | ReportError]) -> None:
        """Reports for ``ready`` into ``results``; a batch that fails is retried image by image.

        What does not depend on the images (grammars, token budgets) is checked first, outside the
        catch: a setting that cannot work is the caller's error, not every image's failure.
        """
        derived = task == "report" and self.derived is not None
        phrases = (self.derived[0],) if derived else self.ground
        if self.constrained:
            keys = (["report"] if task == "report" and not derived else []) + [f"ground:{phrase}" for phrase in phrases]
            for key in keys:
                budget = self.max_new_tokens if key == "report" else self._grounding_budget(key.removeprefix("ground:"))
                check_budget(self._constraint(key), budget)
        batch: dict[int, ReportResult] = {
            id(item): ReportResult(
                item.name, task, "", crop=item.crop, timings=dict(item.timings), model=self.model_info,
                template={"name": self.template.name, "version": self.template.version} if task == "report" else None,
                constrained=self.constrained, image_size=(item.image.width, item.image.height), frame=item.image.frame,
            )
            for item in ready
        }
        try:
            if self.detector is not None:
                self._detect(ready, batch)
            passes = [self._report_pass(len(ready))] if task == "report" and not derived else []
            grounded = {phrase: [item for item in ready if self._grounds(item, phrase)] for phrase in phrases}
            texts = self._generate(ready, passes, batch)
            for phrase, items in grounded.items():
                if items:
                    texts.update(self._generate(items, [self._grounding_pass(phrase, items)], batch))
            if task == "report" and not derived:
                self._structured(ready, batch, texts["report"])
            for phrase, items in grounded.items():
                self._grounding(items, batch, phrase, texts.get(f"ground:{phrase}", []))
            if self.boxes_from == "detector":
                self._detector_boxes(ready, batch, phrases)
            if derived:
                self._derive(ready, batch)
            for item in ready:
                self._apply_abstentions(batch[id(item)])
        except Exception as error:  # one image's failure is its own result, never the whole batch's
            if len(ready) > 1:
                for item in ready:
                    self._generate_reports([item], task, results)
            else:
                results[id(ready[0])] = ReportError.unexpected(ready[0].name, "generate", error)
            return
        results.update(batch)

    def _detect(self, ready: list[_Prepared], results: dict[int, ReportResult]) -> None:
        start = time.perf_counter()
        found = self.detector.detect([item.seen for item in ready])
        seconds = (time.perf_counter() - start) / len(ready)
        for item, boxes in zip(ready, found):
            # detect() maps boxes to the image it was given: the seen one (crop or whole image)
            item.detections = boxes
            results[id(item)].detections = [item.crop.to_original(box) for box in boxes]
            results[id(item)].timings["detect"] = seconds

    def _detector_boxes(self, ready: list[_Prepared], results: dict[int, ReportResult], phrases: Sequence[str]) -> None:
        """The detector's boxes of ``phrases`` as the report's boxes (``boxes_from='detector'``)."""
        for item in ready:
            result = results[id(item)]
            found = [box for box in result.detections if box.label in phrases]
            # Fewer than MIN_VERTEBRAE boxes is "no spine here": the derived report says so, with no boxes drawn.
            if self.derived and len(found) < MIN_VERTEBRAE:
                found = []
            result.boxes += [box for box in found if box.area > 0]

    def _grounds(self, item: _Prepared, phrase: str) -> bool:
        """Whether the model grounds ``phrase`` on this image: not when the detector's boxes are the
        report's, nor when the detector found no spine there."""
        if item.detections is None or phrase not in self.detector.config.labels:
            return True
        if self.boxes_from == "detector":
            return False
        return len(item.detections) >= MIN_VERTEBRAE or not self.derived

    def _derive(self, ready: list[_Prepared], results: dict[int, ReportResult]) -> None:
        phrase, build = self.derived
        for item in ready:
            result = results[id(item)]
            start = time.perf_counter()
            boxes = [box for box in result.boxes if box.label == phrase]
            result.filled, _ = build(boxes, (item.image.width, item.image.height))
            result.text = render(result.filled)
            result.issues = [str(issue) for issue in validate(result.filled, self.template)]
            result.timings["derive"] = time.perf_counter() - start

    def _apply_abstentions(self, result: ReportResult) -> None:
        if result.filled is None:
            return
        for field_id in self.abstain.get(self.template.name, ()):
            section, name = field_id.split(".", 1)
            if result.filled.sections.get(section, {}).get(name) not in (None, NOT_ASSESSED):
                result.filled.set(field_id, NOT_ASSESSED)
                result.abstained.append(field_id)
        if result.abstained:
            result.text = render(result.filled)

    def _prepare(self, image: Path | str | Radiograph, use_rfi: bool) -> list[_Prepared] | ReportError:
        """The frames of one input, read, checked and cropped; any failure is the input's ReportError."""
        name = str(image.path if isinstance(image, Radiograph) else image)
        start = time.perf_counter()
        try:
            frames = [image] if isinstance(image, Radiograph) else read_frames(image, self.frames)
            for frame in frames:
                check_radiograph(frame)
        except ImageReadError as error:
            return ReportError(name, error.reason, "input", error.code)
        except ImportError as error:  # pydicom itself missing: the message says what to install
            return ReportError(name, str(error), "input", "decoder-missing")
        except Exception as error:  # a reader bug or a decoder crash on hostile input: this image's failure only
            return ReportError.unexpected(name, "input", error)
        read_seconds = (time.perf_counter() - start) / len(frames)
        prepared = []
        for radiograph in frames:
            timings = {"read": read_seconds}
            crop = whole_image(radiograph, "RFI off")
            if use_rfi:
                start = time.perf_counter()
                try:
                    crop = locate_region(radiograph, self._feature_fn(), self.rfi)
                except (ValueError, RuntimeError) as error:
                    return ReportError(name, f"region-focused inference failed: {error}", "rfi", "rfi-failed")
                except Exception as error:
                    return ReportError.unexpected(name, "rfi", error)
                timings["rfi"] = time.perf_counter() - start
            seen = radiograph if crop.note else crop.crop(radiograph)
            prepared.append(_Prepared(name, radiograph, crop, seen, timings))
        return prepared

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

    def _report_pass(self, rows: int) -> _Pass:
        return _Pass("report", (prompt("structured_report"),) * rows, "structured_report", self.max_new_tokens)

    def _grounding_budget(self, phrase: str) -> int:
        return 16 + 4 * 4 * self.grounding_boxes + len(phrase)

    def _grounding_pass(self, phrase: str, items: list[_Prepared]) -> _Pass:
        """Plain grounding, or detected grounding with the detector's boxes (on the seen image) in the prompt."""
        budget = self._grounding_budget(phrase)
        detected = self.detector is not None and phrase in self.detector.config.labels
        if not detected:
            return _Pass(f"ground:{phrase}", (prompt("phrase_grounding", phrase=phrase),) * len(items), "phrase_grounding", budget)
        prompts = tuple(detected_prompt(phrase, item.detections, (item.seen.width, item.seen.height), self.codec) for item in items)
        return _Pass(f"ground:{phrase}", prompts, "detected_grounding", budget)

    def _generate(self, ready: list[_Prepared], passes: list[_Pass], results: dict[int, ReportResult]) -> dict[str, list[str]]:
        """Each pass's text per image. Constrained passes run together, one row per image and pass,
        through our own decoding loop where the model family has it (timed as one, ``generate_<keys>``)."""
        texts: dict[str, list[str]] = {}
        if not passes:
            return texts
        if self.constrained and supports_fast_decoding(self.model):
            rows = [(item, each, each.prompts[index]) for each in passes for index, item in enumerate(ready)]
            start = time.perf_counter()
            decoded, stats = generate_constrained(
                self.model, [item.seen for item, _, _ in rows], [text for _, _, text in rows],
                [self._constraint(each.key) for _, each, _ in rows], [each.max_new_tokens for _, each, _ in rows],
                tasks=[each.task for _, each, _ in rows], memory=self._drafts, logits_hook=box_order_hook(self._vocabulary),
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
            texts[each.key] = self.model.generate([item.seen for item in ready], list(each.prompts), tasks=[each.task] * len(ready), **kwargs)
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
                boxes = [item.crop.to_original(box) for box in decoded.boxes]
                errors.extend("a box with no area was dropped" for box in boxes if box.area <= 0)
                return [box for box in boxes if box.area > 0]

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
            boxes = [item.crop.to_original(box) for box in decoded.boxes]
            result.boxes += [box for box in boxes if box.area > 0]
            result.box_errors += [f"grounding '{phrase}': {error}" for error in decoded.errors]
            result.box_errors += [f"grounding '{phrase}': a box with no area was dropped" for box in boxes if box.area <= 0]
