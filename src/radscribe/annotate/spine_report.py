"""From :class:`SpineGeometry` to a filled ``spine-ap-alignment`` template and grounded boxes."""

from __future__ import annotations

from collections.abc import Sequence

from radscribe.annotate.spine import ANGLE_METHOD, MIN_VERTEBRAE, SpineGeometry, SpineGeometryError, analyze_spine, describe_curve
from radscribe.templates import FilledTemplate, GroundedFinding, load_template
from radscribe.types import Box

SPINE_TEMPLATE = "spine-ap-alignment"
DERIVED_SOURCE = "spine-geometry"
NOT_ASSESSED = "not assessed"
NO_SPINE_IMPRESSION = (
    "No vertebral column was identified on this image (fewer than {minimum} vertebrae found); spine alignment not assessed."
)


def spine_report_from_boxes(
    vertebrae: Sequence[Box], image_size: tuple[int, int], projection: str = NOT_ASSESSED
) -> tuple[FilledTemplate, SpineGeometry | None]:
    """The report a reader derives from vertebra boxes: every field computed from them, so none can
    contradict them. Fewer than three vertebrae (no centre line) give a report that says no spine was found."""
    try:
        geometry = analyze_spine(vertebrae, image_size)
    except SpineGeometryError:
        return no_spine_template(len(vertebrae), projection), None
    return spine_template(geometry, projection=projection), geometry


def no_spine_template(count: int, projection: str = NOT_ASSESSED) -> FilledTemplate:
    filled = load_template(SPINE_TEMPLATE).blank()
    filled.set("technique.projection", projection)
    filled.set("vertebrae.count", count)
    filled.set("vertebrae.levels", NOT_ASSESSED)
    filled.set("alignment.alignment", NOT_ASSESSED)
    filled.set("alignment.severity", NOT_ASSESSED)
    filled.set("alignment.curves", [])
    filled.set("impression.text", NO_SPINE_IMPRESSION.format(minimum=MIN_VERTEBRAE))
    return filled


def spine_template(geometry: SpineGeometry, projection: str = "AP", image: int = 0) -> FilledTemplate:
    """The filled template; each curve is grounded by its span (end vertebra to end vertebra) and its apex."""
    filled = load_template(SPINE_TEMPLATE).blank()
    filled.set("technique.projection", projection)
    filled.set("vertebrae.count", len(geometry.boxes))
    filled.set("vertebrae.levels", geometry.level_range)
    filled.set("alignment.alignment", geometry.alignment)
    filled.set("alignment.severity", geometry.severity)
    levels = geometry.levels
    curves = []
    for number, curve in enumerate(geometry.curves, start=1):
        values = {
            "region": curve.region,
            "convexity": curve.convexity,
            "apex": levels[curve.apex],
            "upper": levels[curve.upper],
            "lower": levels[curve.lower],
            "angle": round(curve.angle, 1),
            "severity": curve.severity,
        }
        span = Box.enclosing(f"{curve.region} curve {number}", geometry.boxes[curve.upper : curve.lower + 1], source=DERIVED_SOURCE, image=image)
        apex = _relabel(geometry.boxes[curve.apex], f"apex of curve {number} ({levels[curve.apex]})", image)
        curves.append(GroundedFinding(values, [span, apex]))
    filled.set("alignment.curves", curves)
    filled.set("impression.text", impression(geometry))
    return filled


def impression(geometry: SpineGeometry) -> str:
    levels = geometry.levels
    scoliotic = [curve for curve in geometry.curves if curve.severity != "none"]
    if not scoliotic:
        largest = f"; largest {ANGLE_METHOD} {geometry.max_angle:.1f} degrees" if geometry.curves else ""
        return f"No scoliosis{largest}. Levels {geometry.level_range} are estimated."
    curves = "; ".join(describe_curve(curve, levels) for curve in scoliotic)
    return f"Scoliosis ({geometry.severity}): {curves}. Levels are estimated."


def spine_boxes(geometry: SpineGeometry, image: int = 0) -> list[Box]:
    """Grounded boxes for the study: the column, each curve's apex, and each vertebra named by level."""
    boxes = [_relabel(geometry.column, "spine column", image)]
    for number, curve in enumerate(geometry.curves, start=1):
        boxes.append(_relabel(geometry.boxes[curve.apex], f"apex of curve {number} ({geometry.levels[curve.apex]})", image))
    boxes += [_relabel(box, level, image) for box, level in zip(geometry.boxes, geometry.levels)]
    return boxes


def _relabel(box: Box, label: str, image: int) -> Box:
    return Box(label, box.x_min, box.y_min, box.x_max, box.y_max, source=DERIVED_SOURCE, image=image)

