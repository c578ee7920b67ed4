"""Automatic grounding for CT/MR slices and radiographs (RadGrounder): masks + report text -> grounded slices.

``ground_dataset(sources, masks, reports, load_schema("totalsegmentator"), LexiconMapper(schema), out)``
reads volumes (NIfTI, DICOM series) or 2-D images with their label maps, maps the report's anatomy
mentions to the schema's classes, and writes one manifest study per slice where a mentioned class is
present: the slice PNG, the grounded sentences (RadGrounder's ``<p bbox=...>phrase</p>`` in metadata)
and canonical boxes that the ``phrase_grounding`` and ``grounded_report`` tasks read. The pieces:
:func:`read_volume` / :func:`to_display`, :func:`label_boxes`, :class:`LexiconMapper` (or the optional
:class:`LLMMapper`), :func:`ground_slice`, and :func:`run_totalsegmentator` to produce masks.
"""

from radscribe.volumes.ground import SliceGrounding, ground_slice
from radscribe.volumes.llm import LLMMapper
from radscribe.volumes.masks import PER_CHOICES, ClassBox, label_boxes, mask_from_boxes, read_mask_png
from radscribe.volumes.mentions import ClassMention, LexiconMapper, MentionMapper
from radscribe.volumes.pipeline import (
    GroundingOptions,
    GroundingSummary,
    collect_studies,
    ground_dataset,
    ground_study,
    read_label_map,
    read_reports,
)
from radscribe.volumes.producers import ProducerError, check_totalsegmentator, run_totalsegmentator
from radscribe.volumes.schema import SHIPPED_SCHEMAS, ClassSchema, SchemaFileError, load_schema, parse_schema, side_of
from radscribe.volumes.slices import CT_WINDOWS, Rendering, render_slice, select_slices
from radscribe.volumes.volume import Volume, VolumeError, read_volume, to_display

__all__ = [
    "CT_WINDOWS",
    "PER_CHOICES",
    "SHIPPED_SCHEMAS",
    "ClassBox",
    "ClassMention",
    "ClassSchema",
    "GroundingOptions",
    "GroundingSummary",
    "LLMMapper",
    "LexiconMapper",
    "MentionMapper",
    "ProducerError",
    "Rendering",
    "SchemaFileError",
    "SliceGrounding",
    "Volume",
    "VolumeError",
    "check_totalsegmentator",
    "collect_studies",
    "ground_dataset",
    "ground_slice",
    "ground_study",
    "label_boxes",
    "load_schema",
    "mask_from_boxes",
    "parse_schema",
    "read_label_map",
    "read_mask_png",
    "read_reports",
    "read_volume",
    "render_slice",
    "run_totalsegmentator",
    "select_slices",
    "side_of",
    "to_display",
]
