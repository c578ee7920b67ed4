"""Reading radiographs: PNG, JPEG, TIFF and DICOM into one array type, under one contract.

The contract every input path follows (``radscribe report``, the workstation upload, the importers):

- :func:`read_frames` / :func:`read_image` return :class:`Radiograph` frames: ``pixels`` is a float32
  (H, W) array in [0, 1], display-ready. DICOM grayscale goes through the modality LUT (rescale),
  then the VOI LUT or the first window (PS3.3 C.11.2: LINEAR, LINEAR_EXACT or SIGMOID), else a
  min-max stretch, then MONOCHROME1 is inverted.
- **Frames.** A multi-frame object (DICOM ``NumberOfFrames``, a multi-page TIFF) is split by a rule
  from :data:`FRAME_RULES`: ``first``, ``middle`` (index ``count // 2``) or ``all`` (one
  :class:`Radiograph` per frame, ``frame`` set to its 0-based index). Only the chosen frames are decoded.
- **Colour.** One rule for every format: colour pixels (RGB, YBR_* converted by pydicom, PALETTE
  COLOR through its palette, RGB/P/CMYK rasters) are scaled to [0, 1] by their nominal range; a mean
  saturation (max - min channel) above :data:`COLOR_CHROMA_THRESHOLD` marks a colour picture
  (``is_color``, refused by :func:`check_radiograph`); otherwise the ITU-R BT.601 luma is the image.
- **Sizes before pixels.** :func:`read_image_info` reads the header only; the frame size
  (``max_pixels``, :data:`MAX_SIDE`) and the total decoded size, rows x columns x frames x samples x
  bytes per sample over *all* frames (``max_decoded_bytes``), are checked before any pixel is decoded.
- **DICOM objects.** Non-image SOP classes (RT Plan/Dose/Structure Set, SR, Segmentation, waveforms...)
  are refused naming their class. Compressed transfer syntaxes decode through pydicom's plugins (the
  ``[dicom]`` extra brings pylibjpeg with libjpeg, OpenJPEG and RLE, and pyjpegls); a missing decoder
  is named. Files without the preamble/meta header are read with ``force=True``, the transfer
  syntax inferred from the encoding pydicom found (refused when the pixel data is compressed).
- **Refusals** are :class:`ImageReadError` with the file, a reason, and a ``code`` from
  :data:`REFUSAL_CODES`; :func:`check_radiograph` is the last gate (one 2-D finite grayscale frame).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # per frame, 8000 x 8000: larger than any plain radiograph detector
MAX_SIDE = 16_384
MAX_DECODED_BYTES = 1 << 30  # all frames together, as stored: 1 GiB (a 512 x 512 x 2-byte CT of 4,000 slices)
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
COLOR_CHROMA_THRESHOLD = 0.08
FRAME_RULES = ("first", "middle", "all")
REFUSAL_CODES = {
    "not-found": "no such file, or a folder",
    "empty": "the file has 0 bytes",
    "unreadable": "not an image file this reader understands (no DICOM dataset, no raster format)",
    "not-an-image": "a DICOM object that is not an image (RT plan, SR, segmentation...) or has no Rows/Columns",
    "no-pixel-data": "an image header without pixel data",
    "too-large": "over the size limits (frame pixels, side, total decoded bytes): a guard against decompression bombs",
    "unsupported": "a pixel encoding no decoder here supports",
    "decoder-missing": "a compressed transfer syntax whose decoder is not installed (pip install 'radscribe[dicom]')",
    "damaged": "pixel data that fails to decode (truncated, corrupt stream)",
    "colour": "a colour picture, not a radiograph",
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFER_BYTES = 1 << 20  # DICOM values over 1 MiB (pixel data) stay on disk until a frame is decoded
_RASTER_SAMPLE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}


class ImageReadError(ValueError):
    """An image that cannot be read or is refused; the message names the file and what was wrong.

    ``code`` is one of :data:`REFUSAL_CODES` (a stable key to count refusals by).
    """

    def __init__(self, path: Path | str | None, reason: str, code: str):
        self.path = Path(path) if path is not None else None
        self.reason = reason
        self.code = code
        super().__init__(f"{path}: {reason}")


@dataclass
class Radiograph:
    """A decoded image. ``is_color`` says the source had real colour (a photo, not a radiograph);
    ``frame`` is the 0-based frame index in a multi-frame source (``None`` for a single-frame one)."""

    pixels: np.ndarray
    path: Path
    is_color: bool = False
    source_format: str = ""
    frame: int | None = None

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


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says, before any pixel is decoded (see :func:`read_image_info`)."""

    path: Path
    format: str                 # "DICOM", "PNG", "JPEG", "TIFF", ...
    width: int
    height: int
    frames: int = 1
    samples: int = 1            # values per pixel: 1 grayscale or palette index, 3 colour
    bytes_per_sample: int = 1
    transfer_syntax: str = ""   # DICOM only, by name
    modality: str = ""          # DICOM only
    sop_class: str = ""         # DICOM only, by name ("" for legacy files without one)
    photometric: str = ""       # DICOM PhotometricInterpretation, or the raster mode

    @property
    def decoded_bytes(self) -> int:
        """Memory the decoded pixels take, all frames: rows x columns x frames x samples x bytes per sample."""
        return self.height * self.width * self.frames * self.samples * self.bytes_per_sample


# ----- public API ---------------------------------------------------------------------------------
def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image_info(path: Path | str, *, max_pixels: int = MAX_PIXELS, max_decoded_bytes: int = MAX_DECODED_BYTES) -> ImageInfo:
    """The header of an image, every check :func:`read_frames` makes before decoding already made.

    Raises :class:`ImageReadError` when the frame is over ``max_pixels`` or :data:`MAX_SIDE`, when
    all frames decoded would take more than ``max_decoded_bytes`` (:attr:`ImageInfo.decoded_bytes`),
    and for DICOM objects that are not images. No pixel is decoded.
    """
    path = Path(path)
    _check_exists(path)
    if is_dicom(path):
        with _quiet_pydicom():
            info = _dicom_info(path, _open_dicom(path, header_only=True))
    else:
        with _open_raster(path) as image:
            info = _raster_info(path, image)
    _check_limits(info, max_pixels, max_decoded_bytes)
    return info


def read_image_size(path: Path | str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) read from the header only; what :func:`read_image` would refuse from its header is refused here too."""
    info = read_image_info(path, max_pixels=max_pixels)
    return info.width, info.height


def read_frames(
    path: Path | str,
    frames: str | int = "first",
    *,
    max_pixels: int = MAX_PIXELS,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> list[Radiograph]:
    """Decode the frames the rule picks (:data:`FRAME_RULES`, or one 0-based frame index).

    The header is checked first (:func:`read_image_info`'s limits); only the picked frames are decoded.
    """
    path = Path(path)
    _check_exists(path)
    if is_dicom(path):
        return _read_dicom(path, frames, max_pixels, max_decoded_bytes)
    return _read_raster(path, frames, max_pixels, max_decoded_bytes)


def read_image(
    path: Path | str,
    max_pixels: int = MAX_PIXELS,
    *,
    frame: str | int = "first",
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> Radiograph:
    """Decode one frame (``first``, ``middle`` or a 0-based index) into a :class:`Radiograph`."""
    if frame == "all":
        raise ValueError("read_image decodes one frame; use read_frames(path, 'all') for every frame")
    return read_frames(path, frame, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)[0]


def frame_indices(rule: str | int, count: int) -> list[int]:
    """The 0-based frames a rule picks out of ``count``."""
    if isinstance(rule, int) and not isinstance(rule, bool):
        if not 0 <= rule < count:
            raise ValueError(f"frame {rule} does not exist: the image has {count} frame(s)")
        return [rule]
    if rule == "first":
        return [0]
    if rule == "middle":
        return [count // 2]
    if rule == "all":
        return list(range(count))
    raise ValueError(f"frames must be one of {', '.join(FRAME_RULES)} or a frame index, got {rule!r}")


def check_radiograph(image: Radiograph) -> Radiograph:
    """The last gate of the contract: one 2-D grayscale frame of finite values, not a colour picture."""
    pixels = image.pixels
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or 0 in pixels.shape:
        shape = getattr(pixels, "shape", type(pixels).__name__)
        raise ImageReadError(image.path, f"expected one 2-D grayscale frame (rows x columns), got pixels of shape {shape}", "unsupported")
    if not np.isfinite(pixels).all():
        raise ImageReadError(image.path, "pixel values include NaN or infinity", "damaged")
    if image.is_color:
        raise ImageReadError(
            image.path,
            f"looks like a colour photograph (mean saturation above {COLOR_CHROMA_THRESHOLD}), not a radiograph; refused",
            "colour",
        )
    return image


# ----- shared checks ------------------------------------------------------------------------------
def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "file not found", "not-found")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file", "not-found")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "empty")


def _check_limits(info: ImageInfo, max_pixels: int, max_decoded_bytes: int) -> None:
    width, height = info.width, info.height
    if width <= 0 or height <= 0:
        raise ImageReadError(info.path, f"image has an empty size {width}x{height}", "not-an-image")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > max_pixels:
        raise ImageReadError(
            info.path,
            f"image is {width}x{height} pixels; the limit is {max_pixels:,} pixels and {MAX_SIDE} per side "
            "(a guard against decompression bombs)",
            "too-large",
        )
    if info.decoded_bytes > max_decoded_bytes:
        raise ImageReadError(
            info.path,
            f"decoded, the pixel data would take {info.decoded_bytes:,} bytes ({height} rows x {width} columns x "
            f"{info.frames} frames x {info.samples} samples x {info.bytes_per_sample} bytes); the limit is "
            f"{max_decoded_bytes:,} bytes (a guard against decompression bombs)",
            "too-large",
        )


def _color_to_gray(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """RGB in [0, 1] -> (BT.601 luma, is it a colour picture): the one colour rule."""
    chroma = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)))
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(gray, 0.0, 1.0).astype(np.float32), chroma > COLOR_CHROMA_THRESHOLD


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ----- rasters ------------------------------------------------------------------------------------
@contextmanager
def _open_raster(path: Path) -> Iterator[Image.Image]:
    """Pillow with its bomb warning as an error; failures to open are ``unreadable``, later ones ``damaged``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageReadError(path, f"refused as a possible decompression bomb ({error})", "too-large") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ImageReadError(path, f"corrupt or unsupported image ({error})", "unreadable") from None
        try:
            with image:
                yield image
        except ImageReadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageReadError(path, f"refused as a possible decompression bomb ({error})", "too-large") from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageReadError(path, f"corrupt or unsupported image ({error})", "damaged") from None


def _raster_info(path: Path, image: Image.Image) -> ImageInfo:
    width, height = image.size
    return ImageInfo(
        path, image.format or path.suffix.lstrip(".").upper(), width, height, frames=max(1, getattr(image, "n_frames", 1)),
        samples=len(image.getbands()), bytes_per_sample=_RASTER_SAMPLE_BYTES.get(image.mode, 1), photometric=image.mode,
    )


def _read_raster(path: Path, rule: str | int, max_pixels: int, max_decoded_bytes: int) -> list[Radiograph]:
    with _open_raster(path) as image:
        info = _raster_info(path, image)
        _check_limits(info, max_pixels, max_decoded_bytes)
        frames = []
        for index in frame_indices(rule, info.frames):
            image.seek(index)
            image.load()
            pixels, is_color = _raster_to_gray(image)
            frames.append(Radiograph(pixels, path, is_color, info.format, index if info.frames > 1 else None))
    return frames


def _raster_to_gray(image: Image.Image) -> tuple[np.ndarray, bool]:
    mode = image.mode
    if mode in _RASTER_SAMPLE_BYTES:  # 16/32-bit grayscale: stretched, like DICOM without a window
        return _min_max(np.asarray(image, dtype=np.float64)), False
    if mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0, False
    return _color_to_gray(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return scaled.astype(np.float32)


# ----- DICOM --------------------------------------------------------------------------------------
def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading DICOM needs pydicom: pip install 'radscribe[dicom]'") from None
    return pydicom


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom warns on every non-conformant value (and converts values lazily): we judge what we use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open_dicom(path: Path, header_only: bool):
    """The dataset, pixel data left on disk (``header_only``: not read at all), transfer syntax always set."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=header_only, defer_size=_DEFER_BYTES)
    except InvalidDicomError:
        dataset = _read_without_meta(path)
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"not a readable DICOM file ({_one_line(error)})", "unreadable") from None
    _set_transfer_syntax(path, dataset)
    return dataset


def _read_without_meta(path: Path):
    """A bare dataset without preamble and meta header (legacy ACR-NEMA style, some modality exports).

    pydicom reads it with ``force=True``, guessing the encoding. Some such files keep a stray byte or
    two before the first element (pydicom's own ``no_meta.dcm`` starts with the last byte of the
    header that was cut off): when the dataset read from byte 0 is empty of image attributes, the read
    is retried from each of the first few (0008,xxxx) group tags in the first 256 bytes.
    """
    pydicom = _pydicom()

    def attempt(source, **options):
        try:
            dataset = pydicom.dcmread(source, force=True, **options)
            return dataset if any(key in dataset for key in ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID")) else None
        except Exception:  # a wrong guess at the start of the dataset fails in many ways
            return None

    dataset = attempt(path, defer_size=_DEFER_BYTES)
    if dataset is not None:
        return dataset
    data = path.read_bytes()  # only files with stray bytes before their first element get here
    for offset in [at for at in range(1, 256) if data[at : at + 2] in (b"\x08\x00", b"\x00\x08")][:8]:
        dataset = attempt(io.BytesIO(data[offset:]))
        if dataset is not None:
            return dataset
    raise ImageReadError(path, "not a DICOM file: no 'DICM' marker at byte 128, and no dataset could be read without it", "unreadable")


def _set_transfer_syntax(path: Path, dataset) -> None:
    """Infer a missing transfer syntax from the encoding pydicom found; compressed pixel data cannot be guessed."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(dataset, "file_meta", None) is None:
        dataset.file_meta = FileMetaDataset()
    if dataset.file_meta.get("TransferSyntaxUID"):
        return
    if "PixelData" in dataset and dataset["PixelData"].is_undefined_length:
        raise ImageReadError(path, "compressed (encapsulated) pixel data, but no transfer syntax says which compression", "unsupported")
    implicit, little_endian = dataset.original_encoding
    if implicit or implicit is None:
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _dicom_int(path: Path, dataset, keyword: str, default: int | None = None) -> int:
    value = dataset.get(keyword, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImageReadError(path, f"DICOM {keyword} is {value!r}; expected a whole number", "damaged") from None
    if number < 0:
        raise ImageReadError(path, f"DICOM {keyword} is {number}; expected a positive number", "damaged")
    return number


def _dicom_info(path: Path, dataset) -> ImageInfo:
    from pydicom.uid import UID

    sop_uid = dataset.get("SOPClassUID") or dataset.file_meta.get("MediaStorageSOPClassUID")
    sop = UID(str(sop_uid)) if sop_uid else None
    modality = str(dataset.get("Modality", "") or "")
    if sop is not None and sop.keyword and "ImageStorage" not in sop.keyword:
        described = f"{sop.name} object" + (f" (modality {modality})" if modality else "")
        raise ImageReadError(path, f"{described}: not an image; only DICOM image objects are reported on", "not-an-image")
    if "Rows" not in dataset or "Columns" not in dataset:
        raise ImageReadError(path, "DICOM file has no image (no Rows/Columns)", "not-an-image")
    bits = _dicom_int(path, dataset, "BitsAllocated", 8)  # absent: decoding will say so
    return ImageInfo(
        path, "DICOM", _dicom_int(path, dataset, "Columns"), _dicom_int(path, dataset, "Rows"),
        frames=max(1, _dicom_int(path, dataset, "NumberOfFrames", 1)),
        samples=max(1, _dicom_int(path, dataset, "SamplesPerPixel", 1)), bytes_per_sample=max(1, math.ceil(bits / 8)),
        transfer_syntax=dataset.file_meta.TransferSyntaxUID.name, modality=modality, sop_class=sop.name if sop else "",
        photometric=str(dataset.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper(),
    )


def _read_dicom(path: Path, rule: str | int, max_pixels: int, max_decoded_bytes: int) -> list[Radiograph]:
    with _quiet_pydicom():
        dataset = _open_dicom(path, header_only=False)
        info = _dicom_info(path, dataset)
        _check_limits(info, max_pixels, max_decoded_bytes)
        if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
            raise ImageReadError(path, "DICOM file has no pixel data", "no-pixel-data")
        frames = []
        for index in frame_indices(rule, info.frames):
            raw = _decode_dicom_frame(path, dataset, index, info)
            pixels, is_color = _dicom_display(path, raw, dataset, info)
            frames.append(Radiograph(pixels, path, is_color, "DICOM", index if info.frames > 1 else None))
    return frames


def _decode_dicom_frame(path: Path, dataset, index: int, info: ImageInfo) -> np.ndarray:
    from pydicom.pixels import get_decoder, pixel_array

    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageReadError(path, f"pixel data is {syntax.name}, which no DICOM pixel decoder supports", "unsupported") from None
    if not decoder.is_available:
        raise ImageReadError(
            path, f"pixel data is {syntax.name} and no decoder for it is installed: pip install 'radscribe[dicom]'", "decoder-missing"
        )
    where = f" (frame {index + 1} of {info.frames})" if info.frames > 1 else ""
    try:
        return pixel_array(dataset, index=index)
    except Exception as error:  # decoders raise many types on damaged streams
        raise ImageReadError(path, f"{syntax.name} pixel data cannot be decoded{where}: {_one_line(error)}", "damaged") from None


def _dicom_display(path: Path, raw: np.ndarray, dataset, info: ImageInfo) -> tuple[np.ndarray, bool]:
    """One decoded frame -> (display pixels in [0, 1], is it a colour picture)."""
    from pydicom.pixels import apply_color_lut

    if info.photometric == "PALETTE COLOR" and raw.ndim == 2:
        try:
            rgb = apply_color_lut(raw, dataset)
        except Exception as error:  # a palette that does not fit the data
            raise ImageReadError(path, f"PALETTE COLOR lookup table cannot be applied ({_one_line(error)})", "damaged") from None
        return _color_to_gray(rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max))
    if raw.ndim == 3 and raw.shape[-1] == 3:  # colour, after pydicom's YBR -> RGB conversion
        bits = int(dataset.get("BitsStored") or info.bytes_per_sample * 8)
        return _color_to_gray(raw.astype(np.float64) / float(2**bits - 1))
    if raw.ndim != 2:
        raise ImageReadError(path, f"decoded frame has shape {raw.shape}; expected rows x columns", "unsupported")
    return _grayscale_display(raw, dataset, info), False


def _grayscale_display(raw: np.ndarray, dataset, info: ImageInfo) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(raw, dataset).astype(np.float64)
    if "VOILUTSequence" in dataset:
        pixels = _min_max(apply_voi_lut(values, dataset, index=0, prefer_lut=True).astype(np.float64))
    else:
        windowed = _window(values, dataset)
        pixels = windowed if windowed is not None else _min_max(values)
    if info.photometric == "MONOCHROME1":  # high values are dark
        pixels = 1.0 - pixels
    return pixels.astype(np.float32)


def _window(values: np.ndarray, dataset) -> np.ndarray | None:
    """The first window (PS3.3 C.11.2.1.2) mapped to [0, 1]; ``None`` without a usable one."""
    from pydicom.multival import MultiValue

    try:
        center, width = (
            float(value[0] if isinstance(value, MultiValue) else value)
            for value in (dataset.get("WindowCenter"), dataset.get("WindowWidth"))
        )
    except (TypeError, ValueError, IndexError):  # absent, empty or not a number
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None
    function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0).astype(np.float32)
    if width < 1:
        return None
    return np.clip((values - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)
