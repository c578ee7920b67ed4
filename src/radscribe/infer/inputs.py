"""Collecting the images to report on, and refusing what is not a radiograph, with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from radscribe.data.images import COLOR_CHROMA_THRESHOLD, ImageReadError, Radiograph, read_image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"})


def collect_images(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given (whatever their suffix: reading decides), folders searched recursively for images.

    A path that does not exist is kept, so that it is reported as a failed input rather than skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def read_radiograph(path: Path | str) -> Radiograph:
    """Read an image and refuse a colour photograph (strong saturation is not a radiograph)."""
    image = read_image(path)
    if image.is_color:
        raise ImageReadError(
            path,
            f"looks like a colour photograph (mean saturation above {COLOR_CHROMA_THRESHOLD}), not a radiograph; refused",
        )
    return image
