"""Accepting uploaded images: type by magic bytes, decoding in a memory-capped process, PNG rendering, a byte-bounded cache.

Only PNG, JPEG and DICOM (Part 10, with the ``DICM`` preamble) are accepted, whatever the file name
or declared content type says. Every upload is decoded once before it is stored, through the one
reading contract (:func:`radscribe.data.read_image`: every size in the header, all DICOM frames
counted, is checked before any pixel is decoded), so a file that is stored is a file that can be
reported on.

Decoding never runs in the server process: a :class:`Decoder` sends the bytes to a worker process
whose data segment is capped (``RLIMIT_DATA``). A decompression bomb that passes the header checks,
or a decoder that crashes, costs that worker and answers 413/422; the server's memory and its event
loop are untouched, and the worker is replaced. The server keeps only a working copy of each
image (at most ``working_side`` pixels per side; boxes are normalised, so they are unaffected) in a
cache bounded in bytes.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from radscribe.data.images import ImageReadError, Radiograph, check_radiograph, read_image

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
DEFAULT_DECODER_MEMORY_BYTES = 1024 * 1024 * 1024
DEFAULT_WORKING_SIDE = 4096
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}


class UploadRejected(ValueError):
    """An upload refused with an HTTP status (413 too large, 415 wrong type, 422 unreadable) and a reason."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(status, reason)

    def __str__(self) -> str:
        return self.reason


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


def precheck(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> str:
    """The sniffed kind of an upload, or :class:`UploadRejected` (size, emptiness, type) before any decoding."""
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
    return kind


def check_upload(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, scratch: Path | None = None) -> CheckedImage:
    """Raise :class:`UploadRejected` unless ``data`` is a readable grayscale PNG, JPEG or DICOM image (decoded here)."""
    name = filename or "upload"
    kind = precheck(data, name, max_bytes)
    image = _decode(data, kind, name, scratch)
    try:
        check_radiograph(image)  # the same rule as `radscribe report`: one 2-D grayscale frame, no colour picture
    except ImageReadError as error:
        raise UploadRejected(422, f"{name}: {error.reason}") from None
    return CheckedImage(data, kind, image.width, image.height)


def working_copy(data: bytes, kind: str, max_side: int = DEFAULT_WORKING_SIDE, scratch: Path | None = None) -> Radiograph:
    """A stored image decoded, then reduced to at most ``max_side`` pixels per side (area averaging)."""
    image = _decode(data, kind, "stored image", scratch)
    if max(image.width, image.height) > max_side:
        scale = max_side / max(image.width, image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        reduced = Image.fromarray(image.pixels, mode="F").resize(size, Image.BOX)
        image = Radiograph(np.asarray(reduced, dtype=np.float32), image.path, image.is_color, image.source_format)
    return image


def _decode(data: bytes, kind: str, name: str, scratch: Path | None) -> Radiograph:
    """Decode bytes of a sniffed ``kind`` (the readers work on files: a private temporary one is used)."""
    with tempfile.NamedTemporaryFile(suffix=SUFFIXES[kind], dir=scratch) as handle:
        handle.write(data)
        handle.flush()
        try:
            return read_image(handle.name)  # the reading contract checks every size in the header before decoding
        except ImageReadError as error:
            status = 413 if error.code == "too-large" else 422
            raise UploadRejected(status, f"{name}: cannot be read as {kind.upper()}: {error.reason}") from None
        except ImportError as error:
            raise UploadRejected(415, f"{name}: {error}") from None
        except MemoryError:
            raise UploadRejected(413, f"{name}: decoding it needs more memory than the decoder's budget; refused") from None
        except Exception as error:  # decoders raise many types on hostile input; none may crash the server
            raise UploadRejected(422, f"{name}: cannot be read as {kind.upper()}: {type(error).__name__}: {error}") from None


def _cap_memory(limit_bytes: int) -> None:
    """Worker initializer: cap the data segment (heap and anonymous mappings) so a bomb fails with MemoryError."""
    import os
    import resource

    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


class Decoder:
    """Runs :func:`check_upload` and :func:`working_copy` in one memory-capped worker process, replaced if it dies."""

    def __init__(self, memory_bytes: int = DEFAULT_DECODER_MEMORY_BYTES, scratch: Path | None = None):
        self.memory_bytes = memory_bytes
        self.scratch = scratch
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_cap_memory, initargs=(self.memory_bytes,))
            return self._pool

    def _submit(self, function, *args) -> Future:
        try:
            return self._executor().submit(function, *args)
        except BrokenProcessPool:
            self._reset()
            return self._executor().submit(function, *args)

    def _reset(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _outcome(self, future: Future, name: str):
        try:
            return future.result()
        except BrokenProcessPool:
            self._reset()
            raise UploadRejected(422, f"{name}: the image decoder stopped on this file (out of memory or crashed); refused") from None

    def check(self, data: bytes, filename: str, max_bytes: int) -> CheckedImage:
        kind = precheck(data, filename, max_bytes)
        meta = self._outcome(self._submit(_check_meta, data, filename, max_bytes, self.scratch), filename)
        return CheckedImage(data, kind, *meta)

    async def check_async(self, data: bytes, filename: str, max_bytes: int) -> CheckedImage:
        """:meth:`check` without blocking the event loop."""
        kind = precheck(data, filename, max_bytes)
        future = self._submit(_check_meta, data, filename, max_bytes, self.scratch)
        try:
            await asyncio.wrap_future(future)
        except BaseException:
            pass  # the outcome (result or rejection) is read below
        return CheckedImage(data, kind, *self._outcome(future, filename))

    def working_copy(self, data: bytes, kind: str, max_side: int) -> Radiograph:
        return self._outcome(self._submit(working_copy, data, kind, max_side, self.scratch), "stored image")

    def warm_up(self) -> None:
        """Start the worker now, so the first upload does not wait for a process to start."""
        self._submit(int).result()

    def close(self) -> None:
        self._reset()


def _check_meta(data: bytes, filename: str, max_bytes: int, scratch: Path | None) -> tuple[int, int]:
    checked = check_upload(data, filename, max_bytes, scratch)  # the bytes do not travel back
    return checked.width, checked.height


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
    """Decoded working copies by hash, least recently used evicted once their pixels pass ``max_bytes``."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Radiograph] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str, load) -> Radiograph:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = load()
        size = int(image.pixels.nbytes)
        if size > self.max_bytes:
            return image  # larger than the whole cache: used once, never kept
        with self._lock:
            if key not in self._items:
                self._items[key] = image
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= int(evicted.pixels.nbytes)
        return image
