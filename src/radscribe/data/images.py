"""Reading radiographs: PNG, JPEG, TIFF and DICOM into one array type.

:func:`read_image` returns a :class:`Radiograph`: ``pixels`` is a float32 array of shape (H, W) in
[0, 1], display-ready (DICOM rescale, VOI LUT or window applied, MONOCHROME1 inverted). Sizes are
checked from the header before any pixel is decoded, so a decompression bomb never allocates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # 8000 x 8000: larger than any plain radiograph detector
MAX_SIDE = 16_384
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
COLOR_CHROMA_THRESHOLD = 0.08


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the file and what was wrong."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Radiograph:
    """A decoded image. ``is_color`` says the source had real colour (a photo, not a radiograph)."""

    pixels: np.ndarray
    path: Path
    is_color: bool = False
    source_format: str = ""

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def to_uint8(self) -> np.ndarray:
        return np.clip(np.rint(self.pixels * 255.0), 0, 255).astype(np.uint8)

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.to_uint8(), mode="L")


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(path, f"image has an empty size {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise ImageReadError(
            path,
            f"image is {width}x{height} pixels; the limit is {max_pixels:,} pixels and {MAX_SIDE} per side "
            "(a guard against decompression bombs)",
        )


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image_size(path: Path | str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) read from the header only; sizes :func:`read_image` would refuse are refused here too."""
    path = Path(path)
    _check_exists(path)
    if is_dicom(path):
        dataset = _read_dicom_header(path)
        size = int(dataset.Columns), int(dataset.Rows)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    size = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageReadError(path, f"refused as a possible decompression bomb ({error})") from None
        except (UnidentifiedImageError, OSError) as error:
            raise ImageReadError(path, f"not a readable image ({error})") from None
    _check_size(path, *size, max_pixels)
    return size


def read_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> Radiograph:
    """Decode an image file into a :class:`Radiograph`."""
    path = Path(path)
    _check_exists(path)
    if is_dicom(path):
        return _read_dicom(path, max_pixels)
    return _read_raster(path, max_pixels)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")


def _read_raster(path: Path, max_pixels: int) -> Radiograph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(path, *image.size, max_pixels)
                image_format = image.format or path.suffix.lstrip(".").upper()
                image.load()
                pixels, is_color = _to_gray(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(path, f"refused as a possible decompression bomb ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(path, f"corrupt or unsupported image ({error})") from None
    return Radiograph(pixels=pixels, path=path, is_color=is_color, source_format=image_format)


def _to_gray(image: Image.Image) -> tuple[np.ndarray, bool]:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return scaled.astype(np.float32), False
    if mode == "1" or mode == "L":
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0, False
    if mode == "LA":
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0, False
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    chroma = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)))
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return gray.astype(np.float32), chroma > COLOR_CHROMA_THRESHOLD


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading DICOM needs pydicom: pip install 'radscribe[dicom]'") from None
    return pydicom


def _read_dicom_header(path: Path):
    pydicom = _pydicom()
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"not a readable DICOM file ({error})") from None
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageReadError(path, "DICOM file has no image (no Rows/Columns)")
    return dataset


def _read_dicom(path: Path, max_pixels: int) -> Radiograph:
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    header = _read_dicom_header(path)
    _check_size(path, int(header.Columns), int(header.Rows), max_pixels)
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:
        raise ImageReadError(path, f"not a readable DICOM file ({error})") from None
    if "PixelData" not in dataset:
        raise ImageReadError(path, "DICOM file has no pixel data")
    try:
        raw = dataset.pixel_array
    except Exception as error:
        raise ImageReadError(path, f"DICOM pixel data cannot be decoded ({error})") from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim == 3 and photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        raw = raw[0]  # multi-frame: the first frame is the image we report on
    if raw.ndim == 3:
        rgb = raw.astype(np.float32)
        rgb /= max(float(rgb.max()), 1.0)
        chroma = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)))
        return Radiograph(rgb @ np.array([0.299, 0.587, 0.114], np.float32), path, chroma > COLOR_CHROMA_THRESHOLD, "DICOM")
    values = apply_modality_lut(raw, dataset).astype(np.float64)
    if "VOILUTSequence" in dataset or "WindowCenter" in dataset:
        values = apply_voi_lut(values, dataset, index=0).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    pixels = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return Radiograph(pixels.astype(np.float32), path, False, "DICOM")
