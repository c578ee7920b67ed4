"""`radscribe data` commands end to end on the bundled CADMA sample, plus splitting and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.data import assign_splits, read_manifest, write_manifest
from radscribe.samples import SAMPLES_DIR, sample_path
from radscribe.types import ImageRef, Study

runner = CliRunner()


def _flat(output: str) -> str:
    """CLI output with rich's line folding undone (it folds long paths at the 80 columns of a pipe)."""
    return output.replace("\n", "")


@pytest.fixture
def sample_manifest(tmp_path) -> Path:
    out = tmp_path / "cadma.jsonl"
    result = runner.invoke(app, ["data", "import", "cadma", str(sample_path("cadma")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "imported 3 studies" in result.output
    return out


def test_bundled_sample_is_three_cadma_valid_images():
    assert sample_path("cadma") == SAMPLES_DIR / "cadma"
    images = sorted((SAMPLES_DIR / "cadma" / "valid" / "images").glob("*.jpg"))
    labels = sorted((SAMPLES_DIR / "cadma" / "valid" / "labels").glob("*.txt"))
    assert len(images) == 3 and [p.stem for p in images] == [p.stem for p in labels]
    assert "CC BY 4.0" in (SAMPLES_DIR / "README.md").read_text()
    with pytest.raises(KeyError, match="no bundled sample 'mimic'"):
        sample_path("mimic")


def test_import_stats_show(sample_manifest, tmp_path):
    studies = read_manifest(sample_manifest)
    assert [len(s.boxes) for s in studies] == [17, 16, 17] and {s.split for s in studies} == {"valid"}

    result = runner.invoke(app, ["data", "stats", str(sample_manifest), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["studies"] == 3 and stats["splits"] == {"valid": 3}
    assert stats["boxes"]["total"] == 50 and stats["boxes"]["labels"] == {"vertebra": 50}
    assert stats["image_size"]["height"]["max"] <= 416

    text = runner.invoke(app, ["data", "stats", str(sample_manifest)])
    assert text.exit_code == 0 and "boxes     50 on 3 studies" in text.output

    png = tmp_path / "show.png"
    result = runner.invoke(app, ["data", "show", str(sample_manifest), "--id", studies[1].id, "--out", str(png)])
    assert result.exit_code == 0, result.output
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.height >= 800
        # Box outlines are drawn in colour on a grayscale film.
        rgb = picture.convert("RGB")
        reds = sum(1 for r, g, b in rgb.getdata() if r > 200 and g < 100 and b < 100)
    assert reds > 500


def test_import_bad_input_fails_cleanly(tmp_path):
    source = tmp_path / "train"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    Image.new("L", (20, 40)).save(source / "images" / "a.png")
    (source / "labels" / "a.txt").write_text("0 0.5 0.5 0.1\n")
    out = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["data", "import", "cadma", str(source), "--out", str(out)])
    assert result.exit_code == 1 and "labels/a.txt:1: expected 5 numbers" in _flat(result.output) and "got 4" in result.output
    assert "Traceback" not in result.output and not out.exists()

    result = runner.invoke(app, ["data", "import", "cadma", str(source), "--out", str(out), "--on-error", "skip"])
    assert result.exit_code == 0 and "skipped 1 record(s)" in result.output and "imported 0 studies" in result.output

    for args, message in [
        (["data", "import", "nope", str(source), "--out", str(out)], "unknown importer 'nope'"),
        (["data", "import", "cadma", str(tmp_path / "missing"), "--out", str(out)], "import source not found"),
        (["data", "import", "cadma", str(source), "--out", str(out), "--option", "names"], "expected key=value"),
        (["data", "import", "cadma", str(source), "--out", str(out), "--on-error", "ignore"], "expected fail or skip"),
        (["data", "stats", str(tmp_path / "none.jsonl")], "manifest not found"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and message in _flat(result.output) and "Traceback" not in result.output, (args, result.output)


def test_show_unknown_id_and_broken_manifest(sample_manifest, tmp_path):
    result = runner.invoke(app, ["data", "show", str(sample_manifest), "--id", "Image_007", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no study with id 'Image_007'" in _flat(result.output) and "similar: Image_007_jpg" in _flat(result.output)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(sample_manifest.read_text().replace('"x_max":', '"x_max":7', 1))
    result = runner.invoke(app, ["data", "stats", str(broken)])
    assert result.exit_code == 1 and "broken.jsonl:1: field 'boxes[0].x_max'" in _flat(result.output)


def _studies(count: int, patients: int | None = None) -> list[Study]:
    return [
        Study(id=f"s{i}", images=[ImageRef(f"img{i}.png")], patient_id=f"p{i % patients}" if patients else None)
        for i in range(count)
    ]


def test_split_is_seeded_grouped_and_deterministic(tmp_path):
    studies = _studies(200, patients=50)
    first = assign_splits(studies, valid=0.2, test=0.1, seed=3)
    again = assign_splits(list(reversed(studies)), valid=0.2, test=0.1, seed=3)
    assert {s.id: s.split for s in first} == {s.id: s.split for s in again}
    assert {s.id: s.split for s in first} != {s.id: s.split for s in assign_splits(studies, valid=0.2, test=0.1, seed=4)}
    by_patient: dict[str, set] = {}
    for study in first:
        by_patient.setdefault(study.patient_id, set()).add(study.split)
    assert all(len(splits) == 1 for splits in by_patient.values())
    counts = Counter(s.split for s in first)
    assert counts == {"train": 140, "valid": 40, "test": 20}


def test_split_keep_existing_and_cli(tmp_path):
    studies = _studies(100)
    studies[0].split = "test"
    kept = assign_splits(studies, valid=0.1, keep_existing=True)
    assert kept[0].split == "test" and Counter(s.split for s in kept[1:]) == {"train": 89, "valid": 10}
    manifest = tmp_path / "m.jsonl"
    write_manifest(studies, manifest)
    out = tmp_path / "split.jsonl"
    result = runner.invoke(app, ["data", "split", str(manifest), "--out", str(out), "--valid", "0.2", "--seed", "1", "--keep-existing"])
    assert result.exit_code == 0, result.output
    assert "train 79, valid 20, test 1" in result.output
    result = runner.invoke(app, ["data", "split", str(manifest), "--out", str(out), "--valid", "0.7", "--test", "0.5"])
    assert result.exit_code == 1 and "summing below 1" in result.output
