"""A study as a picture: the image with its boxes and labels drawn, findings and questions beside it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from radscribe.data.images import Radiograph, read_image
from radscribe.data.manifest import atomic_write, resolve_image_path
from radscribe.types import Study

# Small films (CADMA is 416 px high) are enlarged so that labels stay legible next to them.
MIN_HEIGHT = 800
PANEL_WIDTH = 420
COLORS = ("#ff4b4b", "#3fa7ff", "#ffd23f", "#3fe08a", "#d36bff", "#ff9f40", "#40e0d0", "#ff6bb5")


def draw_study(study: Study, manifest_path: Path | str, image_index: int = 0, radiograph: Radiograph | None = None) -> Image.Image:
    """Render one image of ``study`` with its boxes, plus a text panel (findings, report, questions).

    ``radiograph`` is that image already decoded (say one frame of a multi-frame file); without it the
    image is read from its path.
    """
    if not study.images:
        raise ValueError(f"study {study.id} has no image to draw")
    if not 0 <= image_index < len(study.images):
        raise ValueError(f"study {study.id} has {len(study.images)} image(s); no image {image_index}")
    if radiograph is None:
        radiograph = read_image(resolve_image_path(manifest_path, study.images[image_index].path))
    picture = radiograph.to_pil().convert("RGB")
    scale = max(1.0, MIN_HEIGHT / picture.height)
    if scale > 1:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR)
    font = _font(max(12, picture.height // 60))
    draw = ImageDraw.Draw(picture)
    labels = sorted({box.label for box in study.boxes})
    boxes = [box for box in study.boxes if box.image == image_index]
    for number, box in enumerate(boxes, start=1):
        color = COLORS[labels.index(box.label) % len(COLORS)]
        x0, y0, x1, y1 = box.to_pixels(picture.width, picture.height)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=max(2, picture.height // 400))
        # A spine carries ~17 boxes of one label: numbers alone keep the captions from piling up.
        caption = str(number) if len(boxes) > 8 and len(labels) == 1 else f"{number} {box.label}"
        caption += f" {box.score:.2f}" if box.score is not None else ""
        left, top, right, bottom = draw.textbbox((x1 + 3, y0), caption, font=font)
        if right > picture.width:  # no room on the right: put the caption inside the box
            left, top, right, bottom = draw.textbbox((x0 + 3, y0 + 2), caption, font=font)
        draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill="black")
        draw.text((left, top), caption, fill=color, font=font)

    canvas = Image.new("RGB", (picture.width + PANEL_WIDTH, picture.height), "white")
    canvas.paste(picture, (0, 0))
    _panel(ImageDraw.Draw(canvas), study, image_index, picture.width + 12, font, canvas.height)
    return canvas


def save_study_overlay(
    study: Study, manifest_path: Path | str, out: Path | str, image_index: int = 0, radiograph: Radiograph | None = None
) -> Path:
    """Draw ``study`` and write it as a PNG (atomically)."""
    picture = draw_study(study, manifest_path, image_index, radiograph)
    with atomic_write(out, "wb") as handle:
        picture.save(handle, format="PNG")
    return Path(out)


def _panel(draw: ImageDraw.ImageDraw, study: Study, image_index: int, left: int, font, height: int) -> None:
    image = study.images[image_index]
    lines = [f"study {study.id}", f"image {image_index + 1}/{len(study.images)}  {image.width}x{image.height}"]
    lines += [f"split {study.split or '-'}   patient {study.patient_id or '-'}", ""]
    box_counts: dict[str, int] = {}
    for box in study.boxes:
        box_counts[box.label] = box_counts.get(box.label, 0) + 1
    if box_counts:
        lines.append("boxes: " + ", ".join(f"{label} x{count}" for label, count in box_counts.items()))
    if study.findings:
        lines.append("findings:")
        lines += [f"  {finding.label} ({finding.status}, {finding.source})" for finding in study.findings]
    for name, text in study.report.items():
        lines.append(f"{name}:")
        lines += textwrap.wrap(text, 52, initial_indent="  ", subsequent_indent="  ")[:8]
    if study.qa:
        lines.append(f"questions ({len(study.qa)}):")
        for qa in study.qa[:12]:
            lines += textwrap.wrap(f"Q: {qa.question}  A: {qa.answer} [{qa.answer_type}]", 52, initial_indent="  ", subsequent_indent="    ")
    step = font.size + 4 if hasattr(font, "size") else 16
    y = 10
    for line in lines:
        if y + step > height:
            draw.text((left, y - step), "...", fill="black", font=font)
            break
        draw.text((left, y), line, fill="black", font=font)
        y += step


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
