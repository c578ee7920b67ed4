"""Data: manifests of canonical studies, image reading, and importers for real radiology datasets."""

from radscribe.data.images import ImageReadError, Radiograph, read_image, read_image_size
from radscribe.data.manifest import (
    ManifestError,
    atomic_write,
    iter_manifest,
    read_manifest,
    resolve_image_path,
    write_manifest,
)

__all__ = [
    "ImageReadError",
    "ManifestError",
    "Radiograph",
    "atomic_write",
    "iter_manifest",
    "read_image",
    "read_image_size",
    "read_manifest",
    "resolve_image_path",
    "write_manifest",
]
