"""Reading images and manifests: damaged files, DICOM display pipeline, bombs, schema errors with locations."""

from __future__ import annotations

import json
import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radscribe.data import ImageReadError, ManifestError, read_image, read_image_size, read_manifest
from test_data_importers import _dicom


def _png_bytes(width: int, height: int) -> bytes:
    stream = BytesIO()
    Image.new("L", (width, height), 200).save(stream, format="PNG")
    return stream.getvalue()


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes(64, 64)[:60])
    with pytest.raises(ImageReadError) as raised:
        read_image(path)
    assert raised.value.path == path and "corrupt or unsupported image" in raised.value.reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: file is empty \(0 bytes\)"):
        read_image(path)
    with pytest.raises(ImageReadError, match="file is empty"):
        read_image_size(path)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming ``width x height``, with one tiny IDAT: ~100 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 200
    for read in (read_image, read_image_size):
        with pytest.raises(ImageReadError, match="decompression bomb") as raised:
            read(path)
        assert raised.value.path == path


def test_oversized_image_below_pillows_limit_is_refused_with_its_size(tmp_path):
    path = _png_header_only(tmp_path / "big.png", 9000, 9000)  # 81 Mpx: under Pillow's limits, over ours
    with pytest.raises(ImageReadError, match=r"image is 9000x9000 pixels; the limit is 64,000,000 pixels"):
        read_image(path)
    with pytest.raises(ImageReadError, match="9000x9000"):
        read_image_size(path)


def test_dicom_without_pixel_data(tmp_path):
    path = _dicom(tmp_path / "nopixels.dcm", np.zeros((0, 0), np.uint16), Rows=8, Columns=8)
    assert read_image_size(path) == (8, 8)
    with pytest.raises(ImageReadError, match="DICOM file has no pixel data"):
        read_image(path)


def test_dicom_16_bit_rescale_window_and_monochrome1(tmp_path):
    raw = np.array([[0, 1000, 2000, 3000]], np.uint16)
    # Modality LUT: value = raw * 2 - 1000 -> [-1000, 1000, 3000, 5000]; window 1000 +- 1000 -> [0, 2000]:
    # -1000 clips to the bottom, 1000 is the centre, 3000 and 5000 clip to the top.
    path = _dicom(
        tmp_path / "ct.dcm", raw,
        RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=2000,
        PhotometricInterpretation="MONOCHROME1",
    )
    radiograph = read_image(path)
    assert radiograph.pixels.dtype == np.float32 and radiograph.pixels.shape == (1, 4)
    assert radiograph.source_format == "DICOM"
    # MONOCHROME1 means high values are dark: the display is inverted.
    np.testing.assert_allclose(radiograph.pixels[0], [1.0, 0.5, 0.0, 0.0], atol=2e-3)


def test_dicom_16_bit_monochrome2_without_window_is_min_max_scaled(tmp_path):
    raw = np.array([[100, 300], [500, 4195]], np.uint16)
    radiograph = read_image(_dicom(tmp_path / "x.dcm", raw))
    np.testing.assert_allclose(radiograph.pixels, (raw - 100) / 4095, atol=1e-6)


def _manifest(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"version": 1, **record}) + "\n" for record in records))
    return path


def test_manifest_missing_field_names_file_line_and_field(tmp_path):
    path = _manifest(tmp_path, [{"id": "a", "images": []}, {"images": []}])
    with pytest.raises(ManifestError) as raised:
        read_manifest(path)
    assert (raised.value.line, raised.value.field) == (2, "id")
    assert str(raised.value).startswith(f"{path}:2: field 'id': expected a string (required)")


def test_manifest_box_outside_unit_square(tmp_path):
    box = {"label": "vertebra", "x_min": 0.1, "y_min": 0.2, "x_max": 1.4, "y_max": 0.3}
    path = _manifest(tmp_path, [{"id": "a", "images": [{"path": "a.png"}], "boxes": [box]}])
    with pytest.raises(ManifestError) as raised:
        read_manifest(path)
    assert raised.value.field == "boxes[0].x_max" and raised.value.line == 1
    assert "a number in [0, 1]" in str(raised.value) and "1.4" in str(raised.value)


def test_manifest_unknown_field(tmp_path):
    path = _manifest(tmp_path, [{"id": "a", "images": []}, {"id": "b", "images": [], "reports": {}}])
    with pytest.raises(ManifestError, match=r"m.jsonl:2: field 'reports': expected one of the study fields"):
        read_manifest(path)


def test_schema_rejects_what_the_reader_rejects(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from radscribe.data.manifest import SCHEMA_PATH

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    good = {"version": 1, "id": "a", "images": [{"path": "a.png", "width": 10, "height": 10}], "split": "valid",
            "boxes": [{"label": "x", "x_min": 0, "y_min": 0, "x_max": 1, "y_max": 1, "source": "s", "image": 0, "score": 0.5}],
            "qa": [{"question": "q", "answer": "a", "answer_type": "closed", "question_type": "PRES", "id": "1"}],
            "findings": [{"label": "x", "status": "uncertain", "source": "s"}], "report": {"findings": "f"}, "metadata": {"k": 1}}
    assert validator.is_valid(good)
    bad_cases = [
        {k: v for k, v in good.items() if k != "id"},
        {**good, "reports": {}},
        {**good, "split": "val"},
        {**good, "boxes": [{**good["boxes"][0], "x_max": 1.4}]},
        {**good, "findings": [{"label": "x", "status": "maybe"}]},
        {**good, "qa": [{"question": "q", "answer": "a", "answer_type": "yes/no"}]},
        {**good, "version": 2},
    ]
    for case in bad_cases:
        assert not validator.is_valid(case), case
