"""VQA scoring: strict normalisation edge cases and the llava-med-compat quirks."""

from __future__ import annotations

import json

import pytest

from radscribe.evaluate.vqa import VQAScorer, canonical_closed, llava_closed_hit, llava_normalize, normalise_answer, token_scores
from radscribe.types import QA


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Left Lung.", "left lung"),
        ("  an  effusion!! ", "effusion"),
        ("1.5 cm", "1.5 cm"),
        ("T12-L1", "t12 l1"),
        ("", ""),
    ],
)
def test_strict_normalisation(raw, expected):
    assert normalise_answer(raw) == expected


@pytest.mark.parametrize(
    ("answer", "canonical"),
    [("Yes", "yes"), ("yes, there is", "yes"), ("No.", "no"), ("nodule", "nodule"), ("Not sure", "not sure")],
)
def test_closed_canonicalisation(answer, canonical):
    assert canonical_closed(answer) == canonical


def test_strict_open_token_scores():
    assert token_scores("left lower lobe", "the left lobe") == pytest.approx((2 / 3, 1.0, 0.8))
    assert token_scores("", "left") == (0.0, 0.0, 0.0)
    scores = {s.name: s.value for s in VQAScorer().compute_score(
        [QA("q", "Yes", "closed"), QA("q", "no", "closed"), QA("q", "left lung", "open")], ["yes, it is", None, "Left lung"]
    )}
    assert scores == {"closed-accuracy": 0.5, "open-recall": 1.0, "open-f1": 1.0, "open-exact": 1.0}


def test_llava_med_quirks():
    # substring "no" inside "nodule" makes the answer count as yes/no; reference "yes" absent -> dropped.
    assert llava_closed_hit("a nodule", "yes") is None
    assert llava_closed_hit("no", "no") == 1.0
    assert llava_closed_hit("left", "left") == 0.0  # a correct non-yes/no closed answer scores 0
    assert llava_normalize("Two nodules, (left)") == "2 nodules left"
    scorer = VQAScorer("llava-med-compat")
    scores = {s.name: s for s in scorer.compute_score([QA("q", "yes", "closed"), QA("q", "no", "closed")], ["nodule", "no"])}
    assert scores["closed-accuracy"].value == 1.0 and scores["closed-accuracy"].details["dropped"] == 1
    open_scores = {s.name: s.value for s in scorer.compute_score([QA("q", "left lung", "open")], ["the left side"])}
    assert open_scores["open-recall"] == pytest.approx(0.5)
    assert open_scores["open-exact"] == pytest.approx(1 / 2)  # 1 reference word found / 2 prediction words


def test_real_vqa_rad_answers_score_perfectly_against_themselves(vqa_rad_dir):
    items = json.loads((vqa_rad_dir / "trainset.json").read_text())[:300]
    refs = [QA(i["question"], str(i["answer"]), i["answer_type"].strip().lower(), id=str(i["qid"])) for i in items]
    for mode in ("strict", "llava-med-compat"):
        scores = {s.name: s.value for s in VQAScorer(mode).compute_score(refs, [q.answer for q in refs])}
        assert scores["open-recall"] == pytest.approx(1.0), mode
        if mode == "strict":
            assert scores["closed-accuracy"] == 1.0
