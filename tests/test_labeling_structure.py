"""Free-text chest reports -> chest-pa (radscribe.labeling.structure), on the real IU X-ray reports."""

from __future__ import annotations

import re

import pytest

from radscribe.data.manifest import read_manifest, write_manifest
from radscribe.labeling import ChexpertLite, default_labeler, split_sentences, structure_manifest, structure_report
from radscribe.labeling.rules import RulesError, _alternation
from radscribe.labeling.structure import load_structure_rules
from radscribe.labeling.validation import iu_report_text, load_iu_reports
from radscribe.templates import parse, render, validate
from radscribe.types import Finding, ImageRef, Study

IU_REPORTS_WITH_TEXT = 3927  # of 3955; 28 have neither findings nor impression


def _assert_provenance_in_input(report, findings: str, impression: str) -> None:
    source = {"findings": findings, "impression": impression}
    cited = [s for sentences in report.provenance.values() for s in sentences]
    routed = [s for sentences in report.routed.values() for s in sentences] + report.unrouted
    for sentence in cited + routed:
        assert source[sentence.section][sentence.span[0] : sentence.span[1]] == sentence.text
        assert sentence.text.strip() == sentence.text and sentence.text


def test_every_iu_report_structures_validates_and_round_trips(iu_dir):
    records = load_iu_reports(iu_dir / "reports.jsonl")
    statuses: dict[str, int] = {}
    valid = 0
    for record in records:
        findings, impression = record.get("findings") or "", record.get("impression") or ""
        report = structure_report(findings, impression)
        statuses[report.status] = statuses.get(report.status, 0) + 1
        if not iu_report_text(record):
            assert report.status == "empty" and report.filled is None and report.reason
            continue
        assert report.status == "ok", (record["uid"], report.reason)
        assert validate(report.filled) == [], record["uid"]
        markdown = render(report.filled)
        again = parse(markdown, "chest-pa")
        assert validate(again) == [] and render(again) == markdown, record["uid"]
        # Findings and impression are labelled as the labeler benchmark reads them: same values.
        assert report.labels.values == default_labeler().label(iu_report_text(record)).values, record["uid"]
        _assert_provenance_in_input(report, findings, impression)
        valid += 1
    assert valid == IU_REPORTS_WITH_TEXT
    assert statuses == {"ok": IU_REPORTS_WITH_TEXT, "empty": len(records) - IU_REPORTS_WITH_TEXT}


def test_fields_follow_the_labeler_and_cite_their_sentences():
    findings = "The heart is enlarged. There is no pneumothorax. Small left pleural effusion is possible. Lungs are clear."
    report = structure_report(findings, "Cardiomegaly.")
    filled = report.filled
    assert filled.get("heart_mediastinum.cardiomegaly") == "present"
    assert filled.get("pleura.pneumothorax") == "absent"
    assert filled.get("pleura.pleural_effusion") == "uncertain"
    assert filled.get("bones.fracture") == "not assessed"  # never mentioned: the text says nothing
    assert filled.get("impression.no_finding") == "no"
    assert filled.get("impression.text") == "Cardiomegaly."
    assert [s.text for s in report.provenance["pleura.pneumothorax"]] == ["There is no pneumothorax"]
    assert {s.section for s in report.provenance["heart_mediastinum.cardiomegaly"]} == {"findings", "impression"}
    assert "Lungs are clear" in [s.text for s in report.routed["lungs"]]
    assert [s.text for s in report.routed["heart_mediastinum"]][:1] == ["The heart is enlarged"]


def test_fields_without_a_chexpert_observation_come_from_mention_text():
    report = structure_report("Hyperinflated lungs compatible with emphysema. Small hiatal hernia. Apical pleural thickening.")
    assert report.filled.get("lungs.emphysema") == "present"
    assert report.filled.get("heart_mediastinum.hernia") == "present"
    assert report.filled.get("pleura.pleural_thickening") == "present"
    assert report.filled.get("lungs.fibrosis") == "not assessed"
    assert report.provenance["heart_mediastinum.hernia"][0].text == "Small hiatal hernia"


def test_empty_and_unparseable_reports_say_why():
    for findings, impression in (("", ""), ("  \n ", "\t")):
        report = structure_report(findings, impression)
        assert report.status == "empty" and report.filled is None and report.markdown is None and report.reason
    report = structure_report("... --- ...", "")
    assert report.status == "unparseable" and report.filled is None and "sentence" in report.reason


def test_only_impression():
    impression = "  No acute cardiopulmonary abnormality. Stable  mild\ncardiomegaly. "
    report = structure_report("", impression)
    assert report.status == "ok"
    assert report.filled.get("impression.text") == "No acute cardiopulmonary abnormality. Stable mild cardiomegaly."
    assert report.filled.get("heart_mediastinum.cardiomegaly") == "present"
    assert {s.section for sentences in report.provenance.values() for s in sentences} == {"impression"}
    _assert_provenance_in_input(report, "", impression)


def test_without_impression_the_last_findings_sentences_stand_in():
    findings = "Heart size normal. No effusion. Lungs clear.\n"
    report = structure_report(findings)
    assert report.filled.get("impression.text") == "No effusion. Lungs clear."
    assert [s.text for s in report.provenance["impression.text"]] == ["No effusion", "Lungs clear"]


def test_non_ascii_and_anonymisation_tokens():
    findings = "  Le cœur est normal. Ünremarkable mediastinum — no pleural effusión. There are no XXXX of a pleural effusion. "
    impression = "Normal chest x-XXXX. Température 38°C, no pneumothorax."
    report = structure_report(findings, impression)
    assert report.status == "ok" and validate(report.filled) == []
    assert report.filled.get("pleura.pleural_effusion") == "absent"
    assert report.filled.get("pleura.pneumothorax") == "absent"
    assert report.filled.get("impression.text") == "Normal chest x-XXXX. Température 38°C, no pneumothorax."
    markdown = render(report.filled)
    assert render(parse(markdown, "chest-pa")) == markdown
    _assert_provenance_in_input(report, findings, impression)


def test_projection_stated_given_or_assumed():
    stated = structure_report("PA and lateral views of the chest. No pneumothorax.")
    assert stated.filled.get("technique.projection") == "PA"
    assert stated.provenance["technique.projection"][0].text == "PA and lateral views of the chest"
    portable = structure_report("Portable view of the chest. No pneumothorax.", projection="PA")
    assert portable.filled.get("technique.projection") == "AP"  # the text wins over the caller
    given = structure_report("No pneumothorax.", projection="ap")
    assert given.filled.get("technique.projection") == "AP"
    assert "assumed" not in given.filled.get("technique.label_source")
    assumed = structure_report("No pneumothorax.")
    assert assumed.filled.get("technique.projection") == "PA"
    assert "PA assumed" in assumed.filled.get("technique.label_source")


def test_structure_manifest_writes_every_study_with_its_status(tmp_path):
    studies = [
        Study("a", [ImageRef("images/a.png", view="AP")], report={"findings": "Large right pleural effusion.", "impression": "Effusion."}),
        Study("b", [ImageRef("images/b.png")], report={}, template="chest-pa", structured="kept", findings=[Finding("Mass", "positive", "nih-nlp")]),
        Study(
            "c",
            [ImageRef("images/c.png")],
            report={"findings": "No pneumothorax."},
            findings=[Finding("Mass", "positive", "nih-nlp"), Finding("Edema", "positive", "chexpert-lite")],
        ),
        Study("d", [], report={"findings": "—"}),
    ]
    source = tmp_path / "in" / "manifest.jsonl"
    write_manifest(studies, source)
    out = tmp_path / "out" / "structured.jsonl"
    summary = structure_manifest(source, out)
    assert summary.total == 4 and summary.valid == 2
    assert summary.statuses == {"ok": 2, "empty": 1, "unparseable": 1}
    assert summary.present["pleura.pleural_effusion"] == 1
    assert {study_id for study_id, _ in summary.problems} == {"b", "d"}
    written = {study.id: study for study in read_manifest(out)}
    a, b, c, d = (written[key] for key in "abcd")
    assert a.template == "chest-pa" and parse(a.structured, "chest-pa").get("pleura.pleural_effusion") == "present"
    assert parse(a.structured, "chest-pa").get("technique.projection") == "AP"  # from the image's view
    assert a.metadata["text_structure"]["status"] == "ok" and a.metadata["text_structure"]["valid"] is True
    assert a.metadata["text_structure"]["provenance"]["pleura.pleural_effusion"][0] == ["findings", 0, 28]
    assert Finding("Pleural Effusion", "positive", "chexpert-lite") in a.findings
    assert a.images[0].path == "../in/images/a.png"
    assert b.metadata["text_structure"]["status"] == "empty" and b.structured == "kept" and b.findings == studies[1].findings
    # Earlier chexpert-lite findings are replaced, other sources kept.
    assert Finding("Mass", "positive", "nih-nlp") in c.findings and Finding("Edema", "positive", "chexpert-lite") not in c.findings
    assert Finding("Pneumothorax", "negative", "chexpert-lite") in c.findings
    assert d.metadata["text_structure"]["status"] == "unparseable" and d.metadata["text_structure"]["reason"]
    assert not list(out.parent.glob(".*.tmp"))


def test_structure_rules_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("sections:\n  kidneys: [renal]\nprojection: {assumed: PA}\n")
    with pytest.raises(RulesError, match=r"rules\.yaml: field 'sections\.kidneys'"):
        load_structure_rules(bad)
    bad.write_text("derived_fields:\n  lungs.emphysema: {observations: [Emphysema], mention: emphysema}\nprojection: {assumed: PA}\n")
    with pytest.raises(RulesError, match="derived_fields.lungs.emphysema.observations"):
        load_structure_rules(bad)
    bad.write_text("projection: {assumed: lateral}\n")
    with pytest.raises(RulesError, match="projection.assumed"):
        load_structure_rules(bad)


def test_fast_matching_finds_exactly_what_the_plain_alternation_finds(iu_dir):
    """The labeler's speed-ups (a shared word-start test, running only the phrases present) keep every match."""
    labeler = ChexpertLite()
    sentences = [
        s.text.lower() for record in load_iu_reports(iu_dir / "reports.jsonl")[:1500] for s in split_sentences(iu_report_text(record))
    ]
    compared = shared = 0
    for observation, phrases in labeler.phrases.items():
        regexes = [regex for _, regex in phrases.mention_branches]
        plain = re.compile("|".join(f"(?:{regex})" for regex in regexes))  # the alternation, untouched
        factored = _alternation(regexes)
        shared += factored.pattern != plain.pattern  # the word-start test is shared
        for sentence in sentences:
            expected = [m.span() for m in plain.finditer(sentence)]
            assert [m.span() for m in factored.finditer(sentence)] == expected, (observation, sentence)
            present = tuple(i for i, (literal, _) in enumerate(phrases.mention_branches) if literal in sentence)
            filtered = [m.span() for m in labeler._branches(observation, present).finditer(sentence)] if present else []
            assert filtered == expected, (observation, sentence)
            compared += bool(expected)
    assert compared > 1000 and shared >= 1


def test_cli_annotate_chest_text(tmp_path):
    from typer.testing import CliRunner

    from radscribe.cli.main import app

    source = tmp_path / "reports.jsonl"
    write_manifest([Study("a", report={"findings": "Small right pleural effusion."}), Study("b", report={})], source)
    result = CliRunner().invoke(app, ["annotate", "chest-text", str(source), "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "ok 1, empty 1, unparseable 0; 1 valid" in result.output
    assert [s.template for s in read_manifest(tmp_path / "out.jsonl")] == ["chest-pa", None]
    missing = CliRunner().invoke(app, ["annotate", "chest-text", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "x.jsonl")])
    assert missing.exit_code != 0 and "none.jsonl" in missing.output
