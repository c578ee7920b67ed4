"""AI-assisted annotation (SpineVLM): derive filled report templates and grounded boxes from labels.

Spine: vertebra boxes -> centre line, curves with a centre-line Cobb proxy angle, estimated levels
-> ``spine-ap-alignment`` template, grounded boxes and review overlays. Chest: NIH ChestX-ray14
image labels (weak) -> ``chest-pa`` template through ``label-mapping.yaml``.
"""

from radscribe.annotate.chest import CHEST_TEMPLATE, WEAK_LABEL_SOURCE, ChestFill, chest_template_from_labels
from radscribe.annotate.overlay import draw_spine_overlay
from radscribe.annotate.pipeline import (
    AnnotationSummary,
    annotate_chest_manifest,
    annotate_chest_study,
    annotate_spine_manifest,
    annotate_spine_study,
    filled_of,
)
from radscribe.annotate.spine import (
    ANGLE_METHOD,
    LEVEL_NAMES,
    MIN_VERTEBRAE,
    Curve,
    SpineGeometry,
    SpineGeometryError,
    analyze_spine,
    estimate_levels,
    region_of,
    severity_of,
)
from radscribe.annotate.spine_report import (
    DERIVED_SOURCE,
    NOT_ASSESSED,
    SPINE_TEMPLATE,
    no_spine_template,
    spine_boxes,
    spine_report_from_boxes,
    spine_template,
)

__all__ = [
    "MIN_VERTEBRAE",
    "ANGLE_METHOD",
    "CHEST_TEMPLATE",
    "DERIVED_SOURCE",
    "LEVEL_NAMES",
    "SPINE_TEMPLATE",
    "WEAK_LABEL_SOURCE",
    "AnnotationSummary",
    "ChestFill",
    "Curve",
    "SpineGeometry",
    "SpineGeometryError",
    "analyze_spine",
    "annotate_chest_manifest",
    "annotate_chest_study",
    "annotate_spine_manifest",
    "annotate_spine_study",
    "chest_template_from_labels",
    "draw_spine_overlay",
    "estimate_levels",
    "filled_of",
    "region_of",
    "severity_of",
    "spine_boxes",
    "spine_template",
    "spine_report_from_boxes",
    "no_spine_template",
    "NOT_ASSESSED",
]
