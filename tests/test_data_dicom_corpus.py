"""The reading contract on a DICOM corpus nobody here wrote: the test files that ship inside pydicom.

Some of pydicom's indexed test files are fetched from the network by its data manager; only those on
disk are used (they ship with the package, so no ../shared/data skip is needed). Reference pixels
are pydicom's own: the uncompressed twin of a compressed file where it ships one, else the values
pydicom's pixel tests check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radscribe.data import REFUSAL_CODES, ImageReadError, check_radiograph, read_frames, read_image, read_image_info

pydicom = pytest.importorskip("pydicom")
from pydicom.pixels import pixel_array  # noqa: E402

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
FILES = sorted(CORPUS.glob("*.dcm"))

# What the contract does with named files: each kind of object in the corpus, by its refusal code.
EXPECTED_REFUSALS = {
    "rtplan.dcm": "not-an-image",                 # RT Plan: no image
    "rtstruct.dcm": "not-an-image",               # RT Structure Set, and no meta header
    "ExplVR_BigEndNoMeta.dcm": "not-an-image",    # RT Ion Plan, no meta header, big endian
    "rtdose_rle.dcm": "not-an-image",             # RT Dose: a dose grid, pixel data but no picture
    "liver_1frame.dcm": "not-an-image",           # Segmentation: 1-bit masks
    "test-SR.dcm": "not-an-image",                # Structured report
    "waveform_ecg.dcm": "not-an-image",           # ECG waveform
    "priv_SQ.dcm": "not-an-image",                # a dataset without Rows/Columns
    "MR_truncated.dcm": "damaged",                # pixel data shorter than Rows x Columns
    "JPEG-lossy.dcm": "damaged",                  # pydicom's reference: "bad file, scan stop has invalid value"
    "JPEG2000-embedded-sequence-delimiter.dcm": "damaged",  # 4 bytes of the J2K stream overwritten
    "SC_rgb_rle_2frame.dcm": "colour",            # multi-frame colour bars (crashed the batch before)
    "SC_rgb_rle_32bit_2frame.dcm": "colour",
    "GDCMJ2K_TextGBR.dcm": "colour",              # JPEG 2000 lossless, YBR_RCT
}
# Compressed grayscale images: each must decode and be reported on.
COMPRESSED_GRAYSCALE = [
    "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm", "JPGExtended.dcm", "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm",
]


def _present(*names: str) -> list[Path]:
    paths = [CORPUS / name for name in names]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        pytest.skip(f"not in this pydicom install: {', '.join(missing)}")
    return paths


def test_every_file_on_disk_is_read_or_refused_with_a_code_never_a_crash():
    assert len(FILES) >= 70, f"pydicom ships {len(FILES)} test files here"
    outcomes: dict[str, str] = {}
    for path in FILES:
        try:
            for frame in read_frames(path, "all"):
                check_radiograph(frame)
                assert frame.pixels.dtype == np.float32 and frame.pixels.ndim == 2
                assert 0.0 <= frame.pixels.min() <= frame.pixels.max() <= 1.0
            outcomes[path.name] = "read"
        except ImageReadError as error:
            assert error.code in REFUSAL_CODES and error.reason and error.path == path, (path.name, error)
            outcomes[path.name] = error.code
    for name, code in EXPECTED_REFUSALS.items():
        if name in outcomes:
            assert outcomes[name] == code, (name, outcomes[name])
    for name in COMPRESSED_GRAYSCALE + ["CT_small.dcm", "no_meta.dcm", "examples_ybr_color.dcm", "image_dfl.dcm"]:
        if name in outcomes:
            assert outcomes[name] == "read", (name, outcomes[name])


def test_lossless_compressed_and_legacy_files_match_their_uncompressed_twin():
    reference = read_image(*_present("MR_small.dcm")).pixels
    for path in _present(
        "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",  # compressed
        "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_small_padded.dcm",  # encodings
    ):
        np.testing.assert_array_equal(read_image(path).pixels, reference, err_msg=path.name)
    ct, no_meta = _present("CT_small.dcm", "no_meta.dcm")  # no_meta.dcm is CT_small without its meta header
    np.testing.assert_array_equal(read_image(no_meta).pixels, read_image(ct).pixels)
    assert read_image_info(no_meta).transfer_syntax == "Explicit VR Little Endian"
    # The decoders agree with the uncompressed twins on the stored values too (RT Dose is refused as an
    # object, but its RLE pixel data must decode).
    for compressed, twin in (("rtdose_rle.dcm", "rtdose.dcm"), ("rtdose_rle_1frame.dcm", "rtdose_1frame.dcm")):
        a, b = _present(compressed, twin)
        np.testing.assert_array_equal(pixel_array(a), pixel_array(b))


def test_lossy_compressed_images_decode_to_pydicoms_reference_values_and_display_by_the_contract():
    extended, mismatch = _present("JPGExtended.dcm", "J2K_pixelrep_mismatch.dcm")
    raw = pixel_array(extended)  # JPEG Extended 12-bit, through pylibjpeg's libjpeg
    assert (raw[420, 140], raw[230, 120]) == (244, 95)
    # No window, no rescale: min-max stretched.
    np.testing.assert_allclose(read_image(extended).pixels, (raw - raw.min()) / float(raw.max() - raw.min()), atol=1e-6)

    raw = pixel_array(mismatch)  # JPEG 2000 lossless whose sign disagrees with Pixel Representation
    assert raw[0, 0] == -2000
    assert raw[47:57, 279].tolist() == [621, 412, 138, -193, -520, -767, -907, -966, -988, -995]
    assert raw[328:338, 106].tolist() == [-377, -121, 141, 383, 633, 910, 1198, 1455, 1638, 1732]
    # Its first window is centre 40, width 100 (LINEAR), after a rescale of slope 1, intercept 0.
    np.testing.assert_allclose(read_image(mismatch).pixels, np.clip((raw - 39.5) / 99 + 0.5, 0, 1), atol=1e-6)

    # JPEG-LS near-lossless: two independent decoders (CharLS in pyjpegls, libjpeg in pylibjpeg) agree.
    for path in _present("JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm"):
        np.testing.assert_array_equal(pixel_array(path, decoding_plugin="pyjpegls"), pixel_array(path, decoding_plugin="pylibjpeg"))


def test_multi_frame_colour_object_is_split_then_judged_by_the_colour_rule():
    (cine,) = _present("examples_ybr_color.dcm")  # ultrasound cine, 30 frames, JPEG YBR_FULL_422
    assert read_image_info(cine).frames == 30
    frames = read_frames(cine, "all")
    assert [frame.frame for frame in frames] == list(range(30))
    assert all(frame.pixels.shape == (240, 320) and not frame.is_color for frame in frames)  # grey echo, few colour pixels
    assert read_frames(cine, "middle")[0].frame == 15
    np.testing.assert_array_equal(read_frames(cine, "middle")[0].pixels, frames[15].pixels)


def test_server_upload_path_follows_the_same_contract():
    from radscribe.serve.uploads import UploadRejected, check_upload

    for path in _present("MR_small_jp2klossless.dcm", "JPGExtended.dcm", "rtplan.dcm", "SC_rgb_rle_2frame.dcm", "MR_truncated.dcm"):
        try:
            frame = read_frames(path)[0]
            check_radiograph(frame)
            expected: str | None = None
        except ImageReadError as error:
            expected = error.reason
        try:
            checked = check_upload(path.read_bytes(), path.name)
            assert expected is None, (path.name, expected)
            assert (checked.width, checked.height) == (frame.width, frame.height)
        except UploadRejected as rejected:
            assert expected is not None and rejected.status == 422 and expected in rejected.reason, (path.name, rejected.reason)
