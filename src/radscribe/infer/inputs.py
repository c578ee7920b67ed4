"""Collecting the images to report on: files as given, folders searched for images and DICOM files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from radscribe.data.images import DICOM_SUFFIXES, is_dicom

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}) | DICOM_SUFFIXES
DICOMDIR = "DICOMDIR"  # a media index (no image); PACS exports put one at the top of the folder


def collect_images(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given (whatever their suffix: reading decides); folders searched recursively.

    In a folder, a file is taken when its suffix is an image suffix or when it carries the DICOM
    ``DICM`` marker (PACS exports often name files ``IM0001`` without a suffix); ``DICOMDIR`` indexes
    are left out. A path that does not exist is kept, so that it is reported as a failed input rather
    than skipped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.name != DICOMDIR and (p.suffix.lower() in IMAGE_SUFFIXES or is_dicom(p)))
        else:
            found.append(path)
    return list(dict.fromkeys(found))

