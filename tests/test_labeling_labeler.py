"""chexpert-lite: mentions, negation, uncertainty, scope, aggregation and sentence splitting."""

from __future__ import annotations

import pytest

from radscribe.labeling import CHEXPERT_OBSERVATIONS, ChexpertLite, RulesError, label_report, label_reports, split_sentences


def value(text: str, observation: str):
    return label_report(text).values[observation]


def test_observations_in_chexpert_order():
    assert CHEXPERT_OBSERVATIONS[0] == "No Finding" and CHEXPERT_OBSERVATIONS[-1] == "Support Devices"
    assert len(CHEXPERT_OBSERVATIONS) == 14
    assert list(label_report("No effusion.").values) == list(CHEXPERT_OBSERVATIONS)


@pytest.mark.parametrize(
    "text",
    ["No pleural effusion.", "Without evidence of pleural effusion.", "The effusion is not seen.",
     "Pleural effusion has resolved.", "Negative for pleural effusion."],
)
def test_negation(text):
    assert value(text, "Pleural Effusion") == 0


def test_pseudo_negation_keeps_the_finding_positive():
    assert value("No change in cardiomegaly.", "Cardiomegaly") == 1
    assert value("No significant interval change in the right pleural effusion.", "Pleural Effusion") == 1


@pytest.mark.parametrize(
    "text",
    ["Possible pneumonia.", "Opacity may represent pneumonia.", "Cannot exclude pneumonia.",
     "Pneumonia is not excluded.", "Findings suspicious for pneumonia."],
)
def test_uncertainty(text):
    assert value(text, "Pneumonia") == -1


def test_cannot_exclude_beats_negation():
    labels = label_report("No pneumothorax. Cannot exclude a small pneumothorax.")
    assert labels.values["Pneumothorax"] == -1


def test_terminator_ends_negation_scope():
    labels = label_report("No effusion but there is atelectasis.")
    assert labels.values["Pleural Effusion"] == 0
    assert labels.values["Atelectasis"] == 1


def test_negation_stays_in_its_sentence():
    labels = label_report("No pneumothorax. Left basilar atelectasis.")
    assert labels.values["Atelectasis"] == 1


def test_negated_list_and_affirmed_item_after_comma():
    labels = label_report("No focal consolidation, pleural effusion, or pneumothorax.")
    assert (labels.values["Consolidation"], labels.values["Pleural Effusion"], labels.values["Pneumothorax"]) == (0, 0, 0)
    labels = label_report("No pneumothorax, mild cardiomegaly.")
    assert labels.values["Pneumothorax"] == 0 and labels.values["Cardiomegaly"] == 1


def test_positive_beats_uncertain_beats_negative():
    assert value("No effusion on the left. Small right pleural effusion.", "Pleural Effusion") == 1
    assert value("No effusion on the left. Possible right effusion.", "Pleural Effusion") == -1


def test_heart_size_normal_is_negative_and_structure_alone_is_no_finding():
    assert value("Heart size is normal.", "Cardiomegaly") == 0
    assert value("The heart is enlarged.", "Cardiomegaly") == 1
    # Naming the heart without any abnormality is not a cardiomegaly mention.
    assert value("The heart and lungs were examined.", "Cardiomegaly") is None


def test_stable_silhouette_is_uncertain_but_stable_cardiomegaly_positive():
    assert value("Stable cardiac silhouette.", "Cardiomegaly") == -1
    assert value("Stable cardiomegaly.", "Cardiomegaly") == 1


def test_heart_failure_adds_uncertain_cardiomegaly():
    labels = label_report("Findings consistent with CHF.")
    assert labels.values["Edema"] == 1 and labels.values["Cardiomegaly"] == -1


def test_no_finding_rules():
    assert value("Heart size normal. Lungs are clear. No effusion.", "No Finding") == 1
    # Support devices do not block No Finding; other findings do, even uncertain ones.
    assert value("Right PICC line in the SVC. No effusion.", "No Finding") == 1
    assert value("Possible small effusion.", "No Finding") is None
    # CheXpert's "other findings" phrases (here: scoliosis) block it too.
    assert value("Scoliosis. No effusion.", "No Finding") is None
    # No Finding is only ever 1 or blank.
    assert value("Large right pleural effusion.", "No Finding") is None


def test_unmention_phrases():
    assert value("Platelike atelectasis at the left base.", "Support Devices") is None
    assert value("Massive cardiomegaly.", "Lung Lesion") is None
    assert value("Small pericardial effusion.", "Pleural Effusion") is None


def test_mentions_carry_sentence_span_and_status():
    text = "Heart size normal. Small left pleural effusion."
    labels = label_report(text)
    effusion = [m for m in labels.mentions if m.observation == "Pleural Effusion"]
    assert len(effusion) == 1
    mention = effusion[0]
    assert mention.status == "positive"
    assert text[mention.span[0] : mention.span[1]].lower() == "effusion"
    assert mention.sentence == "Small left pleural effusion"
    assert text[mention.sentence_span[0] : mention.sentence_span[1]] == mention.sentence
    assert [f.label for f in labels.findings() if f.status == "positive"] == ["Pleural Effusion"]


def test_empty_report():
    labels = label_report("   ")
    assert labels.status == "empty"
    assert all(v is None for v in labels.values.values())


def test_label_reports_matches_label_report():
    texts = ["No effusion.", "Cardiomegaly.", ""]
    assert [r.values for r in label_reports(texts)] == [label_report(t).values for t in texts]


def test_sentence_splitting():
    assert [s.text for s in split_sentences("Nodule, e.g. 2.5 cm in size. No effusion.")] == [
        "Nodule, e.g. 2.5 cm in size",
        "No effusion",
    ]
    assert [s.text for s in split_sentences("1. Emphysema. 2. Probable scarring.")] == ["Emphysema", "Probable scarring"]
    assert [s.text for s in split_sentences("left apex.There is opacity")] == ["left apex", "There is opacity"]
    assert [s.text for s in split_sentences("normal heart . no effusion .")] == ["normal heart", "no effusion"]
    text = "A. B\nC"
    assert all(text[s.start : s.end] == s.text for s in split_sentences(text))


def test_another_rules_folder(tmp_path, chexpert_rules_dir):
    labeler = ChexpertLite(rules_dir=chexpert_rules_dir)
    assert labeler.label("No pleural effusion.").values["Pleural Effusion"] == 0


def test_bad_rules_folder(tmp_path):
    with pytest.raises(RulesError, match="not a rules folder"):
        ChexpertLite(rules_dir=tmp_path)
    (tmp_path / "phrases" / "mention").mkdir(parents=True)
    with pytest.raises(RulesError, match="no_finding.txt"):
        ChexpertLite(rules_dir=tmp_path)
