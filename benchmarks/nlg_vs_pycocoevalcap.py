"""radscribe's NLG metrics vs pycocoevalcap on 3,000 real IU X-ray report pairs: agreement and speed.

References: the first 3,000 IU reports with text (findings + impression). Hypotheses: the same report
perturbed deterministically (seed 0), cycling through word dropout (p = 0.2), shuffled sentences, another
patient's report, and dropout plus one sentence of another report. Every third sample gets a second
reference (the next report), so the multi-reference paths run too.

For each text protocol (``r2gen``; ``coco-ptb`` when pycocoevalcap + Java are present) the texts are
tokenised once; both implementations then score the same single-spaced token strings. Timed: only the
scoring (ours: counting + BLEU-1..4 + ROUGE-L + CIDEr-D; pycocoevalcap: Bleu(4) + Rouge + Cider), best of
3 runs each, wall clock and process CPU time (the machine is shared, so CPU time is the steadier one).
Writes benchmarks/results/nlg_vs_pycocoevalcap.json.

Run: python benchmarks/nlg_vs_pycocoevalcap.py   (needs ../shared/data/iu-xray-reports and the [coco] extra)
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IU = REPO.parent / "shared" / "data" / "iu-xray-reports" / "reports.jsonl"
OUT = REPO / "benchmarks" / "results" / "nlg_vs_pycocoevalcap.json"
PAIRS = 3000
REPEATS = 3


def load_reports() -> list[str]:
    texts = []
    for line in IU.read_text().splitlines():
        row = json.loads(line)
        text = f"{row['findings']} {row['impression']}".strip()
        if text:
            texts.append(text)
    return texts


def perturb(text: str, donor: str, kind: int, rng: random.Random) -> str:
    sentences = [s.strip() for s in text.split(". ") if s.strip()]
    if kind == 0:
        return " ".join(w for w in text.split() if rng.random() > 0.2)
    if kind == 1:
        rng.shuffle(sentences)
        return ". ".join(sentences)
    if kind == 2:
        return donor
    kept = " ".join(w for w in text.split() if rng.random() > 0.2)
    return f"{kept} {rng.choice(donor.split('. '))}"


def build_pairs(texts: list[str]) -> tuple[list[list[str]], list[str]]:
    rng = random.Random(0)
    refs, hyps = [], []
    for index in range(PAIRS):
        donor = texts[rng.randrange(len(texts))]
        refs.append([texts[index], texts[index + 1]] if index % 3 == 0 else [texts[index]])
        hyps.append(perturb(texts[index], donor, index % 4, rng))
    return refs, hyps


def best_of(function, repeats: int = REPEATS) -> tuple[float, float, object]:
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu), result


def compare(protocol_name: str, refs: list[list[str]], hyps: list[str]) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from radscribe.evaluate.nlg import NLGCorpus
    from radscribe.evaluate.preprocess import get_protocol

    start = time.perf_counter()
    ref_tokens, hyp_tokens = get_protocol(protocol_name).prepare(refs, hyps)
    tokenise_seconds = time.perf_counter() - start
    # Single-spaced strings: exactly what pycocoevalcap sees after its own tokenizer.
    gts = {i: [" ".join(t) for t in sample] for i, sample in enumerate(ref_tokens)}
    res = {i: [" ".join(t)] for i, t in enumerate(hyp_tokens)}
    ref_lists = [[s.split() for s in gts[i]] for i in range(PAIRS)]
    hyp_lists = [res[i][0].split() for i in range(PAIRS)]

    def ours():
        corpus = NLGCorpus(ref_lists, hyp_lists, protocol_name)
        return {s.name: s for s in corpus.scores(("bleu", "rouge_l", "cider_d"))}

    def theirs():
        bleu, bleu_samples = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, rouge_samples = Rouge().compute_score(gts, res)
        cider, cider_samples = Cider().compute_score(gts, res)
        scores = {f"bleu{k + 1}": (bleu[k], bleu_samples[k]) for k in range(4)}
        scores.update(rouge_l=(rouge, rouge_samples), cider_d=(cider, cider_samples))
        return scores

    ours_wall, ours_cpu, our_scores = best_of(ours)
    theirs_wall, theirs_cpu, their_scores = best_of(theirs)
    # Per-metric times on our side (shared counting included in the first metric that needs it).
    per_metric = {}
    for metric in ("bleu", "rouge_l", "cider_d", "cider"):
        wall, cpu, _ = best_of(lambda m=metric: NLGCorpus(ref_lists, hyp_lists).scores((m,)))
        per_metric[metric] = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}
    their_metric = {}
    for name, scorer in (("bleu", lambda: Bleu(4).compute_score(gts, res, verbose=0)),
                         ("rouge_l", lambda: Rouge().compute_score(gts, res)), ("cider_d", lambda: Cider().compute_score(gts, res))):
        wall, cpu, _ = best_of(scorer, 1)
        their_metric[name] = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}

    agreement = {}
    for name, (corpus, per_sample) in their_scores.items():
        mine = our_scores[name]
        agreement[name] = {
            "ours": mine.value,
            "pycocoevalcap": float(corpus),
            "corpus_abs_diff": abs(mine.value - float(corpus)),
            "max_per_sample_abs_diff": float(np.max(np.abs(np.asarray(mine.per_sample) - np.asarray(per_sample)))),
        }
    return {
        "protocol": protocol_name,
        "tokenise_s": round(tokenise_seconds, 3),
        "agreement": agreement,
        "max_abs_diff_all_metrics": max(max(a["corpus_abs_diff"], a["max_per_sample_abs_diff"]) for a in agreement.values()),
        "timing_bleu_rouge_ciderd": {
            "ours_wall_s": round(ours_wall, 4), "ours_cpu_s": round(ours_cpu, 4),
            "pycocoevalcap_wall_s": round(theirs_wall, 4), "pycocoevalcap_cpu_s": round(theirs_cpu, 4),
            "speedup_wall": round(theirs_wall / ours_wall, 1), "speedup_cpu": round(theirs_cpu / ours_cpu, 1),
        },
        "ours_per_metric_including_counting": per_metric,
        "pycocoevalcap_per_metric_single_run": their_metric,
    }


def main() -> None:
    if not IU.exists():
        sys.exit(f"needs the IU X-ray reports at {IU}")
    from radscribe.data.manifest import atomic_write
    from radscribe.evaluate import MetricUnavailable
    from radscribe.evaluate.preprocess import get_protocol

    refs, hyps = build_pairs(load_reports())
    results, skipped = [], {}
    for protocol_name in ("r2gen", "coco-ptb"):
        try:
            get_protocol(protocol_name)
        except MetricUnavailable as error:
            skipped[protocol_name] = str(error)
            continue
        result = compare(protocol_name, refs, hyps)
        results.append(result)
        timing = result["timing_bleu_rouge_ciderd"]
        print(f"{protocol_name}: max |diff| {result['max_abs_diff_all_metrics']:.2e}; BLEU+ROUGE-L+CIDEr-D "
              f"ours {timing['ours_wall_s']:.3f}s vs pycocoevalcap {timing['pycocoevalcap_wall_s']:.3f}s wall "
              f"({timing['speedup_wall']}x), CPU {timing['speedup_cpu']}x")
        for name, values in result["agreement"].items():
            print(f"  {name:8s} ours {values['ours']:.6f}  pycoco {values['pycocoevalcap']:.6f}  "
                  f"max per-sample diff {values['max_per_sample_abs_diff']:.1e}")
    payload = {
        "pairs": PAIRS,
        "samples_with_two_references": sum(len(r) == 2 for r in refs),
        "data": "IU X-ray reports (findings + impression), perturbed hypotheses, seed 0",
        "repeats": REPEATS,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                    "note": "2 shared cores; other helpers were running, CPU time is the steadier measure"},
        "results": results,
        "skipped_protocols": skipped,
    }
    with atomic_write(OUT) as handle:
        json.dump(payload, handle, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
