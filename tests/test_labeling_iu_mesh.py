"""chexpert-lite against the human MeSH coding of the IU X-ray reports (real data; skips without it)."""

from __future__ import annotations

from radscribe.labeling import ChexpertLite
from radscribe.labeling.validation import agreement, iu_report_text, load_iu_reports, load_mesh_mapping, score_against_mesh

# Measured 0.868 (positive-only, observations with >= 30 MeSH positives) by
# benchmarks/labeler_iu_mesh.py; the floor sits a little below to catch regressions.
MACRO_F1_FLOOR = 0.85


def test_mesh_mapping_reads_heading_and_qualifiers():
    mapping = load_mesh_mapping()
    assert mapping.observations(["Pulmonary Atelectasis/base/left"]) == {"Atelectasis"}
    assert mapping.observations(["Cardiac Shadow/enlarged/mild"]) == {"Cardiomegaly"}
    assert mapping.observations(["Cardiac Shadow/obscured"]) == set()
    assert mapping.observations(["Mass/breast/large"]) == set()
    assert mapping.observations(["Hydropneumothorax/right"]) == {"Pneumothorax", "Pleural Effusion"}
    assert mapping.excluded(["No Indexing"]) and not mapping.excluded(["normal"])


def test_agreement_arithmetic():
    row = agreement("x", [True, True, False, False], [True, False, True, False])
    assert (row.tp, row.fp, row.fn, row.tn) == (1, 1, 1, 1)
    assert row.precision == row.recall == row.f1 == 0.5
    assert row.kappa == 0.0


def test_macro_f1_against_iu_mesh(iu_dir):
    records = load_iu_reports(iu_dir / "reports.jsonl")
    assert len(records) == 3955
    mapping = load_mesh_mapping()
    labeler = ChexpertLite()
    scored = [r for r in records if iu_report_text(r) and not mapping.excluded(r["mesh_major"])]
    values = [labeler.label(iu_report_text(r)).values for r in scored]
    result = score_against_mesh(values, [mapping.observations(r["mesh_major"]) for r in scored])
    assert {"No Finding", "Cardiomegaly", "Atelectasis", "Pleural Effusion"} <= set(result["reliable_observations"])
    assert result["macro_f1_reliable"] >= MACRO_F1_FLOOR, result["macro_f1_reliable"]
