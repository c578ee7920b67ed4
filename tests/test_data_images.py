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


# ----- the reading contract: frames, windows, colour, sizes before pixels, legacy files ------------
def _image_dataset(pixels: np.ndarray, sop_class: str = "1.2.840.10008.5.1.4.1.1.1", **attributes):
    """A DICOM image dataset holding ``pixels``: (rows, cols), (frames, rows, cols) or (rows, cols, 3) RGB."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    colour = pixels.ndim == 3 and pixels.shape[-1] == 3
    dataset = Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID, dataset.Modality = sop_class, generate_uid(), "CR"
    dataset.Rows, dataset.Columns = pixels.shape[:2] if colour else pixels.shape[-2:]
    if pixels.ndim == 3 and not colour:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.SamplesPerPixel = 3 if colour else 1
    dataset.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = dataset.BitsStored = pixels.dtype.itemsize * 8
    dataset.HighBit, dataset.PixelRepresentation = dataset.BitsStored - 1, 0
    for key, value in attributes.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels.tobytes()
    return dataset


def _save(dataset, path: Path, meta: bool = True) -> Path:
    """Write ``dataset`` as a Part 10 file (preamble, meta header) or, ``meta=False``, as a bare legacy dataset."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    if meta:
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.preamble = b"\0" * 128
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.save_as(path, implicit_vr=True, little_endian=True)
    return path


def test_frame_rules_pick_first_middle_or_every_frame(tmp_path):
    from radscribe.data import FRAME_RULES, read_frames

    # Frame k is uniformly 1000 * k; a window of 0..4000 makes frame k show as k / 4 on the display.
    frames = np.stack([np.full((6, 4), 1000 * k, np.uint16) for k in range(5)])
    path = _save(_image_dataset(frames, WindowCenter=2000.5, WindowWidth=4001), tmp_path / "cine.dcm")
    shown = {rule: [(image.frame, float(image.pixels.mean())) for image in read_frames(path, rule)] for rule in FRAME_RULES}
    assert shown["first"] == [(0, 0.0)]
    assert shown["middle"] == [(2, pytest.approx(0.5, abs=1e-3))]
    assert [frame for frame, _ in shown["all"]] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([value for _, value in shown["all"]], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-3)
    assert read_image(path, frame=3).frame == 3
    with pytest.raises(ValueError, match="use read_frames"):
        read_image(path, frame="all")
    with pytest.raises(ValueError, match="frames must be one of first, middle, all"):
        read_frames(path, "last")
    single = read_image(_save(_image_dataset(frames[1]), tmp_path / "one.dcm"))
    assert single.frame is None  # a single-frame source has no frame index


def test_window_functions_follow_the_standard(tmp_path):
    raw = np.array([[0, 50, 99, 100, 101, 150, 200]], np.uint16)
    x = raw[0].astype(np.float64)
    for function, expected in {
        # LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped: c = 100, w = 101.
        "LINEAR": np.clip((x - 99.5) / 100 + 0.5, 0, 1),
        "LINEAR_EXACT": np.clip((x - 100) / 101 + 0.5, 0, 1),
        "SIGMOID": 1 / (1 + np.exp(-4 * (x - 100) / 101)),
    }.items():
        path = _save(_image_dataset(raw, WindowCenter=100, WindowWidth=101, VOILUTFunction=function), tmp_path / f"{function}.dcm")
        np.testing.assert_allclose(read_image(path).pixels[0], expected, atol=1e-6, err_msg=function)


def test_decoded_size_of_all_frames_is_checked_before_any_pixel_is_decoded(tmp_path):
    from radscribe.data import read_frames, read_image_info

    # The header claims 2,000 frames of 512 x 512 x 16 bits (1 GB decoded) over 8 bytes of pixel data:
    # decoding would fail as truncated, so "too-large" shows the check came first.
    dataset = _image_dataset(np.zeros((2, 2), np.uint16), NumberOfFrames=2000)
    dataset.Rows = dataset.Columns = 512
    path = _save(dataset, tmp_path / "bomb.dcm")
    info = read_image_info(path, max_decoded_bytes=2**40)
    assert (info.width, info.height, info.frames, info.samples, info.bytes_per_sample) == (512, 512, 2000, 1, 2)
    assert info.decoded_bytes == 512 * 512 * 2000 * 2
    for read in (read_image_info, read_frames):
        with pytest.raises(ImageReadError, match=r"1,048,576,000 bytes \(512 rows x 512 columns x 2000 frames x 1 samples x 2 bytes\)") as raised:
            read(path, max_decoded_bytes=10**9)
        assert raised.value.code == "too-large"
    with pytest.raises(ImageReadError) as raised:  # under the limit, the truncated pixel data is what is wrong
        read_frames(path, max_decoded_bytes=2**31)
    assert raised.value.code == "damaged" and "frame 1 of 2000" in raised.value.reason


def test_legacy_dataset_without_meta_header_is_read_with_its_transfer_syntax_inferred(tmp_path):
    from radscribe.data import read_image_info

    raw = np.arange(12, dtype=np.uint16).reshape(4, 3) * 100
    reference = read_image(_save(_image_dataset(raw), tmp_path / "part10.dcm")).pixels
    bare = _save(_image_dataset(raw), tmp_path / "bare.dcm", meta=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    assert read_image_info(bare).transfer_syntax == "Implicit VR Little Endian"
    np.testing.assert_array_equal(read_image(bare).pixels, reference)
    # A stray byte before the first element (pydicom's own no_meta.dcm has one) is skipped.
    shifted = tmp_path / "shifted.dcm"
    shifted.write_bytes(b"\x20" + bare.read_bytes())
    np.testing.assert_array_equal(read_image(shifted).pixels, reference)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is no DICOM dataset at all, with or without a meta header" * 4)
    with pytest.raises(ImageReadError, match="no 'DICM' marker") as raised:
        read_image(junk)
    assert raised.value.code == "unreadable"


def test_one_colour_rule_for_dicom_and_raster(tmp_path):
    from radscribe.data import check_radiograph

    gray_rgb = np.repeat(np.linspace(0, 255, 48, dtype=np.uint8).reshape(6, 8, 1), 3, axis=2)
    colourful = gray_rgb.copy()
    colourful[..., 0], colourful[..., 2] = 230, 10
    for name, pixels, is_colour in (("gray", gray_rgb, False), ("colour", colourful, True)):
        from_dicom = read_image(_save(_image_dataset(pixels), tmp_path / f"{name}.dcm"))
        Image.fromarray(pixels, "RGB").save(tmp_path / f"{name}.png")
        from_png = read_image(tmp_path / f"{name}.png")
        assert from_dicom.is_color is from_png.is_color is is_colour
        np.testing.assert_allclose(from_dicom.pixels, from_png.pixels, atol=1e-6)  # the same BT.601 luma
        if is_colour:
            with pytest.raises(ImageReadError, match="colour photograph") as raised:
                check_radiograph(from_dicom)
            assert raised.value.code == "colour"
        else:
            np.testing.assert_allclose(check_radiograph(from_png).pixels, gray_rgb[..., 0] / 255, atol=1e-6)


def test_check_radiograph_refuses_what_a_model_cannot_take():
    from radscribe.data import Radiograph, check_radiograph

    for pixels, match in ((np.zeros((1, 1, 100, 3), np.float32), r"shape \(1, 1, 100, 3\)"), (np.full((4, 4), np.nan, np.float32), "NaN")):
        with pytest.raises(ImageReadError, match=match):
            check_radiograph(Radiograph(pixels, Path("x.dcm")))


def test_multi_page_tiff_follows_the_frame_rule(tmp_path):
    from radscribe.data import read_frames

    pages = [Image.fromarray(np.full((5, 7), 60 * k, np.uint8), "L") for k in range(3)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert [(image.frame, round(float(image.pixels.mean()) * 255)) for image in read_frames(path, "all")] == [(0, 0), (1, 60), (2, 120)]
    assert read_image(path, frame="middle").frame == 1
