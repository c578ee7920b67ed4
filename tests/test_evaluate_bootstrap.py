"""Bootstrap: deterministic, exact for corpus metrics (each resample = the metric on the resampled corpus)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from radscribe.evaluate.bootstrap import (
    SampleMean,
    SufficientStatistic,
    bootstrap,
    bootstrap_ci,
    indices_to_weights,
    paired_bootstrap,
    resample_indices,
)
from radscribe.evaluate.nlg import NLGCorpus
from radscribe.evaluate.preprocess import clean_report_r2gen


@pytest.fixture(scope="module")
def iu_corpora():
    from conftest import shared_path

    path = shared_path("iu-xray-reports", "reports.jsonl")
    texts = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        text = f"{row['findings']} {row['impression']}".strip()
        if text:
            texts.append(clean_report_r2gen(text))
    refs = texts[:150]
    rng = np.random.default_rng(0)
    dropped = [" ".join(w for w in t.split() if rng.random() > 0.3) for t in refs]
    swapped = texts[150:300]
    return refs, dropped, NLGCorpus.from_texts(refs, dropped, "whitespace"), NLGCorpus.from_texts(refs, swapped, "whitespace")


def test_resamples_are_seeded_and_independent_of_batching():
    first = resample_indices(50, seed=3, start=0, stop=10)
    assert np.array_equal(first, resample_indices(50, seed=3, start=0, stop=10))
    assert np.array_equal(first[4:], resample_indices(50, seed=3, start=4, stop=10))
    assert not np.array_equal(first, resample_indices(50, seed=4, start=0, stop=10))
    weights = indices_to_weights(first, 50)
    assert weights.shape == (10, 50) and np.all(weights.sum(axis=1) == 50)
    assert weights[0, first[0, 0]] >= 1


def test_fast_path_equals_index_path_and_contains_estimate():
    values = np.random.default_rng(1).random(80)
    fast = bootstrap(SampleMean(values), n_resamples=300, seed=5, batch=7)
    slow = bootstrap(lambda idx: float(values[idx].mean()), 80, n_resamples=300, seed=5)
    np.testing.assert_allclose(fast.replicates, slow.replicates, rtol=0, atol=1e-12)
    assert fast.estimate == pytest.approx(values.mean())
    assert fast.low < fast.estimate < fast.high
    assert bootstrap_ci(SampleMean(values), n_resamples=300, seed=5) == (fast.low, fast.high)


def test_sufficient_statistic_is_a_ratio_of_resampled_sums():
    rng = np.random.default_rng(2)
    tp, fp = rng.integers(0, 5, 60).astype(float), rng.integers(0, 5, 60).astype(float)
    precision = SufficientStatistic(np.column_stack([tp, fp]), lambda sums: sums[:, 0] / (sums[:, 0] + sums[:, 1]))
    result = bootstrap(precision, n_resamples=50, seed=0)
    by_index = bootstrap(lambda idx: tp[idx].sum() / (tp[idx].sum() + fp[idx].sum()), 60, n_resamples=50, seed=0)
    np.testing.assert_allclose(result.replicates, by_index.replicates, rtol=0, atol=1e-12)


def test_corpus_metric_statistics_recompute_the_metric_on_the_resample(iu_corpora):
    refs, hyps, corpus, _ = iu_corpora
    indices = resample_indices(corpus.size, seed=11, start=0, stop=2)
    weights = indices_to_weights(indices, corpus.size)
    bleu4 = corpus.bleu_statistic(4).evaluate(weights)
    cider_d = corpus.cider_statistic(df="resample").evaluate(weights)
    cider = corpus.cider_statistic(clipped=False, df="resample").evaluate(weights)
    for row, idx in enumerate(indices):
        resampled = NLGCorpus.from_texts([refs[i] for i in idx], [hyps[i] for i in idx], "whitespace")
        assert bleu4[row] == pytest.approx(resampled.bleu()[3].value, abs=1e-12)
        # Document frequencies come from the resampled references (a sample drawn twice counts twice).
        assert cider_d[row] == pytest.approx(resampled.cider_d().value, abs=1e-9)
        assert cider[row] == pytest.approx(resampled.cider().value, abs=1e-9)
    # The default keeps the full test set's idf: the mean of fixed per-sample CIDEr-D values.
    fixed = corpus.cider_statistic().evaluate(weights)
    np.testing.assert_allclose(fixed, weights @ np.array(corpus.cider_d().per_sample) / corpus.size, rtol=0, atol=1e-12)
    assert not np.allclose(fixed, cider_d)


def test_ci_contains_the_point_estimate_for_every_corpus_metric(iu_corpora):
    _, _, corpus, _ = iu_corpora
    for statistic, estimate in [
        (corpus.bleu_statistic(4), corpus.bleu()[3].value),
        (corpus.rouge_l_statistic(), corpus.rouge_l().value),
        (corpus.cider_statistic(), corpus.cider_d().value),
    ]:
        result = bootstrap(statistic, n_resamples=200, seed=0)
        assert result.estimate == pytest.approx(estimate, abs=1e-9)
        assert result.low < result.estimate < result.high
        assert result == bootstrap(statistic, n_resamples=200, seed=0)
        assert np.array_equal(result.replicates, bootstrap(statistic, n_resamples=200, seed=0).replicates)


def test_paired_bootstrap(iu_corpora):
    _, _, dropped, swapped = iu_corpora
    same = paired_bootstrap(dropped.bleu_statistic(4), dropped.bleu_statistic(4), n_resamples=200, seed=0)
    assert same.difference == 0 and same.low == 0 and same.high == 0 and same.p_value == 1.0
    assert same.share_a_better == 0
    # Word dropout keeps most of the report; another patient's report does not.
    better = paired_bootstrap(dropped.cider_statistic(), swapped.cider_statistic(), n_resamples=200, seed=0)
    assert better.difference == pytest.approx(dropped.cider_d().value - swapped.cider_d().value)
    assert better.low > 0 and better.p_value < 0.01 and better.share_a_better == 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n \\(the number of samples\\) is required"):
        bootstrap(lambda idx: 0.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        bootstrap(SampleMean([1.0, 2.0]), alpha=1.5)
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(SampleMean([1.0, 2.0]), SampleMean([1.0, 2.0, 3.0]))
