"""`radscribe label`: CSV / JSONL / manifest in, CheXpert-style label CSV out, clear errors."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.labeling import CHEXPERT_OBSERVATIONS

runner = CliRunner()


def read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_label_jsonl(tmp_path):
    source = tmp_path / "reports.jsonl"
    source.write_text(
        json.dumps({"uid": "a", "findings": "Small left pleural effusion.", "impression": "Possible pneumonia."}) + "\n"
        + json.dumps({"uid": "b", "findings": "", "impression": ""}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "labels.csv"
    result = runner.invoke(app, ["label", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read(out)
    assert list(rows[0]) == ["id", *CHEXPERT_OBSERVATIONS, "status"]
    assert rows[0]["id"] == "a" and rows[0]["Pleural Effusion"] == "1" and rows[0]["Pneumonia"] == "-1"
    assert rows[0]["No Finding"] == "" and rows[0]["status"] == "labeled"
    assert rows[1]["status"] == "empty" and rows[1]["Pleural Effusion"] == ""


def test_label_csv_with_columns(tmp_path):
    source = tmp_path / "reports.csv"
    source.write_text("study,text\ns1,No pneumothorax.\n", encoding="utf-8")
    out = tmp_path / "labels.csv"
    result = runner.invoke(app, ["label", str(source), "--out", str(out), "--text-column", "text", "--id-column", "study"])
    assert result.exit_code == 0, result.output
    assert read(out)[0]["id"] == "s1" and read(out)[0]["Pneumothorax"] == "0"


def test_label_manifest_report_sections(tmp_path):
    source = tmp_path / "manifest.jsonl"
    study = {"version": 1, "id": "st1", "images": [], "report": {"findings": "Cardiomegaly.", "impression": "No edema."}}
    source.write_text(json.dumps(study) + "\n", encoding="utf-8")
    out = tmp_path / "labels.csv"
    result = runner.invoke(app, ["label", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = read(out)[0]
    assert row["id"] == "st1" and row["Cardiomegaly"] == "1" and row["Edema"] == "0"


def test_unknown_column_names_file_and_columns(tmp_path):
    source = tmp_path / "reports.csv"
    source.write_text("id,report\n1,No effusion.\n", encoding="utf-8")
    result = runner.invoke(app, ["label", str(source), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code != 0
    assert "reports.csv" in result.output and "'findings'" in result.output and "report" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_bad_encoding_names_file_and_line(tmp_path):
    source = tmp_path / "reports.csv"
    source.write_bytes(b"id,text\n1,ok\n2,No effusion \xe9\n")
    result = runner.invoke(app, ["label", str(source), "--out", str(tmp_path / "o.csv"), "--text-column", "text"])
    assert result.exit_code != 0
    assert "reports.csv:3" in result.output and "--encoding" in result.output
    result = runner.invoke(
        app, ["label", str(source), "--out", str(tmp_path / "o.csv"), "--text-column", "text", "--encoding", "latin-1"]
    )
    assert result.exit_code == 0, result.output
