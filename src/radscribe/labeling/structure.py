"""Free-text chest report -> filled ``chest-pa`` template, with the sentences behind every field.

The observation fields take chexpert-lite's values (positive -> present, negative -> absent,
uncertain -> uncertain) through ``templates/specs/label-mapping.yaml``; an observation the report
never mentions is "not assessed", since the text says nothing about it. The fields with no CheXpert
observation (emphysema, fibrosis, pleural thickening, hernia) and the anatomy keywords that route
sentences to sections are data: ``rules/chest_sections.yaml``. Findings and impression are labelled
as one text, exactly as the labeler benchmark does (``validation.iu_report_text``), so the values
here are the benchmarked ones; provenance spans point into the caller's findings or impression
string.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal


from radscribe.data.manifest import read_manifest, relative_image_path, resolve_image_path, write_manifest
from radscribe.labeling.labeler import HEART_FAILURE, LABELER_NAME, Mention, ReportLabels, default_labeler
from radscribe.labeling.rules import CHEXPERT_OBSERVATIONS, RULES_DIR, RulesError, read_rules_yaml
from radscribe.labeling.sentences import split_sentences
from radscribe.templates import FilledTemplate, TemplateParseError, load_label_mapping, load_template, parse, render, validate
from radscribe.types import Study

STRUCTURE_RULES_PATH = RULES_DIR / "chest_sections.yaml"
CHEST_TEMPLATE = "chest-pa"
METADATA_KEY = "text_structure"
StructureStatus = Literal["ok", "empty", "unparseable"]
ReportSection = Literal["findings", "impression"]
Progress = Callable[[Iterable[Study], int], Iterator[Study]]

_FIELD_VALUE = {"positive": "present", "negative": "absent", "uncertain": "uncertain"}
_LABEL_STATUS = {1: "positive", 0: "negative", -1: "uncertain"}
_RANK = {"negative": 0, "uncertain": 1, "positive": 2}
NOT_ASSESSED = "not assessed"
# Without an impression section, the impression is the end of the findings (where radiologists sum up).
IMPRESSION_FALLBACK_SENTENCES = 2


@dataclass(frozen=True)
class SourceSentence:
    """A sentence of the input: ``text == (findings if section == "findings" else impression)[span[0]:span[1]]``."""

    section: ReportSection
    text: str
    span: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"section": self.section, "text": self.text, "span": list(self.span)}


@dataclass
class StructuredReport:
    """The outcome of :func:`structure_report`.

    ``filled`` is None unless ``status == "ok"``; ``reason`` says why otherwise. ``provenance`` maps
    a field id (``lungs.edema``) to the sentences it was filled from; ``routed`` maps each chest-pa
    section to the sentences about it (by the observations they mention and by anatomy keywords);
    ``unrouted`` holds sentences that named no section.
    """

    status: StructureStatus
    filled: FilledTemplate | None
    labels: ReportLabels
    provenance: dict[str, list[SourceSentence]] = field(default_factory=dict)
    routed: dict[str, list[SourceSentence]] = field(default_factory=dict)
    unrouted: list[SourceSentence] = field(default_factory=list)
    reason: str = ""

    @property
    def markdown(self) -> str | None:
        return render(self.filled) if self.filled is not None else None


@dataclass(frozen=True)
class DerivedField:
    field: str
    observations: frozenset[str]
    mention: re.Pattern[str]


@dataclass(frozen=True)
class StructureRules:
    section_keywords: dict[str, re.Pattern[str]]
    derived: tuple[DerivedField, ...]
    projection: dict[str, re.Pattern[str]]  # "PA"/"AP" -> phrases stating it
    assumed_projection: str


@dataclass
class StructureSummary:
    total: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # ok / empty / unparseable
    valid: int = 0
    present: Counter[str] = field(default_factory=Counter)    # field id -> studies with "present"
    problems: list[tuple[str, str]] = field(default_factory=list)  # (study id, reason), not ok or not valid


def load_structure_rules(path: Path | str | None = None) -> StructureRules:
    """Read ``chest_sections.yaml`` (or a file in its format), checked against ``chest-pa``."""
    path = Path(path) if path is not None else STRUCTURE_RULES_PATH
    data = read_rules_yaml(path, "structure rules")
    template = load_template(CHEST_TEMPLATE)
    section_ids = {section.id for section in template.sections}

    def words(where: str, entries: Any) -> re.Pattern[str]:
        if not isinstance(entries, list) or not entries or not all(isinstance(entry, str) for entry in entries):
            raise RulesError(f"{path}: field '{where}': expected a non-empty list of phrases")
        try:
            # One word-boundary test around the whole list: only ever searched for, so no order issues.
            return re.compile(rf"(?<![a-z0-9])(?:{'|'.join(f'(?:{entry})' for entry in entries)})(?![a-z0-9])")
        except re.error as error:
            raise RulesError(f"{path}: field '{where}': not a valid regular expression ({error})") from None

    sections = data.get("sections") or {}
    for section_id in sections:
        if section_id not in section_ids:
            raise RulesError(f"{path}: field 'sections.{section_id}': not a section of {CHEST_TEMPLATE} ({', '.join(sorted(section_ids))})")
    derived = []
    for field_id, entry in (data.get("derived_fields") or {}).items():
        where = f"derived_fields.{field_id}"
        try:
            template.field(field_id)
        except KeyError:
            raise RulesError(f"{path}: field '{where}': not a field of {CHEST_TEMPLATE}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("mention"), str):
            raise RulesError(f"{path}: field '{where}': expected a mapping with 'observations' and 'mention'")
        observations = entry.get("observations") or []
        unknown = [name for name in observations if name not in CHEXPERT_OBSERVATIONS]
        if unknown or not observations:
            raise RulesError(f"{path}: field '{where}.observations': expected CheXpert observations, got {observations!r}")
        derived.append(DerivedField(field_id, frozenset(observations), words(f"{where}.mention", [entry["mention"]])))
    projection = data.get("projection") or {}
    assumed = projection.get("assumed")
    allowed = template.field("technique.projection").values
    if assumed not in allowed:
        raise RulesError(f"{path}: field 'projection.assumed': expected one of {', '.join(allowed)}, got {assumed!r}")
    stated = {view: words(f"projection.{view}", projection.get(view)) for view in allowed if view in projection}
    return StructureRules(
        {section_id: words(f"sections.{section_id}", entries) for section_id, entries in sections.items()},
        tuple(derived),
        stated,
        assumed,
    )


@lru_cache(maxsize=1)
def default_structure_rules() -> StructureRules:
    return load_structure_rules()


@lru_cache(maxsize=1)
def _observation_fields() -> dict[str, str]:
    """CheXpert observation -> chest-pa field id, from ``label-mapping.yaml``."""
    mapping = load_label_mapping()
    return {observation: mapping.field_for_chexpert(observation) for observation in CHEXPERT_OBSERVATIONS}


def structure_report(
    findings: str,
    impression: str = "",
    *,
    projection: str | None = None,
    rules: StructureRules | None = None,
) -> StructuredReport:
    """Structure one free-text chest report into ``chest-pa``.

    ``projection`` ("PA"/"AP", e.g. the image's view) is used when the text states none; failing
    both, ``rules``' assumed projection is used and the template's label source says so.
    """
    rules = rules if rules is not None else default_structure_rules()
    findings, impression = findings or "", impression or ""
    parts = _Parts(findings, impression)
    labels = default_labeler().label(parts.text)
    if labels.status == "empty":
        return StructuredReport("empty", None, labels, reason="no findings or impression text")
    sentences = [parts.source(sentence.start, sentence.end) for sentence in split_sentences(parts.text)]
    if not sentences:
        return StructuredReport("unparseable", None, labels, reason="the text has no sentence with a letter or digit")

    template = load_template(CHEST_TEMPLATE)
    filled = template.blank()
    provenance: dict[str, list[SourceSentence]] = {}

    def cite(field_id: str, mention: Mention) -> None:
        source = parts.source(*mention.sentence_span)
        cited = provenance.setdefault(field_id, [])
        if source not in cited:
            cited.append(source)

    # Observation fields: the labeler's values; each cites the sentences that mention it.
    for observation in CHEXPERT_OBSERVATIONS:
        if observation == "No Finding":
            continue
        field_id = _observation_fields()[observation]
        value = labels.values[observation]
        filled.set(field_id, NOT_ASSESSED if value is None else _FIELD_VALUE[_LABEL_STATUS[value]])
        for mention in labels.mentions:
            if mention.observation == observation or (observation == "Cardiomegaly" and _affirms_heart_failure(mention)):
                cite(field_id, mention)
    # Fields with no CheXpert observation: the strongest status of the mentions that name them.
    for derived in rules.derived:
        status = None
        for mention in labels.mentions:
            if mention.observation in derived.observations and derived.mention.search(mention.text.lower()):
                cite(derived.field, mention)
                if status is None or _RANK[mention.status] > _RANK[status]:
                    status = mention.status
        filled.set(derived.field, NOT_ASSESSED if status is None else _FIELD_VALUE[status])

    affirmed = [m for m in labels.mentions if m.status != "negative" and m.observation != "Support Devices"]
    if labels.values["No Finding"] == 1:
        filled.set("impression.no_finding", "yes")
        for mention in labels.mentions:
            cite("impression.no_finding", mention)
    else:
        filled.set("impression.no_finding", "no" if any(m.status == "positive" for m in affirmed) else NOT_ASSESSED)
        for mention in affirmed:
            cite("impression.no_finding", mention)

    impression_sentences = [s for s in sentences if s.section == "impression"] or sentences[-IMPRESSION_FALLBACK_SENTENCES:]
    # The source text from the first of these sentences to the end, so that punctuation stays.
    first = impression_sentences[0]
    filled.set("impression.text", " ".join(parts.raw[first.section][first.span[0] :].split()))
    provenance["impression.text"] = impression_sentences

    view, stated_by = _projection(sentences, rules)
    note = ""
    if view is None:
        allowed = template.field("technique.projection").values
        view = projection.upper() if projection and projection.upper() in allowed else None
        note = "" if view is not None else f"; projection not stated, {rules.assumed_projection} assumed"
        view = view or rules.assumed_projection
    else:
        provenance["technique.projection"] = [stated_by]  # type: ignore[list-item]
    filled.set("technique.projection", view)
    filled.set("technique.label_source", f"{LABELER_NAME} labels from the report text{note}")
    filled.set("localized.regions", [])  # free text gives no image regions

    routed, unrouted = _route(sentences, provenance, rules)
    issues = validate(filled)
    if issues:
        reason = "; ".join(str(issue) for issue in issues)
        return StructuredReport("unparseable", None, labels, provenance, routed, unrouted, f"filled template does not validate: {reason}")
    return StructuredReport("ok", filled, labels, provenance, routed, unrouted)


class _Parts:
    """Findings and impression joined as the labeler reads them, with offsets back into each part."""

    def __init__(self, findings: str, impression: str):
        self.raw = {"findings": findings, "impression": impression}
        stripped = {name: text.strip() for name, text in self.raw.items()}
        self.lead = {name: len(text) - len(text.lstrip()) for name, text in self.raw.items()}
        present = [name for name in ("findings", "impression") if stripped[name]]
        self.text = "\n".join(stripped[name] for name in present)
        # Where each present part starts in the joined text.
        self.starts: list[tuple[int, ReportSection]] = []
        position = 0
        for name in present:
            self.starts.append((position, name))  # type: ignore[arg-type]
            position += len(stripped[name]) + 1

    def source(self, start: int, end: int) -> SourceSentence:
        part_start, name = max(entry for entry in self.starts if entry[0] <= start)
        offset = self.lead[name] - part_start
        span = (start + offset, end + offset)
        return SourceSentence(name, self.raw[name][span[0] : span[1]], span)


def _route(
    sentences: list[SourceSentence], provenance: dict[str, list[SourceSentence]], rules: StructureRules
) -> tuple[dict[str, list[SourceSentence]], list[SourceSentence]]:
    """Each sentence goes to the sections of the observation fields it fills and those its words name."""
    section_ids = [section.id for section in load_template(CHEST_TEMPLATE).sections]
    routed: dict[str, list[SourceSentence]] = {section_id: [] for section_id in section_ids}
    unrouted = []
    for sentence in sentences:
        found = {
            field_id.split(".")[0]
            for field_id, cited in provenance.items()
            if sentence in cited and not field_id.startswith(("impression.", "technique."))
        }
        lowered = sentence.text.lower()
        found |= {section_id for section_id, keywords in rules.section_keywords.items() if keywords.search(lowered)}
        if sentence.section == "impression":
            found.add("impression")
        for section_id in section_ids:
            if section_id in found:
                routed[section_id].append(sentence)
        if not found:
            unrouted.append(sentence)
    return routed, unrouted


def _affirms_heart_failure(mention: Mention) -> bool:
    """CheXpert: affirmed heart failure (an Edema mention) makes Cardiomegaly uncertain."""
    return mention.observation == "Edema" and mention.status != "negative" and bool(HEART_FAILURE.search(mention.text.lower()))


def _projection(sentences: list[SourceSentence], rules: StructureRules) -> tuple[str | None, SourceSentence | None]:
    for sentence in sentences:
        lowered = sentence.text.lower()
        for view, phrases in rules.projection.items():
            if phrases.search(lowered):
                return view, sentence
    return None, None


def structure_study(study: Study) -> Study:
    """``study`` with ``structured``/``template`` from its report text and chexpert-lite findings.

    A study without report text keeps its template and findings; ``metadata["text_structure"]``
    says what happened either way.
    """
    result = replace(study, metadata=dict(study.metadata))
    findings, impression = study.report.get("findings", ""), study.report.get("impression", "")
    view = study.images[0].view if study.images else None
    report = structure_report(findings, impression, projection=view)
    record: dict[str, Any] = {"status": report.status, "labeler": LABELER_NAME, "template": CHEST_TEMPLATE}
    if report.status != "ok" or report.filled is None:
        record["reason"] = report.reason
        result.metadata[METADATA_KEY] = record
        return result
    markdown = render(report.filled)
    try:
        issues = [str(issue) for issue in validate(parse(markdown, CHEST_TEMPLATE))]
    except TemplateParseError as error:
        issues = [f"rendered markdown does not parse back: {error}"]
    result.template, result.structured = CHEST_TEMPLATE, markdown
    result.findings = [f for f in study.findings if f.source != LABELER_NAME] + report.labels.findings()
    record.update(
        valid=not issues,
        issues=issues,
        provenance={
            field_id: [[s.section, s.span[0], s.span[1]] for s in sources] for field_id, sources in report.provenance.items()
        },
    )
    result.metadata[METADATA_KEY] = record
    return result


def structure_manifest(
    in_manifest: Path | str, out_manifest: Path | str, *, progress: Progress | None = None
) -> StructureSummary:
    """Structure the report text of every study of ``in_manifest`` into ``out_manifest`` (atomic).

    Every study is written; each gets ``metadata["text_structure"]`` with its status (``ok``,
    ``empty``, ``unparseable`` plus ``reason``), and for ``ok`` whether the rendered markdown parsed
    back into a valid template, its issues, and the provenance (field -> [section, start, end]).
    """
    source, out = Path(in_manifest), Path(out_manifest)
    studies = read_manifest(source)
    summary = StructureSummary(total=len(studies))

    def structured() -> Iterator[Study]:
        for study in progress(studies, len(studies)) if progress else studies:
            result = structure_study(study)
            record = result.metadata[METADATA_KEY]
            summary.statuses[record["status"]] += 1
            if record["status"] != "ok":
                summary.problems.append((study.id, record["reason"]))
            elif not record["valid"]:
                summary.problems.append((study.id, "; ".join(record["issues"])))
            else:
                summary.valid += 1
                for section, values in parse(result.structured or "", CHEST_TEMPLATE).sections.items():
                    for name, value in values.items():
                        if value == "present":
                            summary.present[f"{section}.{name}"] += 1
            yield _relocate(result, source, out)

    write_manifest(structured(), out)
    return summary


def _relocate(study: Study, source: Path, out: Path) -> Study:
    """Image paths relative to the output manifest's folder."""
    if source.resolve().parent == out.resolve().parent:
        return study
    study.images = [replace(image, path=relative_image_path(out, resolve_image_path(source, image.path))) for image in study.images]
    return study
