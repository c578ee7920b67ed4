"""`radscribe evaluate` end to end on small manifests built from real data (VQA-RAD, CADMA, IU X-ray)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.data.importers import import_dataset
from radscribe.data.manifest import read_manifest, write_manifest
from radscribe.evaluate.predictions import PredictionError, read_predictions
from radscribe.evaluate.vqa import canonical_closed

runner = CliRunner()


def _subset(kind, source, tmp_path, count):
    full = tmp_path / f"{kind}-full.jsonl"
    import_dataset(kind, source, full)
    studies = read_manifest(full)[:count]
    path = tmp_path / f"{kind}.jsonl"
    write_manifest(studies, path)
    return path, studies


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_vqa_and_grounding_end_to_end(tmp_path, vqa_rad_dir, cadma_dir):
    vqa_manifest, vqa_studies = _subset("vqa-rad", vqa_rad_dir, tmp_path, 15)
    cadma_manifest, cadma_studies = _subset("cadma", cadma_dir, tmp_path, 6)
    refs = tmp_path / "refs.jsonl"
    write_manifest(vqa_studies + cadma_studies, refs)

    records, closed_hits, closed_total = [], 0, 0
    for s in vqa_studies[:-1]:  # the last study gets no prediction at all
        answers = []
        for i, qa in enumerate(s.qa):
            answer = qa.answer if i % 2 == 0 else "no"
            answers.append({"qid": qa.id, "answer": answer})
        records.append({"id": s.id, "answers": answers})
    for s in vqa_studies:
        for i, qa in enumerate(s.qa):
            if qa.answer_type == "closed":
                closed_total += 1
                predicted = (qa.answer if i % 2 == 0 else "no") if s is not vqa_studies[-1] else ""
                closed_hits += canonical_closed(predicted) == canonical_closed(qa.answer)
    for s in cadma_studies:  # every box shifted right by 0.01: high IoU, all matched
        boxes = [dict(b.to_dict(), x_min=b.x_min + 0.01, x_max=min(1.0, b.x_max + 0.01)) for b in s.boxes]
        records.append({"id": s.id, "boxes": boxes + [{"label": "vertebra", "x_min": 0.5, "y_min": 0.9, "x_max": 0.2, "y_max": 1.0}]})
    predictions = _write(tmp_path / "preds.jsonl", records)
    other = _write(tmp_path / "other.jsonl", [{"id": s.id, "answers": [{"qid": q.id, "answer": "yes"} for q in s.qa]} for s in vqa_studies])

    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", str(predictions), "--refs", str(refs), "--metrics", "vqa,grounding",
                                 "--bootstrap", "200", "--out", str(out), "--compare", str(other)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    by_key = {m["key"]: m for m in metrics["metrics"]}
    closed = by_key["closed-accuracy@strict"]
    assert closed["value"] == pytest.approx(closed_hits / closed_total)
    assert closed["ci95"][0] <= closed["value"] <= closed["ci95"][1]
    assert metrics["missing_predictions"] == [vqa_studies[-1].id]
    miou = by_key["miou@label-matched"]["value"]
    assert 0.5 < miou < 1.0
    # one invalid box per CADMA study: counted as a prediction, warned about with file:line:field
    n_gt = sum(len(s.boxes) for s in cadma_studies)
    assert by_key["box-recall-iou0.3@label-matched"]["value"] == pytest.approx(1.0)
    assert by_key["box-precision-iou0.3@label-matched"]["value"] == pytest.approx(n_gt / (n_gt + len(cadma_studies)))
    assert any("preds.jsonl:" in w and "boxes[" in w for w in metrics["warnings"])
    assert any(c["key"] == "closed-accuracy@strict" for c in metrics["comparisons"])
    assert (out / "iou_histogram.png").stat().st_size > 1000
    assert "| vqa | closed-accuracy | `strict` |" in (out / "metrics.md").read_text()
    with (out / "per_sample.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["metric"] for r in rows} >= {"closed-accuracy@strict", "miou@label-matched"}


def test_nlg_and_ce_with_label_csvs(tmp_path, iu_dir):
    manifest, studies = _subset("iu-xray", iu_dir, tmp_path, 30)
    studies = [s for s in studies if s.report_text]
    predictions = _write(tmp_path / "preds.jsonl", [{"id": s.id, "report": s.report_text} for s in studies])
    from radscribe.labeling import CHEXPERT_OBSERVATIONS

    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *CHEXPERT_OBSERVATIONS])
        for i, s in enumerate(studies):
            writer.writerow([s.id, *(["1" if (i + j) % 5 == 0 else "" for j in range(14)])])
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", str(predictions), "--refs", str(manifest), "--metrics", "nlg,ce",
                                 "--bootstrap", "100", "--out", str(out), "--ref-labels", str(labels),
                                 "--pred-labels", str(labels), "--labels-name", "test-csv"])
    assert result.exit_code == 0, result.output
    by_key = {m["key"]: m for m in json.loads((out / "metrics.json").read_text())["metrics"]}
    assert by_key["bleu4@r2gen"]["value"] == pytest.approx(1.0)
    assert by_key["ce-f1@pos-only/micro/14@test-csv"]["value"] == 1.0
    assert (out / "ce_label_f1.png").exists()


def test_bad_predictions_fail_with_file_line_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "report": "x"}\n{"id": "b", "answers": [{"qid": "1"}]}\n')
    with pytest.raises(PredictionError, match=r"bad.jsonl:2: field 'answers\[0\].answer'"):
        read_predictions(bad)
    refs = tmp_path / "refs.jsonl"
    refs.write_text("")
    result = runner.invoke(app, ["evaluate", str(bad), "--refs", str(refs), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "bad.jsonl:2" in result.output
