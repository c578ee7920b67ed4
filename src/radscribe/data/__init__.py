"""Data: manifests of canonical studies, image reading, and importers for real radiology datasets."""

from radscribe.data.images import (
    FRAME_RULES,
    REFUSAL_CODES,
    ImageInfo,
    ImageReadError,
    Radiograph,
    check_radiograph,
    read_frames,
    read_image,
    read_image_info,
    read_image_size,
)
from radscribe.data.importers import IMPORTERS, ImportSummary, RecordError, get_importer, import_dataset
from radscribe.data.manifest import (
    ManifestError,
    atomic_write,
    iter_manifest,
    read_manifest,
    resolve_image_path,
    write_manifest,
)
from radscribe.data.overlay import draw_study, save_study_overlay
from radscribe.data.split import assign_splits
from radscribe.data.stats import format_stats, manifest_stats

__all__ = [
    "FRAME_RULES",
    "IMPORTERS",
    "REFUSAL_CODES",
    "ImageInfo",
    "ImageReadError",
    "ImportSummary",
    "ManifestError",
    "Radiograph",
    "RecordError",
    "assign_splits",
    "atomic_write",
    "check_radiograph",
    "draw_study",
    "format_stats",
    "get_importer",
    "import_dataset",
    "iter_manifest",
    "manifest_stats",
    "read_frames",
    "read_image",
    "read_image_info",
    "read_image_size",
    "read_manifest",
    "resolve_image_path",
    "save_study_overlay",
    "write_manifest",
]
