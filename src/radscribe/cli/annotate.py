"""`radscribe annotate` commands: derive filled templates and grounded boxes from labels."""

from __future__ import annotations

from pathlib import Path

import typer

from radscribe.cli.common import console, fail, progress

annotate_app = typer.Typer(help="AI-assisted annotation: filled report templates from boxes or image labels.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(annotate_app, name="annotate")


def _bar(description: str):
    return lambda studies, total: progress(studies, description, total)


def _run(function, *args, **kwargs):
    from radscribe.data import ManifestError

    try:
        return function(*args, **kwargs)
    except (FileNotFoundError, ManifestError) as error:
        fail(str(error))


def _print_summary(summary, out: Path) -> None:
    console.print(
        f"{summary.annotated}/{summary.total} studies annotated, {summary.valid} with a valid template "
        f"({summary.valid_share:.1%} of annotated) -> {out}",
        highlight=False,
    )
    for study_id, reason in summary.skipped[:10]:
        console.print(f"  skipped {study_id}: {reason}", highlight=False)
    if len(summary.skipped) > 10:
        console.print(f"  ... and {len(summary.skipped) - 10} more skipped (status in each study's metadata)", highlight=False)


@annotate_app.command("spine")
def spine_command(
    inputs: list[Path] = typer.Argument(..., help="A manifest with vertebra boxes (e.g. from `radscribe data import cadma`); "
                                        "with --detect, image files or folders instead."),
    out: Path = typer.Option(..., "--out", "-o", help="Annotated manifest to write."),
    overlays: Path = typer.Option(None, "--overlays", help="Folder for one review PNG per study."),
    level_anchor: str = typer.Option("bottom-L5", "--level-anchor", help="Level estimate: 'bottom-L5' or 'top-T1'."),
    detect: bool = typer.Option(False, "--detect", help="Propose the vertebra boxes with the detector (films without boxes)."),
    detector: Path = typer.Option(None, "--detector", help="Saved detector folder (default: the one shipped with the embedded model)."),
) -> None:
    """Spine alignment (centre-line Cobb proxy, estimated levels) -> spine-ap-alignment template.

    With --detect, the vertebra detector proposes the boxes first (SpineVLM's AI-assisted annotation):
    every study is marked needs_review for a radiologist to correct; the run resumes if stopped.
    """
    from radscribe.annotate import annotate_spine_manifest

    if level_anchor not in ("bottom-L5", "top-T1"):
        fail(f"--level-anchor: expected 'bottom-L5' or 'top-T1', got '{level_anchor}'")
    if detect:
        _propose_spines(inputs, out, overlays, detector)
        return
    if len(inputs) != 1:
        fail(f"give one manifest (got {len(inputs)} paths); to annotate image files, add --detect")
    manifest = inputs[0]
    summary = _run(
        annotate_spine_manifest, manifest, out, overlays, level_anchor=level_anchor, progress=_bar("annotating spines")
    )
    _print_summary(summary, out)
    distribution = ", ".join(f"{name} {summary.severity.get(name, 0)}" for name in ("none", "mild", "moderate", "severe"))
    console.print(f"overall severity: {distribution}", highlight=False)


def _propose_spines(inputs: list[Path], out: Path, overlays: Path | None, detector_path: Path | None) -> None:
    from radscribe.infer import collect_images
    from radscribe.infer.loading import load_detector
    from radscribe.infer.proposals import propose_spine_manifest
    from radscribe.models.detector import BoxDetector

    images = collect_images(inputs)
    if not images:
        fail("no images found in the given paths (image extensions: png, jpg, jpeg, tif, tiff, bmp, dcm)")
    try:
        detector = BoxDetector.from_pretrained(detector_path) if detector_path is not None else load_detector(None)
    except (FileNotFoundError, ValueError) as error:
        fail(f"cannot load the detector: {error}")
    if detector is None:
        fail("no detector: the embedded model ships none in this installation; pass --detector FOLDER")
    summary = propose_spine_manifest(images, out, detector, overlays_dir=overlays, progress=_bar("detecting vertebrae"))
    console.print(
        f"{summary.proposed} of {summary.images} images got proposed vertebrae and a derived template, "
        f"{summary.without_spine} had fewer than 3 vertebrae, {summary.resumed} were done by an earlier run, "
        f"{len(summary.failed)} failed -> {out} (every study marked needs_review)",
        highlight=False,
    )
    for image, reason in summary.failed[:10]:
        console.print(f"  failed {image}: {reason}", highlight=False)


@annotate_app.command("chest")
def chest_command(
    manifest: Path = typer.Argument(..., help="Manifest with NIH ChestX-ray14 labels (e.g. from `radscribe data import nih-cxr14`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Annotated manifest to write."),
) -> None:
    """NIH image labels (weak) -> chest-pa template, grounded by the NIH boxes where present."""
    from radscribe.annotate import annotate_chest_manifest

    summary = _run(annotate_chest_manifest, manifest, out, progress=_bar("filling chest templates"))
    _print_summary(summary, out)
    common = ", ".join(f"{key} {count}" for key, count in summary.values.most_common(8))
    console.print(f"label source: weak labels from NIH ChestX-ray14 image labels; most frequent: {common}", highlight=False)


@annotate_app.command("chest-text")
def chest_text_command(
    manifest: Path = typer.Argument(..., help="Manifest whose studies have report text (findings and/or impression), e.g. IU X-ray."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write, with chest-pa templates and chexpert-lite findings."),
) -> None:
    """Free-text chest reports -> chest-pa template (chexpert-lite labels; sentences kept as provenance)."""
    from radscribe.labeling import structure_manifest

    summary = _run(structure_manifest, manifest, out, progress=_bar("structuring reports"))
    statuses = ", ".join(f"{name} {summary.statuses.get(name, 0)}" for name in ("ok", "empty", "unparseable"))
    console.print(f"{summary.total} studies: {statuses}; {summary.valid} valid chest-pa templates -> {out}", highlight=False)
    for study_id, reason in summary.problems[:10]:
        console.print(f"  {study_id}: {reason}", highlight=False)
    if len(summary.problems) > 10:
        console.print(f"  ... and {len(summary.problems) - 10} more (status in each study's metadata['text_structure'])", highlight=False)
    common = ", ".join(f"{key} {count}" for key, count in summary.present.most_common(8))
    console.print(f"label source: chexpert-lite on the report text; most frequent present: {common or 'none'}", highlight=False)


@annotate_app.command("ground")
def ground_command(
    volumes: list[Path] = typer.Argument(..., help="NIfTI volumes, DICOM series folders, 2-D images, or folders of them; "
                                         "the study id is the file or folder name without its suffix."),
    masks: Path = typer.Option(..., "--masks", help="Label maps: <id>.nii.gz / <id>.png (class ids) or <id>/<class>.nii.gz "
                               "folders (one mask per class). With --segment, TotalSegmentator writes them here."),
    reports: Path = typer.Option(..., "--reports", help="JSONL with 'id' and 'text' (or findings/impression), or a folder of <id>.txt."),
    schema: str = typer.Option("totalsegmentator", "--schema", help="Class schema: 'totalsegmentator' or a YAML file (id -> name)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest of grounded slices to write; slice PNGs go to <out>_slices/."),
    every: int = typer.Option(1, "--every", help="Consider every k-th slice."),
    max_slices: int = typer.Option(20, "--max-slices", help="At most this many slices per study (0: no limit), spread evenly."),
    min_area: int = typer.Option(10, "--min-area", help="Smallest connected component kept, in pixels."),
    per: str = typer.Option("class", "--per", help="One box per 'class' (and side) or per 'component'."),
    modality: str = typer.Option("auto", "--modality", help="CT, MR, or auto (DICOM header, else the intensity histogram)."),
    windows: str = typer.Option("lung,soft_tissue,bone", "--windows", help="CT windows: 3 stacked as RGB, or 1 for grayscale."),
    segment: bool = typer.Option(False, "--segment", help="Run TotalSegmentator (installed, weights on disk) for studies without masks."),
    llm_endpoint: str = typer.Option(None, "--llm-endpoint", help="Map mentions with a model on this OpenAI-compatible URL "
                                     "(e.g. http://localhost:8000/v1) instead of the lexicon; key from $OPENAI_API_KEY."),
    llm_model: str = typer.Option(None, "--llm-model", help="Model name for --llm-endpoint."),
) -> None:
    """Automatic grounding (RadGrounder): masks + report mentions -> grounded slice reports for phrase grounding."""
    from radscribe.volumes import (
        PER_CHOICES,
        GroundingOptions,
        LexiconMapper,
        LLMMapper,
        ProducerError,
        SchemaFileError,
        VolumeError,
        collect_studies,
        ground_dataset,
        load_schema,
        read_reports,
        run_totalsegmentator,
    )
    from radscribe.volumes.volume import is_nifti, volume_id

    if per not in PER_CHOICES:
        fail(f"--per: expected one of {', '.join(PER_CHOICES)}, got '{per}'")
    if modality not in ("auto", "CT", "MR"):
        fail(f"--modality: expected auto, CT or MR, got '{modality}'")
    if bool(llm_endpoint) != bool(llm_model):
        fail("--llm-endpoint and --llm-model go together")
    try:
        class_schema = load_schema(schema)
        sources = collect_studies(volumes)
        texts = read_reports(reports)
        options = GroundingOptions(every=every, max_slices=max_slices or None, min_area=min_area, per=per,  # type: ignore[arg-type]
                                   modality=modality, windows=tuple(w.strip() for w in windows.split(",") if w.strip()))
    except (FileNotFoundError, SchemaFileError, ValueError) as error:
        fail(str(error))
    if not sources:
        fail("no volumes, series folders or images found in the given paths")
    if segment:
        try:
            for source in progress(sources, "segmenting (TotalSegmentator)", len(sources)):
                if is_nifti(source) and not any(masks.glob(f"{volume_id(source)}*")):
                    run_totalsegmentator(source, masks)
        except (ProducerError, VolumeError) as error:
            fail(str(error))
    mapper = (LLMMapper(class_schema, llm_endpoint, llm_model, out.with_name(out.name + ".llm-cache.jsonl"))
              if llm_endpoint else LexiconMapper(class_schema))
    summary = ground_dataset(sources, masks, texts, class_schema, mapper, out, options, progress=_bar("grounding studies"))
    console.print(
        f"{summary.grounded_studies}/{summary.total} studies grounded ({summary.resumed} done by an earlier run): "
        f"{summary.slices} slices, {summary.boxes} boxes, {summary.grounded_phrases} of {summary.mentions} mentions grounded "
        f"({summary.phrases_per_grounded_report:.2f} per grounded report) -> {out}",
        highlight=False,
    )
    reasons = ", ".join(f"{why} {count}" for why, count in summary.mention_skips.most_common())
    console.print(f"mentions not grounded: {reasons or 'none'}", highlight=False)
    for study_id, reason in summary.skipped[:10]:
        console.print(f"  skipped {study_id}: {reason}", highlight=False)
    if len(summary.skipped) > 10:
        console.print(f"  ... and {len(summary.skipped) - 10} more skipped", highlight=False)
    for warning in summary.warnings[:5]:
        console.print(f"  warning: {warning}", highlight=False)
