"""Chest metrics: chest-pa fields against NIH labels, per-field and macro F1, paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from radscribe.data.manifest import read_manifest
from radscribe.evaluate.bootstrap import paired_bootstrap
from radscribe.evaluate.chest import chest_statistics, nih_fields, per_field_table, predicted_positives, reference_positives
from radscribe.templates import load_template, parse
from radscribe.types import Finding



def nih(*labels: str) -> list[Finding]:
    return [Finding(label, "positive", "nih-nlp") for label in labels]


def chest(**values: str):
    filled = load_template("chest-pa").blank()
    for field in nih_fields():
        filled.set(field, "absent")
    for name, value in values.items():
        filled.set(name.replace("__", "."), value)
    return filled


def test_fields_are_the_thirteen_the_nih_labels_fill() -> None:
    fields = nih_fields()
    assert len(fields) == 13
    assert "lungs.lung_lesion" in fields and "pleura.pleural_effusion" in fields
    assert "impression.no_finding" not in fields and "bones.fracture" not in fields


def test_reference_maps_labels_to_fields_and_ignores_no_finding() -> None:
    fields = nih_fields()
    matrix = reference_positives([nih("Mass", "Nodule", "Effusion"), nih("No Finding"), [Finding("Edema", "negative", "x")]])
    lesion, effusion = fields.index("lungs.lung_lesion"), fields.index("pleura.pleural_effusion")
    assert matrix[0].sum() == 2 and matrix[0, lesion] and matrix[0, effusion]
    assert not matrix[1].any() and not matrix[2].any()


def test_only_present_counts_as_a_positive_prediction() -> None:
    fields = nih_fields()
    atelectasis = fields.index("lungs.atelectasis")
    predicted = predicted_positives(
        [chest(lungs__atelectasis="present"), chest(lungs__atelectasis="uncertain"), chest(lungs__atelectasis="Present "), None]
    )
    assert predicted[:, atelectasis].tolist() == [True, False, True, False]
    assert predicted.sum() == 2


def test_per_field_and_macro_f1_by_hand() -> None:
    fields = ("lungs.atelectasis", "heart_mediastinum.cardiomegaly")
    reference = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)
    predicted = np.array([[1, 0], [0, 1], [1, 0], [0, 0]], dtype=bool)
    # atelectasis TP 1 FP 1 FN 1 -> F1 0.5; cardiomegaly TP 1 FP 0 FN 1 -> F1 2/3; pooled TP 2 FP 1 FN 2.
    statistics = chest_statistics(reference, predicted, fields)
    assert statistics["f1/lungs.atelectasis"].value() == pytest.approx(0.5)
    assert statistics["f1/heart_mediastinum.cardiomegaly"].value() == pytest.approx(2 / 3)
    assert statistics["macro-f1"].value() == pytest.approx((0.5 + 2 / 3) / 2)
    assert statistics["micro-f1"].value() == pytest.approx(4 / 7)
    table = per_field_table(reference, predicted, fields)
    assert table["lungs.atelectasis"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2}


def test_a_field_nobody_marks_scores_zero_and_shapes_are_checked() -> None:
    fields = ("lungs.edema", "lungs.fibrosis")
    reference = np.array([[1, 0], [0, 0]], dtype=bool)
    statistics = chest_statistics(reference, reference.copy(), fields)
    assert statistics["macro-f1"].value() == pytest.approx(0.5)  # edema 1, fibrosis 0/0 -> 0
    with pytest.raises(ValueError, match="columns"):
        chest_statistics(reference, reference, nih_fields())


def test_paired_bootstrap_difference_of_macro_f1() -> None:
    rng = np.random.default_rng(0)
    reference = rng.random((60, 13)) < 0.2
    good = chest_statistics(reference, reference.copy())["macro-f1"]
    always = chest_statistics(reference, np.ones_like(reference))["macro-f1"]
    paired = paired_bootstrap(good, always, n_resamples=300, seed=0)
    assert paired.difference == pytest.approx(good.value() - always.value())
    assert paired.low > 0
    same = paired_bootstrap(always, chest_statistics(reference, np.ones_like(reference))["macro-f1"], n_resamples=100)
    assert same.difference == 0 and same.low == 0 and same.high == 0


def test_reference_positives_agree_with_the_manifest_templates(chest_manifest) -> None:
    studies = read_manifest(chest_manifest)
    from_labels = reference_positives([study.findings for study in studies])
    from_templates = predicted_positives([parse(study.structured, study.template) for study in studies])
    assert from_labels.shape == (len(studies), 13)
    assert (from_labels == from_templates).all()
    assert from_labels.sum() > 100
