"""Clinical efficacy: every variant against hand-computed values, label CSVs, and CheXbert from a tiny local checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radscribe.evaluate.clinical import (
    CE_LABELS_5,
    LabelFileError,
    LabelMatrix,
    clinical_scores,
    precision_recall_f1,
    read_label_csv,
)
from radscribe.labeling import CHEXPERT_OBSERVATIONS

N = float("nan")


def _matrix(rows: list[dict[str, float]]) -> LabelMatrix:
    return LabelMatrix.from_rows(rows)


# Three reports over Cardiomegaly (C), Edema (E), Pleural Effusion (P):
#   ref: r0 C=1 E=-1      r1 P=1 C=0     r2 (all blank)
#   hyp: h0 C=1 P=1       h1 P=-1        h2 E=1
REF = _matrix([{"Cardiomegaly": 1, "Edema": -1}, {"Pleural Effusion": 1, "Cardiomegaly": 0}, {}])
HYP = _matrix([{"Cardiomegaly": 1, "Pleural Effusion": 1}, {"Pleural Effusion": -1}, {"Edema": 1}])


def _score(scores, name: str, protocol: str) -> float:
    return next(s.value for s in scores if s.name == name and s.protocol == protocol)


def test_pos_only_micro_macro_weighted_example_by_hand():
    scores = clinical_scores(REF, HYP, "test")
    # pos-only: ref positives {r0:C, r1:P}; hyp positives {h0:C,P ; h2:E}. TP=1 (C), FP=2 (P@0, E@2), FN=1 (P@1).
    assert _score(scores, "ce-precision", "pos-only/micro/14@test") == pytest.approx(1 / 3)
    assert _score(scores, "ce-recall", "pos-only/micro/14@test") == pytest.approx(1 / 2)
    assert _score(scores, "ce-f1", "pos-only/micro/14@test") == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    # macro over 14: Cardiomegaly P=R=F1=1; Pleural Effusion tp0 fp1 fn1 -> 0; Edema fp1 -> 0; others 0/0 -> 0.
    assert _score(scores, "ce-f1", "pos-only/macro/14@test") == pytest.approx(1 / 14)
    assert _score(scores, "ce-f1", "pos-only/macro/5@test") == pytest.approx(1 / 5)
    # weighted by support: C (1) F1=1, P (1) F1=0 -> 0.5; precision: C 1, P 0 -> 0.5.
    assert _score(scores, "ce-f1", "pos-only/weighted/14@test") == pytest.approx(0.5)
    assert _score(scores, "ce-precision", "pos-only/weighted/5@test") == pytest.approx(0.5)
    # example: r0 tp1 fp1 fn0 -> P .5 R 1 F1 2/3; r1 tp0 fn1 -> 0; r2 fp1 -> 0 (0/0 recall -> 0).
    assert _score(scores, "ce-precision", "pos-only/example/14@test") == pytest.approx(0.5 / 3)
    assert _score(scores, "ce-recall", "pos-only/example/14@test") == pytest.approx(1 / 3)
    assert _score(scores, "ce-f1", "pos-only/example/14@test") == pytest.approx((2 / 3) / 3)


def test_uncertain_as_positive_by_hand():
    scores = clinical_scores(REF, HYP, "test")
    # ref positives {r0:C,E ; r1:P}; hyp positives {h0:C,P ; h1:P ; h2:E}. TP = C@0, P@1 = 2; FP = P@0, E@2 = 2; FN = E@0 = 1.
    assert _score(scores, "ce-precision", "uncertain-as-pos/micro/14@test") == pytest.approx(0.5)
    assert _score(scores, "ce-recall", "uncertain-as-pos/micro/14@test") == pytest.approx(2 / 3)
    # macro over the 5: C F1 1, E tp0 fp1 fn1 -> 0, P tp1 fp1 -> 2/3, Atelectasis 0, Consolidation 0.
    assert _score(scores, "ce-f1", "uncertain-as-pos/macro/5@test") == pytest.approx((1 + 2 / 3) / 5)
    example = next(s for s in scores if s.key == "ce-f1@uncertain-as-pos/example/5@test")
    # r0: ref {C, E}, hyp {C, P}: tp 1, fp 1, fn 1 -> 0.5; r1: {P} vs {P} -> 1; r2: {} vs {E} -> 0.
    assert example.per_sample == pytest.approx([0.5, 1.0, 0.0])


def test_every_variant_is_named_once():
    keys = [s.key for s in clinical_scores(REF, HYP, "chexpert-lite")]
    assert len(keys) == len(set(keys)) == 2 * 4 * 2 * 3
    assert "ce-f1@pos-only/micro/14@chexpert-lite" in keys
    assert "ce-recall@uncertain-as-pos/example/5@chexpert-lite" in keys


def test_zero_division_is_zero_everywhere():
    empty = np.zeros((2, 3), dtype=bool)
    for average in ("micro", "macro", "weighted", "example"):
        assert precision_recall_f1(empty, empty, average) == (0.0, 0.0, 0.0)


def test_perfect_prediction_scores_one_where_defined():
    ref = np.array([[True, False], [False, True]])
    for average in ("micro", "macro", "weighted", "example"):
        assert precision_recall_f1(ref, ref, average) == pytest.approx((1.0, 1.0, 1.0))


def test_label_csv_round_trip_and_errors(tmp_path):
    header = ["study_id", "Reports", *CHEXPERT_OBSERVATIONS]
    rows = [["a", "text", *([""] * 13), "1.0"], ["b", "x", "", "-1", *([""] * 11), "0"]]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    matrix = read_label_csv(path)
    assert matrix.ids == ("a", "b")
    assert matrix.values[0, -1] == 1 and math.isnan(matrix.values[0, 0])
    assert matrix.values[1, 1] == -1 and matrix.values[1, -1] == 0
    assert matrix.select(["b", "zz"]).values[0, 1] == -1 and np.isnan(matrix.select(["b", "zz"]).values[1]).all()
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(header) + "\n" + ",".join(["a", "t", "2", *([""] * 13)]) + "\n")
    with pytest.raises(LabelFileError, match=r"bad.csv:2: column 'No Finding'"):
        read_label_csv(bad)
    (tmp_path / "short.csv").write_text("id,Edema\n")
    with pytest.raises(LabelFileError, match="header lacks"):
        read_label_csv(tmp_path / "short.csv")


def test_five_label_subset_is_the_published_one():
    assert set(CE_LABELS_5) == {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"}


def test_chexpert_lite_labels_real_iu_reports(iu_dir):
    import json

    from radscribe.evaluate import create_scorer

    with (iu_dir / "reports.jsonl").open() as handle:
        reports = [json.loads(line) for _, line in zip(range(40), handle)]
    texts = [" ".join(x for x in (r["findings"], r["impression"]) if x) for r in reports]
    scores = create_scorer("ce", labeler="chexpert-lite").compute_score(texts, texts)
    micro = next(s for s in scores if s.key == "ce-f1@pos-only/micro/14@chexpert-lite")
    assert micro.value == pytest.approx(1.0)  # a report agrees with itself


def test_chexbert_from_a_tiny_local_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from radscribe.evaluate.chexbert import CHEXBERT_ORDER, CheXbertLabeler

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pleural", "effusion", "heart", "is", "enlarged", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                                     intermediate_size=96, max_position_embeddings=64)
    torch.manual_seed(0)
    bert = transformers.BertModel(config)
    heads = [torch.nn.Linear(64, 2 if name == "No Finding" else 4) for name in CHEXBERT_ORDER]
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i, head in enumerate(heads):
        state[f"module.linear_heads.{i}.weight"] = head.weight.detach()
        state[f"module.linear_heads.{i}.bias"] = head.bias.detach()
    torch.save({"model_state_dict": state}, tmp_path / "chexbert.pth")

    texts = ["No pleural effusion.", "Heart is enlarged.\n\nNo effusion ."]
    labels = CheXbertLabeler(tmp_path / "chexbert.pth").label(texts)

    tokenizer = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    encoded = tokenizer(["No pleural effusion.", "Heart is enlarged. No effusion ."], padding=True, return_tensors="pt")
    bert.eval()
    with torch.no_grad():
        cls = bert(**encoded)[0][:, 0, :]
    for i, name in enumerate(CHEXBERT_ORDER):
        expected = [[math.nan, 1.0, 0.0, -1.0][c] for c in heads[i](cls).argmax(dim=1).tolist()]
        got = labels.values[:, CHEXPERT_OBSERVATIONS.index(name)]
        assert np.allclose(got, expected, equal_nan=True), name
    assert set(np.unique(labels.values[:, 0][~np.isnan(labels.values[:, 0])])) <= {1.0}


def test_chexbert_needs_local_weights():
    from radscribe.evaluate.base import MetricUnavailable
    from radscribe.evaluate.clinical import label_texts

    with pytest.raises(MetricUnavailable, match="never downloads"):
        label_texts(["x"], "chexbert")
