"""NLG metrics: identical to pycocoevalcap (1e-9) on real IU X-ray reports and on hand-made edge cases."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radscribe.evaluate import METRICS, MetricUnavailable, create_scorer
from radscribe.evaluate.nlg import NLGCorpus, lcs_length
from radscribe.evaluate.preprocess import clean_report_r2gen

TOLERANCE = 1e-9


def pycoco_scores(refs: list[list[str]], hyps: list[str]) -> dict[str, tuple[float, np.ndarray]]:
    """pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr (which is CIDEr-D) on already tokenised strings."""
    bleu = pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap (the [coco] extra) is not installed")
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: list(sample) for i, sample in enumerate(refs)}
    res = {i: [hyp] for i, hyp in enumerate(hyps)}
    bleu_corpus, bleu_samples = bleu.Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{k + 1}": (bleu_corpus[k], np.array(bleu_samples[k])) for k in range(4)}
    scores["rouge_l"] = Rouge().compute_score(gts, res)
    scores["cider_d"] = Cider().compute_score(gts, res)
    return scores


def assert_matches_pycoco(refs: list[list[str]], hyps: list[str]) -> None:
    ours = {s.name: s for s in NLGCorpus.from_texts(refs, hyps, "whitespace").scores()}
    for name, (corpus, per_sample) in pycoco_scores(refs, hyps).items():
        assert ours[name].value == pytest.approx(float(corpus), abs=TOLERANCE), name
        np.testing.assert_allclose(ours[name].per_sample, per_sample, rtol=0, atol=TOLERANCE, err_msg=name)


def iu_reports(iu_dir) -> list[str]:
    texts = []
    for line in (iu_dir / "reports.jsonl").read_text().splitlines():
        row = json.loads(line)
        text = f"{row['findings']} {row['impression']}".strip()
        if text:
            # Single spaces: pycocoevalcap's ROUGE-L splits on " ", so both sides get the same tokens.
            texts.append(" ".join(clean_report_r2gen(text).split()))
    return texts


def perturbed_pairs(texts: list[str], count: int, seed: int) -> tuple[list[list[str]], list[str]]:
    """Real reports as references; hypotheses with word dropout, shuffled sentences or another report."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for index in range(count):
        reference = texts[index]
        kind = index % 4
        if kind == 0:
            hyp = " ".join(w for w in reference.split() if rng.random() > 0.25)
        elif kind == 1:
            sentences = reference.split(" . ")
            rng.shuffle(sentences)
            hyp = " . ".join(sentences)
        elif kind == 2:
            hyp = texts[rng.randrange(len(texts))]
        else:
            hyp = reference
        extra = [texts[(index + 7) % len(texts)]] if index % 3 == 0 else []
        refs.append([reference, *extra])
        hyps.append(hyp)
    return refs, hyps


def test_matches_pycocoevalcap_on_real_iu_reports(iu_dir):
    refs, hyps = perturbed_pairs(iu_reports(iu_dir), 400, seed=1)
    assert_matches_pycoco(refs, hyps)


def test_coco_ptb_protocol_matches_pycocoevalcap_pipeline(iu_dir):
    pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer", reason="pycocoevalcap (the [coco] extra) is not installed")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    try:
        create_scorer("bleu", protocol="coco-ptb")
    except MetricUnavailable as error:
        pytest.skip(str(error))
    raw = []
    for line in (iu_dir / "reports.jsonl").read_text().splitlines()[:120]:
        row = json.loads(line)
        raw.append(f"{row['findings']} {row['impression']}".strip() or "No report.")
    refs, hyps = raw[:60], raw[60:]
    tokenizer = PTBTokenizer()
    coco_refs = tokenizer.tokenize({i: [{"caption": t}] for i, t in enumerate(refs)})
    coco_hyps = tokenizer.tokenize({i: [{"caption": t}] for i, t in enumerate(hyps)})
    expected = pycoco_scores([coco_refs[i] for i in range(60)], [coco_hyps[i][0] for i in range(60)])
    ours = {s.name: s for s in NLGCorpus.from_texts(refs, hyps, "coco-ptb").scores()}
    for name, (corpus, _) in expected.items():
        assert ours[name].value == pytest.approx(float(corpus), abs=TOLERANCE), name
        assert ours[name].key == f"{name}@coco-ptb"


EDGE_CORPORA = {
    "empty hypothesis": ([["the heart is normal"], ["no effusion"]], ["", "no effusion"]),
    "single words": ([["normal"], ["clear"], ["stable"]], ["normal", "stable", "clear"]),
    "multiple references, closest-length tie": (
        [["a b", "a b c d"], ["x y z", "x"], ["p q r s t"]],
        ["a b c", "x y", "p q r"],
    ),
    "repeated n-grams": ([["the the cat sat on the mat"], ["no no no"]], ["the the the the the", "no no no no no no"]),
    "hypothesis longer than reference": ([["heart normal"], ["lungs clear"]], ["heart size is normal today", "lungs are clear"]),
    "every hypothesis empty, several references": ([["a b", "c"], ["d"]], ["", ""]),
    "empty reference and hypothesis together": ([[""], ["lungs clear"], ["heart"]], ["", "lungs clear", "heart big"]),
}


@pytest.mark.parametrize("case", list(EDGE_CORPORA))
def test_matches_pycocoevalcap_on_edge_cases(case):
    refs, hyps = EDGE_CORPORA[case]
    assert_matches_pycoco(refs, hyps)


def test_cider_d_and_cider_hand_worked():
    # N = 2 samples, every reference n-gram in one sample: idf = log 2 for all of them.
    corpus = NLGCorpus([[["a", "b"]], [["c", "d"]]], [["a", "b"], ["c", "c"]], "whitespace")
    # Sample 0: cosine 1 for n = 1, 2 (no 3-, 4-grams), equal lengths: 10 * (1 + 1) / 4.
    # Sample 1: unigram "c" weight 2L clipped to L: L^2 / (2L * sqrt(2) L); the bigram "c c" matches nothing.
    expected_d = [5.0, 10 * (1 / (2 * math.sqrt(2))) / 4]
    # Plain CIDEr does not clip: 2L * L / (2L * sqrt(2) L).
    expected_plain = [5.0, 10 * (1 / math.sqrt(2)) / 4]
    assert corpus.cider_d().per_sample == pytest.approx(expected_d, abs=1e-12)
    assert corpus.cider().per_sample == pytest.approx(expected_plain, abs=1e-12)
    assert corpus.cider_d().value == pytest.approx(sum(expected_d) / 2, abs=1e-12)


def test_cider_d_length_penalty_hand_worked():
    corpus = NLGCorpus([[["a", "b"]], [["c", "d"]]], [["a", "b"], ["c"]], "whitespace")
    # Lengths count bigrams: "c" has 0, "c d" has 1, so delta = -1 and the penalty is exp(-1 / 72).
    expected = 10 * (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4
    assert corpus.cider_d().per_sample[1] == pytest.approx(expected, abs=1e-12)
    assert corpus.cider().per_sample[1] == pytest.approx(10 * (1 / math.sqrt(2)) / 4, abs=1e-12)


def test_cider_equals_cider_d_when_clipping_and_penalty_do_not_bind(iu_dir):
    # Hypothesis = reference: counts never exceed the reference's and lengths agree.
    texts = iu_reports(iu_dir)[:200]
    corpus = NLGCorpus.from_texts(texts, texts, "whitespace")
    assert corpus.cider().value == pytest.approx(corpus.cider_d().value, abs=TOLERANCE)
    refs, hyps = perturbed_pairs(texts, 200, seed=3)
    perturbed = NLGCorpus.from_texts(refs, hyps, "whitespace")
    assert perturbed.cider().value > perturbed.cider_d().value


def test_cider_is_zero_for_a_single_sample():
    # idf = log 1 - log 1 = 0: CIDEr values only mean something relative to a test set.
    assert NLGCorpus.from_texts(["the heart is normal"], ["the heart is normal"], "whitespace").cider_d().value == 0.0


def _lcs_dynamic_programming(a: list[int], b: list[int]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=90), st.lists(st.integers(0, 5), max_size=40))
def test_bit_parallel_lcs_equals_dynamic_programming(a, b):
    assert lcs_length(a, b) == _lcs_dynamic_programming(a, b)
    assert lcs_length(b, a) == _lcs_dynamic_programming(a, b)


def test_registry_names_protocol_tags_and_per_sample_values():
    assert {"bleu", "rouge_l", "cider_d", "cider", "meteor"} <= set(METRICS)
    refs = ["The heart is normal. No effusion.", ["Lungs are clear.", "The lungs are clear."]]
    hyps = ["The heart is normal.", "Lungs clear."]
    bleu = create_scorer("bleu").compute_score(refs, hyps)
    assert [s.key for s in bleu] == ["bleu1@r2gen", "bleu2@r2gen", "bleu3@r2gen", "bleu4@r2gen"]
    assert all(len(s.per_sample) == 2 for s in bleu)
    assert bleu[0].value > bleu[3].value > 0
    (rouge,) = create_scorer("rouge_l", protocol="whitespace").compute_score(refs, hyps)
    assert rouge.key == "rouge_l@whitespace"
    assert rouge.value == pytest.approx(np.mean(rouge.per_sample))
    (cider_d,) = create_scorer("cider_d", variant="iu_xray").compute_score(refs, hyps)
    assert cider_d.key == "cider_d@r2gen-iu" and cider_d.details["document_frequency"].startswith("references")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2 reference entries but 1 hypotheses"):
        create_scorer("bleu").compute_score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="sample 1 has no reference"):
        create_scorer("bleu").compute_score(["a", []], ["a", "b"])
    with pytest.raises(TypeError, match="hypothesis 0 is int"):
        create_scorer("rouge_l").compute_score(["a"], [3])
    with pytest.raises(KeyError, match="unknown text protocol"):
        create_scorer("bleu", protocol="nltk")


def test_meteor_unavailable_without_java(monkeypatch):
    import radscribe.evaluate.preprocess as preprocess

    monkeypatch.setattr(preprocess.shutil, "which", lambda name: None)
    with pytest.raises(MetricUnavailable, match="METEOR 1.5 needs a Java runtime"):
        create_scorer("meteor")
    with pytest.raises(MetricUnavailable, match="coco-ptb protocol needs a Java runtime"):
        create_scorer("bleu", protocol="coco-ptb")


def test_meteor_unavailable_without_pycocoevalcap(monkeypatch):
    import radscribe.evaluate.preprocess as preprocess

    real_find_spec = preprocess.importlib.util.find_spec
    monkeypatch.setattr(
        preprocess.importlib.util, "find_spec", lambda name: None if name == "pycocoevalcap" else real_find_spec(name)
    )
    with pytest.raises(MetricUnavailable, match=r"pip install 'radscribe\[coco\]'"):
        create_scorer("meteor")


@pytest.mark.slow
def test_meteor_runs_the_jar_with_per_sample_values():
    try:
        scorer = create_scorer("meteor")
    except MetricUnavailable as error:
        pytest.skip(str(error))
    refs = ["The heart is normal. No pleural effusion.", ["Lungs are clear.", "The lungs are clear."], "No pneumothorax."]
    hyps = ["The heart is normal. No pleural effusion.", "Lungs clear.", "Large right pneumothorax."]
    (meteor,) = scorer.compute_score(refs, hyps)
    assert meteor.key == "meteor@r2gen" and len(meteor.per_sample) == 3
    assert meteor.per_sample[0] > meteor.per_sample[1] > 0
    assert all(0 <= v <= 1 for v in meteor.per_sample)
    # The corpus value pools the jar's statistics; it is not the mean of the per-sample values.
    assert 0 < meteor.value < 1


def test_scoring_one_metric_at_a_time_counts_once_and_equals_scoring_together(iu_dir, monkeypatch):
    from radscribe.evaluate.nlg import BleuScorer, CiderDScorer, RougeLScorer
    from radscribe.evaluate.preprocess import WhitespaceProtocol

    tokenised = []
    real_tokenize = WhitespaceProtocol.tokenize

    def counting_tokenize(self, texts):
        tokenised.append(len(texts))
        return real_tokenize(self, texts)

    monkeypatch.setattr(WhitespaceProtocol, "tokenize", counting_tokenize)
    refs, hyps = perturbed_pairs(iu_reports(iu_dir), 300, seed=5)
    one_at_a_time = {
        s.name: s
        for scorer in (BleuScorer("whitespace"), RougeLScorer("whitespace"), CiderDScorer("whitespace"))
        for s in scorer.compute_score(refs, hyps)
    }
    assert len(tokenised) == 1  # the second and third metric reuse the first one's tokens and counts
    together = {s.name: s for s in NLGCorpus.from_texts(refs, hyps, "whitespace").scores()}
    assert set(one_at_a_time) == set(together)
    for name, score in together.items():
        assert one_at_a_time[name].value == score.value and one_at_a_time[name].per_sample == score.per_sample, name


def test_counted_texts_are_reused_only_for_the_same_texts_and_protocol():
    from radscribe.evaluate.nlg import BleuScorer, RougeLScorer

    refs = ["the heart is normal . no effusion .", ["lungs are clear .", "the lungs are clear ."], "no pneumothorax ."]
    hyps = ["the heart is normal .", "lungs clear .", "large pneumothorax ."]
    (before,) = RougeLScorer("whitespace").compute_score(refs, hyps)
    hyps[1] = "the lungs are clear ."  # the caller edits a list it scored before
    (after,) = RougeLScorer("whitespace").compute_score(refs, hyps)
    fresh = NLGCorpus.from_texts(refs, hyps, "whitespace").rouge_l().per_sample
    assert after.per_sample == fresh and after.per_sample[1] == 1.0 != before.per_sample[1]
    # The same texts under another protocol are counted anew: r2gen lower-cases and splits off the ".".
    refs, hyps = ["The heart is normal."], ["the heart is normal ."]
    (whitespace_rouge,) = RougeLScorer("whitespace").compute_score(refs, hyps)
    r2gen_bleu = BleuScorer("r2gen").compute_score(refs, hyps)[0]
    assert whitespace_rouge.value < 1 and r2gen_bleu.key == "bleu1@r2gen" and r2gen_bleu.value == pytest.approx(1.0)


def test_protocols_are_equal_when_they_tokenise_alike():
    from radscribe.evaluate.preprocess import R2GenProtocol, WhitespaceProtocol

    assert R2GenProtocol() == R2GenProtocol() and hash(R2GenProtocol()) == hash(R2GenProtocol())
    assert R2GenProtocol("iu_xray") != R2GenProtocol()
    assert R2GenProtocol(vocabulary={"a", "b"}) == R2GenProtocol(vocabulary=["b", "a"])
    assert R2GenProtocol(vocabulary={"a", "b"}) != R2GenProtocol(vocabulary={"a", "c"})  # same size, other words
    assert R2GenProtocol(max_reference_tokens=5) != R2GenProtocol()
    assert WhitespaceProtocol() == WhitespaceProtocol() != R2GenProtocol()
