"""`radscribe template` and `radscribe annotate` commands: thin, with clear errors on bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.templates import load_template, render

runner = CliRunner()


def test_list_and_show():
    result = runner.invoke(app, ["template", "list"])
    assert result.exit_code == 0 and "spine-ap-alignment" in result.output and "chest-pa" in result.output
    shown = runner.invoke(app, ["template", "show", "spine-ap-alignment", "--skeleton"])
    assert shown.exit_code == 0 and shown.output == load_template("spine-ap-alignment").skeleton()
    unknown = runner.invoke(app, ["template", "show", "nope"])
    assert unknown.exit_code == 1 and "unknown template 'nope'" in unknown.output


def test_validate_reports_issues_and_parse_errors(tmp_path):
    good = tmp_path / "good.md"
    good.write_text(render(load_template("chest-pa").normal()), encoding="utf-8")
    assert runner.invoke(app, ["template", "validate", str(good), "--template", "chest-pa"]).exit_code == 0
    bad = tmp_path / "bad.md"
    bad.write_text(good.read_text().replace("**Edema:** absent", "**Edema:** maybe"), encoding="utf-8")
    result = runner.invoke(app, ["template", "validate", str(bad), "--template", "chest-pa"])
    assert result.exit_code == 1 and "lungs.edema" in result.output and "not-allowed" in result.output
    broken = tmp_path / "broken.md"
    broken.write_text("# Chest radiograph report\nno structure here\n", encoding="utf-8")
    result = runner.invoke(app, ["template", "validate", str(broken), "--template", "chest-pa"])
    assert result.exit_code == 1 and f"{broken}:2:" in result.output
    latin = tmp_path / "latin.md"
    latin.write_bytes("# Chest radiograph report\n- **Impression:** d\xe9j\xe0\n".encode("latin-1"))
    result = runner.invoke(app, ["template", "validate", str(latin), "--template", "chest-pa"])
    assert result.exit_code == 1 and "not UTF-8" in result.output
    empty = tmp_path / "empty.md"
    empty.write_text("", encoding="utf-8")
    result = runner.invoke(app, ["template", "validate", str(empty), "--template", "chest-pa"])
    assert result.exit_code == 1 and "empty text" in result.output


def test_render_from_json(tmp_path):
    values = tmp_path / "filled.json"
    values.write_text(json.dumps(load_template("spine-ap-alignment").normal().to_dict()), encoding="utf-8")
    result = runner.invoke(app, ["template", "render", str(values)])
    assert result.exit_code == 0 and result.output == render(load_template("spine-ap-alignment").normal())
    values.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["template", "render", str(values)])
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_annotate_commands_fail_clearly(tmp_path):
    result = runner.invoke(app, ["annotate", "spine", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "manifest not found" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"version": 1, "id": 3}\n', encoding="utf-8")
    result = runner.invoke(app, ["annotate", "chest", str(bad), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "bad.jsonl:1" in result.output
