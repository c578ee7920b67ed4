"""Accepting uploaded images: size limit, type by magic bytes, a full defensive decode, PNG rendering.

Only PNG, JPEG and DICOM (Part 10, with the ``DICM`` preamble) are accepted, whatever the file name
or declared content type says. Every upload is decoded once before it is stored
(:func:`radscribe.data.read_image`: header sizes checked before pixels are decoded, DICOM through
pydicom), so a file that is stored is a file that can be reported on.
"""

from __future__ import annotations

import io
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import numpy as np
from PIL import Image

from radscribe.data.images import ImageReadError, Radiograph, read_image

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}


class UploadRejected(ValueError):
    """An upload refused with an HTTP status (413 too large, 415 wrong type, 422 unreadable) and a reason."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(reason)


def sniff(data: bytes) -> str | None:
    """``png``, ``jpeg`` or ``dicom`` from the first bytes; ``None`` for anything else."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str
    width: int
    height: int


def check_upload(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, scratch: Path | None = None) -> CheckedImage:
    """Raise :class:`UploadRejected` unless ``data`` is a readable grayscale PNG, JPEG or DICOM image."""
    name = filename or "upload"
    if len(data) > max_bytes:
        raise UploadRejected(413, f"{name}: {len(data):,} bytes is over the upload limit of {max_bytes:,} bytes")
    if not data:
        raise UploadRejected(422, f"{name}: the file is empty")
    kind = sniff(data)
    if kind is None:
        raise UploadRejected(
            415, f"{name}: not a PNG, JPEG or DICOM file (judged by its first bytes, not its name); only those are accepted"
        )
    image = decode(data, kind, name, scratch)
    if image.is_color:
        raise UploadRejected(422, f"{name}: looks like a colour photograph, not a radiograph; refused")
    return CheckedImage(data, kind, image.width, image.height)


def decode(data: bytes, kind: str, name: str = "image", scratch: Path | None = None) -> Radiograph:
    """Decode bytes of a sniffed ``kind`` (the readers work on files: a private temporary one is used)."""
    with tempfile.NamedTemporaryFile(suffix=SUFFIXES[kind], dir=scratch) as handle:
        handle.write(data)
        handle.flush()
        try:
            return read_image(handle.name)
        except ImageReadError as error:
            raise UploadRejected(422, f"{name}: cannot be read as {kind.upper()}: {error.reason}") from None
        except ImportError as error:
            raise UploadRejected(415, f"{name}: {error}") from None
        except Exception as error:  # decoders raise many types on hostile input; none may crash the server
            raise UploadRejected(422, f"{name}: cannot be read as {kind.upper()}: {type(error).__name__}: {error}") from None


def window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Window/level on display values in [0, 1]: ``center ± width / 2`` is stretched to black..white."""
    width = max(float(width), 1e-3)
    low = float(center) - width / 2
    return np.clip((pixels - low) / width, 0.0, 1.0)


def render_png(image: Radiograph, center: float = 0.5, width: float = 1.0, max_side: int | None = None) -> bytes:
    """The image as an 8-bit grayscale PNG after window/level (optionally downscaled to ``max_side``)."""
    pixels = np.rint(window(image.pixels, center, width) * 255.0).astype(np.uint8)
    picture = Image.fromarray(pixels, mode="L")
    if max_side and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # speed over size: it is served locally
    return buffer.getvalue()


class RadiographCache:
    """Decoded images by hash, least recently used evicted; decoding a DICOM per window change would be slow."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._items: OrderedDict[str, Radiograph] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str, load) -> Radiograph:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = load()
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return image
