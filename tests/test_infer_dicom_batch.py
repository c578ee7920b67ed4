"""`radscribe report` on DICOM as hospitals send it: one bad file never takes a batch down.

A batch holds each kind of bad object between good ones (pydicom's own test files, a file that
vanished, an empty one, a reader that raises, a generation that fails); every good image is
reported, every bad one is a failure with its stage, code and reason, summary.json is always written
and the exit status says that something failed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radscribe.cli.main import app
from radscribe.infer import Reporter, ReportError, ReportResult
from test_data_dicom_corpus import _present as _corpus
from test_data_images import _image_dataset, _save
from test_infer_report import SMALL, tiny, tiny_folder  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def test_a_batch_with_each_kind_of_bad_object_between_good_ones(tiny_folder, tmp_path, monkeypatch):
    import radscribe.infer.reporter as reporter_module

    ct, rtplan, mr_j2k, colour_cine, legacy, truncated, broken_j2k, jpeg_extended = _corpus(
        "CT_small.dcm", "rtplan.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_rle_2frame.dcm", "no_meta.dcm",
        "MR_truncated.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "JPGExtended.dcm",
    )
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    explodes = tmp_path / "explodes.dcm"
    shutil.copy(ct, explodes)
    real_read_frames = reporter_module.read_frames

    def read_frames(path, frames="first"):  # a reader bug on one file: it must stay that file's failure
        if Path(path).name == "explodes.dcm":
            raise KeyError("a decoder bug nobody expected")
        return real_read_frames(path, frames)

    monkeypatch.setattr(reporter_module, "read_frames", read_frames)
    inputs = [ct, rtplan, mr_j2k, colour_cine, legacy, truncated, empty, tmp_path / "vanished.dcm", explodes, broken_j2k, jpeg_extended]
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", *map(str, inputs), "--model", str(tiny_folder), "--out", str(out), "--batch-size", "3"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["reported"], summary["failed"], summary["complete"]) == (11, 4, 7, True)
    failures = {Path(failure["image"]).name: (failure["stage"], failure["code"]) for failure in summary["failures"]}
    assert failures == {
        "rtplan.dcm": ("input", "not-an-image"),
        "SC_rgb_rle_2frame.dcm": ("input", "colour"),
        "MR_truncated.dcm": ("input", "damaged"),
        "empty.dcm": ("input", "empty"),
        "vanished.dcm": ("input", "not-found"),
        "explodes.dcm": ("input", "unexpected"),
        "JPEG2000-embedded-sequence-delimiter.dcm": ("input", "damaged"),
    }
    assert summary["failed_by_code"] == {"colour": 1, "damaged": 2, "empty": 1, "not-an-image": 1, "not-found": 1, "unexpected": 1}
    reasons = {Path(failure["image"]).name: failure["reason"] for failure in summary["failures"]}
    assert reasons["explodes.dcm"] == "unexpected KeyError: 'a decoder bug nobody expected'"
    assert "RT Plan Storage" in reasons["rtplan.dcm"] and "less than expected" in reasons["MR_truncated.dcm"]
    for good in (ct, mr_j2k, legacy, jpeg_extended):
        report = json.loads((out / good.stem / "report.json").read_text())
        assert report["image"] == str(good) and report["fields"] is not None and "frame" not in report
        assert (out / good.stem / "overlay.png").exists()


def test_a_generation_failure_loses_only_its_image(tiny, monkeypatch):
    import radscribe.infer.reporter as reporter_module

    from radscribe.infer.decoding import supports_fast_decoding

    assert supports_fast_decoding(tiny)
    ct, mr, dfl = _corpus("CT_small.dcm", "MR_small.dcm", "image_dfl.dcm")
    real_generate = reporter_module.generate_constrained

    def generate_constrained(model, images, *args, **kwargs):  # the model chokes on 64 x 64 images
        if any(image.width == 64 for image in images):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real_generate(model, images, *args, **kwargs)

    monkeypatch.setattr(reporter_module, "generate_constrained", generate_constrained)
    reporter = Reporter(tiny, rfi=None, limits=SMALL, ground=(), max_new_tokens=400, batch_size=3)
    first, failed, third = reporter.report([ct, mr, dfl])
    assert isinstance(first, ReportResult) and isinstance(third, ReportResult)
    assert isinstance(failed, ReportError) and (failed.image, failed.stage, failed.code) == (str(mr), "generate", "unexpected")
    assert failed.reason == "unexpected RuntimeError: CUDA error: an illegal memory access was encountered"


def test_frames_rule_one_report_per_frame(tiny_folder, tmp_path):
    frames = np.stack([np.tile(np.linspace(0, 1000 * (k + 1), 48, dtype=np.uint16), (64, 1)) for k in range(3)])
    cine = _save(_image_dataset(frames), tmp_path / "cine.dcm")
    base = ["report", str(cine), "--model", str(tiny_folder)]
    every = runner.invoke(app, [*base, "--out", str(tmp_path / "all"), "--frames", "all"])
    assert every.exit_code == 0, every.output
    folders = sorted(path.name for path in (tmp_path / "all").iterdir() if path.is_dir())
    assert folders == ["cine-frame1", "cine-frame2", "cine-frame3"]
    assert [json.loads((tmp_path / "all" / name / "report.json").read_text())["frame"] for name in folders] == [0, 1, 2]
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert (summary["images"], summary["frames"], summary["reported"], summary["failed"]) == (1, "all", 3, 0)
    middle = runner.invoke(app, [*base, "--out", str(tmp_path / "middle"), "--frames", "middle"])
    assert middle.exit_code == 0, middle.output
    assert json.loads((tmp_path / "middle" / "cine-frame2" / "report.json").read_text())["frame"] == 1
    wrong = runner.invoke(app, [*base, "--frames", "last"])
    assert wrong.exit_code == 2 and "--frames must be one of first, middle, all" in wrong.output
    vqa = runner.invoke(app, [*base, "--task", "vqa", "-q", "Is there a fracture?", "--frames", "all"])
    assert vqa.exit_code == 2 and "one image" in vqa.output


def test_summary_is_written_when_writing_fails_or_the_run_is_interrupted(tiny_folder, tmp_path, monkeypatch):
    import radscribe.infer as infer

    ct, mr, dfl = _corpus("CT_small.dcm", "MR_small.dcm", "image_dfl.dcm")
    real_write = infer.write_result
    calls = []

    def write_result(result, folder, **kwargs):
        calls.append(folder)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(result, folder, **kwargs)

    monkeypatch.setattr(infer, "write_result", write_result)
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(ct), str(mr), str(dfl), "--model", str(tiny_folder), "--out", str(out), "--batch-size", "1"])
    assert result.exit_code == 130  # Ctrl-C: 128 + SIGINT
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["reported"], summary["failed"], summary["complete"]) == (1, 1, False)
    (failure,) = summary["failures"]
    assert (Path(failure["image"]).name, failure["stage"], failure["code"]) == ("CT_small.dcm", "write", "unexpected")
    assert "No space left on device" in failure["reason"]
