"""Cost of 1,000 bootstrap resamples on 3,000 real IU X-ray report pairs, per corpus metric.

Pairs: the first 3,000 IU reports (findings + impression, ``r2gen`` protocol) against the same report with
word dropout (p = 0.2, seed 0). Every resample recomputes the corpus metric (BLEU from resampled sums;
CIDEr-D with document frequencies recomputed from the resampled references, or kept fixed; the mean of
the replicates minus the estimate shows the downward bias of df resampling). For scale, the
naive way (rebuild the resampled corpus and rescore it) is timed on 20 resamples and extrapolated.
Writes benchmarks/results/bootstrap_cost.json.

Run: python benchmarks/bootstrap_cost.py   (needs ../shared/data/iu-xray-reports)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from provenance import write_result

REPO = Path(__file__).resolve().parents[1]
IU = REPO.parent / "shared" / "data" / "iu-xray-reports" / "reports.jsonl"
PAIRS = 3000
RESAMPLES = 1000
NAIVE_RESAMPLES = 20


def timed(function) -> tuple[float, float, object]:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - start_wall, time.process_time() - start_cpu, result


def main() -> None:
    if not IU.exists():
        sys.exit(f"needs the IU X-ray reports at {IU}")
    from radscribe.evaluate.bootstrap import bootstrap, paired_bootstrap, resample_indices
    from radscribe.evaluate.nlg import NLGCorpus

    texts = []
    for line in IU.read_text().splitlines():
        row = json.loads(line)
        text = f"{row['findings']} {row['impression']}".strip()
        if text:
            texts.append(text)
    rng = random.Random(0)
    refs = texts[:PAIRS]
    hyps = [" ".join(w for w in t.split() if rng.random() > 0.2) for t in refs]
    corpus = NLGCorpus.from_texts(refs, hyps, "r2gen")
    corpus.scores(("bleu", "rouge_l", "cider_d", "cider"))  # counting and LCS are shared, done once up front
    statistics = {
        "bleu1": corpus.bleu_statistic(1), "bleu2": corpus.bleu_statistic(2),
        "bleu3": corpus.bleu_statistic(3), "bleu4": corpus.bleu_statistic(4),
        "rouge_l": corpus.rouge_l_statistic(),
        "cider_d (df resampled)": corpus.cider_statistic(df="resample"),
        "cider_d (df fixed)": corpus.cider_statistic(df="fixed"),
        "cider (df resampled)": corpus.cider_statistic(clipped=False, df="resample"),
        "cider (df fixed)": corpus.cider_statistic(clipped=False, df="fixed"),
    }  # fmt: skip
    results = {}
    for name, statistic in statistics.items():
        wall, cpu, result = timed(lambda s=statistic: bootstrap(s, n_resamples=RESAMPLES, seed=0))
        results[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "estimate": result.estimate,
                         "ci95": [result.low, result.high],
                         "replicate_mean_minus_estimate": float(result.replicates.mean() - result.estimate)}
        print(f"{name:24s} {wall:7.2f}s wall {cpu:7.2f}s CPU  {result.estimate:.4f} [{result.low:.4f}, {result.high:.4f}]")

    wall, cpu, _ = timed(lambda: resample_indices(PAIRS, 0, 0, RESAMPLES))
    index_cost = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    wall, cpu, paired = timed(lambda: paired_bootstrap(statistics["cider_d (df resampled)"], statistics["cider_d (df fixed)"],
                                                       n_resamples=RESAMPLES, seed=0))
    paired_cost = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                   "note": "paired bootstrap, CIDEr-D df resampled vs df fixed (same resamples)"}

    def naive():
        for row in resample_indices(PAIRS, 0, 0, NAIVE_RESAMPLES):
            NLGCorpus.from_texts([refs[i] for i in row], [hyps[i] for i in row], "r2gen").scores(("bleu", "rouge_l", "cider_d"))

    wall, cpu, _ = timed(naive)
    naive_cost = {"resamples_timed": NAIVE_RESAMPLES, "extrapolated_wall_s_for_1000": round(wall / NAIVE_RESAMPLES * RESAMPLES, 1),
                  "extrapolated_cpu_s_for_1000": round(cpu / NAIVE_RESAMPLES * RESAMPLES, 1),
                  "note": "re-tokenise and rescore BLEU+ROUGE-L+CIDEr-D per resample"}
    print(f"resample indices alone: {index_cost['wall_s']}s; paired CIDEr-D: {paired_cost['wall_s']}s; "
          f"naive rescoring extrapolated to 1000: {naive_cost['extrapolated_wall_s_for_1000']}s")
    payload = {
        "pairs": PAIRS,
        "resamples": RESAMPLES,
        "protocol": corpus.protocol,
        "per_metric": results,
        "drawing_resample_indices": index_cost,
        "paired": paired_cost,
        "naive_recompute": naive_cost,
        "load_average_at_end": os.getloadavg(),
        "note": "2 shared cores; other helpers were running, CPU time is the steadier measure",
    }
    write_result("bootstrap_cost", payload)


if __name__ == "__main__":
    main()
