"""NLG metrics as the report-generation literature computes them: BLEU-1..4, ROUGE-L, CIDEr-D, CIDEr, METEOR 1.5.

Written from the published definitions (see ../shared/reference/evaluation-metrics.md §1) and checked in
the tests against pycocoevalcap to 1e-9; nothing is copied from it.

- BLEU-N: corpus level; per n, clipped matches ``min(count_hyp, max over refs count_ref)`` and guesses
  ``max(0, len - n + 1)`` are summed over the corpus; ``(prod_k (match_k + 1e-15) / (guess_k + 1e-9))^(1/N)``
  times the brevity penalty ``exp(1 - r/c)`` when ``c < r``, where ``r`` sums per sample the reference
  length closest to the hypothesis length (ties to the shorter).
- ROUGE-L: per sample, LCS-based precision and recall maximised separately over the references,
  ``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2``; the corpus value is the mean.
- CIDEr-D: tf-idf n-gram vectors (n = 1..4) with ``idf = log N - log max(1, df)``, ``df`` counted over the
  *reference sets of the scored corpus* (so values are comparable only on the same test set);
  hypothesis weights clipped by the reference weights, cosine per n times the gaussian length penalty
  ``exp(-delta^2 / 2 sigma^2)`` (sigma 6; lengths counted as in pycocoevalcap, i.e. in bigrams), mean
  over n, mean over references, times 10. pycocoevalcap's ``Cider`` *is* this CIDEr-D.
- CIDEr: the original CIDEr of Vedantam et al. as in their code: the same without clipping and penalty.
- METEOR 1.5: the original jar through pycocoevalcap (``[coco]`` extra + Java), never a re-implementation.

Speed comes from counting every n-gram of every text once with numpy (n-grams become dense integer
ids), joining hypothesis and reference counts with one sorted search, and bit-parallel LCS (Hyyrö,
2004) on Python integers. Every Score is tagged with its text protocol (``bleu4@r2gen``).

Bootstrap statistics (see ``bootstrap``): ``bleu_statistic`` re-sums per-sample matches and lengths (the
exact corpus BLEU of each resample), ``rouge_l_statistic`` is a mean, ``cider_statistic`` keeps the test
set's document frequencies by default or recomputes them per resample (``df="resample"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
from scipy import sparse

from radscribe.evaluate.base import MetricUnavailable, Score, register_metric
from radscribe.evaluate.bootstrap import SampleMean, SufficientStatistic, WeightedStatistic
from radscribe.evaluate.preprocess import TextProtocol, coco_unavailable_reason, get_protocol

MAX_N = 4
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0
# pycocoevalcap's BLEU constants: keep a zero-match corpus at ~0 instead of dividing by zero.
_BLEU_TINY = 1e-15
_BLEU_SMALL = 1e-9

TokenizedRefs = Sequence[Sequence[Sequence[str]]]
TokenizedHyps = Sequence[Sequence[str]]


def bleu_from_counts(statistics: np.ndarray, max_n: int = MAX_N) -> np.ndarray:
    """BLEU-1..max_n for rows of summed counts ``[match_1..N, guess_1..N, hyp_len, ref_len]`` -> (rows, max_n)."""
    statistics = np.atleast_2d(statistics)
    matches, guesses = statistics[:, :max_n], statistics[:, max_n : 2 * max_n]
    hyp_length, ref_length = statistics[:, 2 * max_n], statistics[:, 2 * max_n + 1]
    precisions = np.cumprod((matches + _BLEU_TINY) / (guesses + _BLEU_SMALL), axis=1)
    scores = precisions ** (1.0 / np.arange(1, max_n + 1))
    ratio = (hyp_length + _BLEU_TINY) / (ref_length + _BLEU_SMALL)
    brevity = np.exp(1 - 1 / np.minimum(ratio, 1.0))
    return scores * brevity[:, None]


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): O(len(a) + len(b)) big-int steps.

    Bit i of ``row`` is 0 where the LCS of ``a[:i+1]`` with the processed prefix of ``b`` grows; the LCS
    length is the number of zero bits. ``a`` is the bit pattern, so pass the longer sequence first.
    """
    masks: dict[Any, int] = {}
    bit = 1
    for token in a:
        masks[token] = masks.get(token, 0) | bit
        bit <<= 1
    row = bit - 1
    find = masks.get
    for token in b:
        match = find(token)
        if match:
            low = row & match
            # Carries above bit len(a) never flow back down, so masking once at the end is enough.
            row = (row + low) | (row - low)
    return len(a) - (row & (bit - 1)).bit_count()


class NLGCorpus:
    """Tokenised references and hypotheses, counted once; every NLG metric and bootstrap statistic reads from it.

    ``refs[i]`` holds the token lists of sample ``i``'s references (at least one), ``hyps[i]`` its hypothesis.
    The corpus keeps these lists (ROUGE-L reads them), so they must not change afterwards.
    """

    def __init__(self, refs: TokenizedRefs, hyps: TokenizedHyps, protocol: str = "", max_n: int = MAX_N) -> None:
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} reference entries but {len(hyps)} hypotheses; they must be parallel")
        if not hyps:
            raise ValueError("cannot score an empty corpus")
        for index, (sample_refs, hyp) in enumerate(zip(refs, hyps)):
            if len(sample_refs) == 0:
                raise ValueError(f"sample {index} has no reference")
            if isinstance(hyp, str) or any(isinstance(ref, str) for ref in sample_refs):
                raise TypeError(f"sample {index} holds text, not token lists; use NLGCorpus.from_texts for texts")
        self.protocol = protocol
        self.max_n = max_n
        self.size = len(hyps)
        texts = [*hyps, *(tokens for sample in refs for tokens in sample)]
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        tokens = list(itertools.chain.from_iterable(texts))
        # Ids in first-seen order (not set order), so every run sums floating-point terms identically.
        vocabulary = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
        self._vocabulary_size = len(vocabulary)
        self._token_ids = np.fromiter(map(vocabulary.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        self._texts = texts
        self._text_lengths = lengths
        self.ref_counts = np.array([len(sample) for sample in refs], dtype=np.int64)
        self.ref_starts = np.cumsum(self.ref_counts) - self.ref_counts
        self.ref_sample = np.repeat(np.arange(self.size), self.ref_counts)
        self.hyp_lengths = lengths[: self.size]
        self.ref_lengths = lengths[self.size :]

    @classmethod
    def from_texts(
        cls, refs: Sequence[str | Sequence[str]], hyps: Sequence[str], protocol: str | TextProtocol = "r2gen", **options: Any
    ) -> NLGCorpus:
        """Tokenise texts with a named protocol (``r2gen``, ``coco-ptb``, ``whitespace``); a reference may be a list."""
        text_protocol = get_protocol(protocol, **options)
        ref_lists = _as_reference_lists(refs)
        for index, hyp in enumerate(hyps):
            if not isinstance(hyp, str):
                raise TypeError(f"hypothesis {index} is {type(hyp).__name__}, expected str")
        ref_tokens, hyp_tokens = text_protocol.prepare(ref_lists, list(hyps))
        return cls(ref_tokens, hyp_tokens, protocol=text_protocol.name)

    # ---- n-gram counts ---------------------------------------------------------------------------------

    @cached_property
    def _ngrams(self) -> dict[str, Any]:
        """Count entries (n-gram, text) sorted by ``gram * num_texts + text``; texts: hypotheses, then references.

        Per order one sort of the raw n-gram keys gives both the dense n-gram ids (the next order's
        prefixes) and the per-text counts. Positions stay in the previous order's sorted order, so ties
        (equal n-grams) keep their position order, and with it their text order.
        """
        lengths, flat = self._text_lengths, self._token_ids
        num_texts, total = lengths.size, flat.size
        # 32-bit positions, texts and n-gram ids inside the loop (half the memory traffic); keys are 64-bit.
        text_of = np.repeat(np.arange(num_texts, dtype=np.int32), lengths)
        # Tokens left in the text from each position on (itself included): an n-gram starts where >= n.
        remaining = np.repeat(lengths, lengths) - (np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        remaining = remaining.astype(np.int32)
        positions, prefix = np.arange(total, dtype=np.int32), None
        grams, texts, counts, sizes = [], [], [], []
        offset = 0
        for k in range(self.max_n):
            if prefix is None:
                raw = flat
            else:
                keep = remaining[positions] > k
                positions = positions[keep]
                # A (k+1)-gram is its k-gram prefix id extended by one token.
                raw = prefix[keep].astype(np.int64) * self._vocabulary_size + flat[positions + k]
            order, raw_sorted = _stable_sort(raw)
            positions = positions[order]
            text_sorted = text_of[positions]
            gram_starts = _starts_of_runs(raw_sorted)
            prefix = np.cumsum(gram_starts, dtype=np.int32) - 1
            entry_starts = np.flatnonzero(gram_starts | _starts_of_runs(text_sorted))
            grams.append(offset + prefix[entry_starts])
            texts.append(text_sorted[entry_starts])
            counts.append(np.diff(np.append(entry_starts, raw_sorted.size)))
            sizes.append(int(prefix[-1]) + 1 if prefix.size else 0)
            offset += sizes[-1]
        gram, text = np.concatenate(grams).astype(np.int64), np.concatenate(texts).astype(np.int64)
        return {
            "keys": gram * num_texts + text, "text": text, "gram": gram,
            "count": np.concatenate(counts).astype(np.float64), "num_texts": num_texts, "num_grams": offset,
            "gram_order": np.repeat(np.arange(self.max_n), sizes),
        }  # fmt: skip

    @cached_property
    def _join(self) -> dict[str, np.ndarray]:
        """Each hypothesis n-gram paired with each reference of its sample, with the reference's count (0 if absent)."""
        ngrams = self._ngrams
        keys, texts, grams, counts = ngrams["keys"], ngrams["text"], ngrams["gram"], ngrams["count"]
        is_hyp = texts < self.size
        hyp_sample, hyp_gram, hyp_count = texts[is_hyp], grams[is_hyp], counts[is_hyp]
        repeats = self.ref_counts[hyp_sample]
        entry = np.repeat(np.arange(hyp_sample.size), repeats)
        within = np.arange(entry.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        ref = self.ref_starts[hyp_sample[entry]] + within
        wanted = hyp_gram[entry] * ngrams["num_texts"] + self.size + ref
        found_at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
        ref_count = np.where(keys[found_at] == wanted, counts[found_at], 0.0)
        is_ref = ~is_hyp
        return {
            "hyp_sample": hyp_sample, "hyp_gram": hyp_gram, "hyp_count": hyp_count,
            "hyp_order": ngrams["gram_order"][hyp_gram],
            "pair_entry": entry, "pair_ref": ref, "pair_ref_count": ref_count,
            "ref_ref": texts[is_ref] - self.size, "ref_gram": grams[is_ref], "ref_count": counts[is_ref],
        }  # fmt: skip

    # ---- BLEU ------------------------------------------------------------------------------------------

    @cached_property
    def bleu_statistics(self) -> np.ndarray:
        """Per-sample ``[match_1..N, guess_1..N, hyp_len, closest_ref_len]`` (n, 2N + 2); BLEU is a function of their sums."""
        join, n, max_n = self._join, self.size, self.max_n
        if np.all(self.ref_counts == 1):
            max_ref_count = join["pair_ref_count"]
        else:
            group_starts = np.cumsum(self.ref_counts[join["hyp_sample"]]) - self.ref_counts[join["hyp_sample"]]
            max_ref_count = np.maximum.reduceat(join["pair_ref_count"], group_starts)
        clipped = np.minimum(join["hyp_count"], max_ref_count)
        matches = np.bincount(join["hyp_sample"] * max_n + join["hyp_order"], weights=clipped, minlength=n * max_n)
        guesses = np.maximum(0, self.hyp_lengths[:, None] - np.arange(max_n)[None, :])
        # Closest reference length, ties to the shorter: minimise (|ref - hyp|, ref) as one integer.
        scale = int(self.ref_lengths.max()) + 1
        distance = np.abs(self.ref_lengths - self.hyp_lengths[self.ref_sample]) * scale + self.ref_lengths
        closest = np.minimum.reduceat(distance, self.ref_starts) % scale
        return np.column_stack([matches.reshape(n, max_n), guesses, self.hyp_lengths, closest]).astype(np.float64)

    def bleu(self) -> list[Score]:
        """Corpus BLEU-1..N (the reported numbers) with pycocoevalcap-style per-sample values."""
        statistics = self.bleu_statistics
        totals = statistics.sum(axis=0)
        corpus = bleu_from_counts(totals, self.max_n)[0]
        per_sample = bleu_from_counts(statistics, self.max_n)
        details = {"hypothesis_length": int(totals[2 * self.max_n]), "reference_length": int(totals[2 * self.max_n + 1])}
        return [
            Score(f"bleu{k + 1}", float(corpus[k]), per_sample[:, k].tolist(), self.protocol, dict(details))
            for k in range(self.max_n)
        ]

    def bleu_statistic(self, order: int = MAX_N) -> SufficientStatistic:
        """BLEU-``order`` for the bootstrap: each resample re-sums the per-sample counts (exact corpus BLEU)."""
        if not 1 <= order <= self.max_n:
            raise ValueError(f"BLEU order must be in 1..{self.max_n}, got {order}")
        max_n = self.max_n
        return SufficientStatistic(self.bleu_statistics, lambda sums: bleu_from_counts(sums, max_n)[:, order - 1])

    # ---- ROUGE-L -------------------------------------------------------------------------------------

    @cached_property
    def rouge_l_per_sample(self) -> np.ndarray:
        beta_sq = ROUGE_BETA**2
        texts = self._texts
        refs = texts[self.size :]
        scores = np.zeros(self.size)
        for sample, (hyp, start, count) in enumerate(zip(texts, self.ref_starts.tolist(), self.ref_counts.tolist())):
            best_precision = best_recall = 0.0
            for ref in refs[start : start + count]:
                if hyp and ref:
                    common = lcs_length(ref, hyp) if len(ref) >= len(hyp) else lcs_length(hyp, ref)
                else:
                    # pycocoevalcap splits on " ", so an empty text is one empty token: empty vs empty matches.
                    common = 0 if (hyp or ref) else 1
                best_precision = max(best_precision, common / max(len(hyp), 1))
                best_recall = max(best_recall, common / max(len(ref), 1))
            if best_precision and best_recall:
                scores[sample] = (1 + beta_sq) * best_precision * best_recall / (best_recall + beta_sq * best_precision)
        return scores

    def rouge_l(self) -> Score:
        per_sample = self.rouge_l_per_sample
        return Score("rouge_l", float(np.mean(per_sample)), per_sample.tolist(), self.protocol, {"beta": ROUGE_BETA})

    def rouge_l_statistic(self) -> SampleMean:
        return SampleMean(self.rouge_l_per_sample)

    # ---- CIDEr-D / CIDEr ------------------------------------------------------------------------------

    @cached_property
    def _cider_terms(self) -> dict[str, Any]:
        """Sparse maps from squared idf per n-gram to squared norms and dot products, per (text, n) row.

        With ``w = idf^2`` every CIDEr quantity is linear in ``w`` (idf >= 0, so clipping commutes with it):
        ``|v_hyp|^2 = H w``, ``|v_ref|^2 = R w``, clipped dot ``= C w``, plain dot ``= P w``.
        """
        join, max_n, num_grams = self._join, self.max_n, self._ngrams["num_grams"]
        num_refs = self.ref_lengths.size
        shape_h, shape_r = (self.size * max_n, num_grams), (num_refs * max_n, num_grams)
        ref_rows = join["ref_ref"] * max_n + self._ngrams["gram_order"][join["ref_gram"]]
        found = join["pair_ref_count"] > 0
        found_entry = join["pair_entry"][found]
        pair_rows = join["pair_ref"][found] * max_n + join["hyp_order"][found_entry]
        pair_grams = join["hyp_gram"][found_entry]
        hyp_counts, ref_counts = join["hyp_count"][found_entry], join["pair_ref_count"][found]
        hyp_rows = join["hyp_sample"] * max_n + join["hyp_order"]
        # Documents for idf are samples: an n-gram in two references of one sample counts once. Entries are
        # sorted by (gram, text) and samples own consecutive references, so repeats are adjacent.
        pairs = join["ref_gram"] * self.size + self.ref_sample[join["ref_ref"]]
        pairs = pairs[_starts_of_runs(pairs)]
        incidence_samples, incidence_grams = pairs % self.size, pairs // self.size
        return {
            "hyp": _IdfLinearMap(hyp_rows, join["hyp_gram"], join["hyp_count"] ** 2, shape_h),
            "ref": _IdfLinearMap(ref_rows, join["ref_gram"], join["ref_count"] ** 2, shape_r),
            "clipped": _IdfLinearMap(pair_rows, pair_grams, np.minimum(hyp_counts, ref_counts) * ref_counts, shape_r),
            "plain": _IdfLinearMap(pair_rows, pair_grams, hyp_counts * ref_counts, shape_r),
            "incidence": (incidence_samples, incidence_grams),
            "document_frequency": np.bincount(incidence_grams, minlength=num_grams).astype(np.float64),
        }

    def _idf_squared(self, document_frequency: np.ndarray) -> np.ndarray:
        idf = np.log(float(self.size)) - np.log(np.maximum(1.0, document_frequency))
        return idf * idf

    def _cider_values(self, idf_squared: np.ndarray, clipped: bool, sigma: float) -> np.ndarray:
        """Per-sample CIDEr(-D) for each column of ``idf_squared`` (num_grams, B) -> (n, B)."""
        terms, max_n = self._cider_terms, self.max_n
        hyp_norm = np.sqrt(terms["hyp"].apply(idf_squared)).reshape(self.size, max_n, -1)
        ref_norm = np.sqrt(terms["ref"].apply(idf_squared)).reshape(-1, max_n, idf_squared.shape[1])
        dot = terms["clipped" if clipped else "plain"].apply(idf_squared).reshape(ref_norm.shape)
        denominator = hyp_norm[self.ref_sample] * ref_norm
        cosine = np.divide(dot, denominator, out=np.zeros_like(dot), where=denominator > 0)
        per_ref = cosine.mean(axis=1)
        if clipped:
            # Lengths in bigrams, as pycocoevalcap counts them (differences agree with word counts except at 0 words).
            delta = np.maximum(self.hyp_lengths[self.ref_sample] - 1, 0) - np.maximum(self.ref_lengths - 1, 0)
            per_ref = per_ref * np.exp(-(delta.astype(np.float64) ** 2) / (2 * sigma**2))[:, None]
        return 10.0 * np.add.reduceat(per_ref, self.ref_starts, axis=0) / self.ref_counts[:, None]

    def _cider_score(self, name: str, clipped: bool, sigma: float) -> Score:
        idf_squared = self._idf_squared(self._cider_terms["document_frequency"])[:, None]
        per_sample = self._cider_values(idf_squared, clipped, sigma)[:, 0]
        details: dict[str, Any] = {"max_n": self.max_n, "document_frequency": "references of the scored corpus", "documents": self.size}
        if clipped:
            details["sigma"] = sigma
        return Score(name, float(np.mean(per_sample)), per_sample.tolist(), self.protocol, details)

    def cider_d(self, sigma: float = CIDER_SIGMA) -> Score:
        return self._cider_score("cider_d", clipped=True, sigma=sigma)

    def cider(self) -> Score:
        return self._cider_score("cider", clipped=False, sigma=CIDER_SIGMA)

    def cider_statistic(
        self, clipped: bool = True, df: Literal["fixed", "resample"] = "fixed", sigma: float = CIDER_SIGMA
    ) -> WeightedStatistic:
        """CIDEr-D (``clipped``) or CIDEr for the bootstrap; the choice of document frequencies is explicit.

        ``df="fixed"`` (default) keeps the full test set's idf as part of the metric's definition, so the
        corpus value is the mean of fixed per-sample values (interval conditional on the test set's idf).
        ``df="resample"`` recomputes df from each resample's references (a sample drawn k times counts k
        times), the literal corpus metric of the resampled set. It is biased downward: duplicating a report
        raises the df of its otherwise rare n-grams, which carry most of CIDEr. On 3,000 IU pairs the
        replicates' mean sat below the estimate by about a fifth of the interval's half-width for CIDEr-D
        and more for CIDEr (benchmarks/bootstrap_cost.py), hence not the default.
        """
        if df == "fixed":
            idf_squared = self._idf_squared(self._cider_terms["document_frequency"])[:, None]
            return SampleMean(self._cider_values(idf_squared, clipped, sigma)[:, 0])
        if df != "resample":
            raise ValueError(f"df must be 'resample' or 'fixed', got {df!r}")
        return _ResampledDfCider(self, clipped, sigma)

    def scores(self, metrics: Sequence[str] = ("bleu", "rouge_l", "cider_d")) -> list[Score]:
        """Several metrics from one counting pass (``bleu``, ``rouge_l``, ``cider_d``, ``cider``)."""
        computed: list[Score] = []
        for metric in metrics:
            if metric == "bleu":
                computed.extend(self.bleu())
            elif metric in ("rouge_l", "cider_d", "cider"):
                computed.append(getattr(self, metric)())
            else:
                raise KeyError(f"unknown NLG metric '{metric}'; expected bleu, rouge_l, cider_d or cider")
        return computed


class _ResampledDfCider(WeightedStatistic):
    """Corpus CIDEr(-D) with document frequencies recomputed from each resample's references."""

    # Columns per sparse product: bounds the dense (num_grams x chunk) idf matrix.
    _CHUNK = 8

    def __init__(self, corpus: NLGCorpus, clipped: bool, sigma: float) -> None:
        self.corpus, self.clipped, self.sigma = corpus, clipped, sigma
        self.size = corpus.size
        samples, grams = corpus._cider_terms["incidence"]
        # Transposed incidence (num_grams x n): document frequencies of a batch are one sparse product.
        self._incidence_t = sparse.csr_array(
            (np.ones(grams.size), (grams, samples)), shape=(len(corpus._cider_terms["document_frequency"]), corpus.size)
        )

    def evaluate(self, weights: np.ndarray) -> np.ndarray:
        incidence_t = self._incidence_t
        values = np.empty(weights.shape[0])
        for start in range(0, weights.shape[0], self._CHUNK):
            chunk = weights[start : start + self._CHUNK]
            idf_squared = self.corpus._idf_squared(incidence_t @ chunk.T)
            per_sample = self.corpus._cider_values(idf_squared, self.clipped, self.sigma)
            values[start : start + chunk.shape[0]] = np.einsum("bi,ib->b", chunk, per_sample) / self.size
        return values


class _IdfLinearMap:
    """A sparse (rows x num_grams) map applied to squared-idf columns: bincount for one, CSR product for many."""

    def __init__(self, rows: np.ndarray, grams: np.ndarray, coefficients: np.ndarray, shape: tuple[int, int]) -> None:
        self.rows, self.grams, self.coefficients, self.shape = rows, grams, coefficients, shape

    @cached_property
    def _matrix(self) -> sparse.csr_array:
        return sparse.csr_array((self.coefficients, (self.rows, self.grams)), shape=self.shape)

    def apply(self, idf_squared: np.ndarray) -> np.ndarray:
        if idf_squared.shape[1] == 1:
            weights = self.coefficients * idf_squared[self.grams, 0]
            # astype: bincount of an empty selection comes back as integers.
            return np.bincount(self.rows, weights=weights, minlength=self.shape[0]).astype(np.float64)[:, None]
        return self._matrix @ idf_squared


def _stable_sort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, values[order])`` for non-negative integers, ties in index order.

    numpy's stable sort is a radix sort for 16-bit values and timsort otherwise, which is fast here: the
    n-gram keys of one order arrive sorted by their prefix already.
    """
    if values.size and int(values.max()) < 1 << 16:
        order = np.argsort(values.astype(np.uint16), kind="stable")
    else:
        order = np.argsort(values, kind="stable")
    return order, values[order]


def _starts_of_runs(ordered: np.ndarray) -> np.ndarray:
    """True where a sorted array's value differs from the previous one (and at index 0)."""
    starts = np.ones(ordered.size, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    return starts


def _as_reference_lists(refs: Sequence[str | Sequence[str]]) -> list[list[str]]:
    lists = []
    for index, entry in enumerate(refs):
        sample = [entry] if isinstance(entry, str) else entry if type(entry) is list else list(entry)
        for ref in sample:
            if not isinstance(ref, str):
                raise TypeError(f"reference of sample {index} is {type(ref).__name__}, expected str")
        lists.append(sample)
    return lists


# The last texts the public scorers counted, as (protocol, references, hypotheses) -> corpus. Users score one
# metric at a time (BleuScorer, then RougeLScorer, then CiderDScorer on the same texts); the second and third
# call then reuse the tokens and n-gram counts instead of redoing them. One entry bounds the memory held.
_last_counted: tuple[tuple[Any, ...], NLGCorpus] | None = None


def _counted_corpus(
    refs: Sequence[str | Sequence[str]], hyps: Sequence[str], protocol: str | TextProtocol = "r2gen"
) -> NLGCorpus:
    """``NLGCorpus.from_texts(refs, hyps, protocol)``, reused when the same texts and protocol were counted last.

    The corpus's counts and metric values are computed on first use and kept, so scoring the same texts
    metric by metric costs about what scoring them all at once does.
    """
    global _last_counted
    text_protocol = get_protocol(protocol)
    ref_lists = _as_reference_lists(refs)
    # A snapshot of the texts (flat tuples: cheap to build and compare), so changing a list later is a miss.
    key = (text_protocol, tuple(hyps), tuple(map(len, ref_lists)), tuple(itertools.chain.from_iterable(ref_lists)))
    last = _last_counted
    if last is not None and last[0] == key:
        return last[1]
    corpus = NLGCorpus.from_texts(ref_lists, hyps, text_protocol)
    _last_counted = (key, corpus)
    return corpus


class _CorpusScorer:
    """Shared scorer plumbing: the metric's Scores from the (shared) counted corpus of these texts."""

    name = ""

    def __init__(self, protocol: str | TextProtocol = "r2gen", **protocol_options: Any) -> None:
        self.protocol = get_protocol(protocol, **protocol_options)

    def compute_score(self, refs: Sequence[str | Sequence[str]], hyps: Sequence[str]) -> list[Score]:
        return _counted_corpus(refs, hyps, self.protocol).scores([self.name])


@register_metric("bleu")
class BleuScorer(_CorpusScorer):
    """Corpus BLEU-1..4 (four Scores: ``bleu1``..``bleu4``)."""

    name = "bleu"


@register_metric("rouge_l")
class RougeLScorer(_CorpusScorer):
    """ROUGE-L (beta 1.2), the mean of per-sample F."""

    name = "rouge_l"


@register_metric("cider_d")
class CiderDScorer(_CorpusScorer):
    """CIDEr-D (pycocoevalcap's "CIDEr"); idf from the scored references."""

    name = "cider_d"


@register_metric("cider")
class CiderScorer(_CorpusScorer):
    """Original CIDEr (no clipping, no length penalty); idf from the scored references."""

    name = "cider"


@register_metric("meteor")
class MeteorScorer:
    """METEOR 1.5 (``-l en -norm``) via pycocoevalcap's jar; corpus value from pooled statistics, not a mean.

    The JVM (about 10 s to start) is started on first use and reused by this scorer.
    """

    name = "meteor"

    def __init__(self, protocol: str | TextProtocol = "r2gen", **protocol_options: Any) -> None:
        reason = coco_unavailable_reason("METEOR 1.5")
        if reason is not None:
            raise MetricUnavailable(reason)
        self.protocol = get_protocol(protocol, **protocol_options)
        self._meteor: Any = None

    def compute_score(self, refs: Sequence[str | Sequence[str]], hyps: Sequence[str]) -> list[Score]:
        from pycocoevalcap.meteor.meteor import Meteor

        ref_lists = _as_reference_lists(refs)
        if len(ref_lists) != len(hyps) or not hyps:
            raise ValueError(f"{len(ref_lists)} reference entries and {len(hyps)} hypotheses; need equal, non-zero counts")
        ref_tokens, hyp_tokens = self.protocol.prepare(ref_lists, list(hyps))
        # "|||" separates fields in the jar's line protocol; pycocoevalcap strips it from hypotheses only.
        gts = {i: [" ".join(t).replace("|||", "") for t in sample] for i, sample in enumerate(ref_tokens)}
        res = {i: [" ".join(tokens)] for i, tokens in enumerate(hyp_tokens)}
        if self._meteor is None:
            self._meteor = Meteor()
        corpus, per_sample = self._meteor.compute_score(gts, res)
        details = {"implementation": "meteor-1.5.jar via pycocoevalcap", "options": "-l en -norm"}
        return [Score("meteor", float(corpus), [float(v) for v in per_sample], self.protocol.name, details)]
