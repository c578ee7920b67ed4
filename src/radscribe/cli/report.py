"""`radscribe report` and `radscribe ask`: grounded structured reports and answers from the command line.

Exit status: 0 when every image got a result, 1 when any input failed (each failure is printed with
its reason and listed in ``summary.json``; the other images are still reported), 2 for bad usage
(no model available, unknown template...). ``summary.json`` is always written: after every batch, so
an interrupted run leaves one too (``"complete": false``).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radscribe.cli.common import console, fail, progress

TASK_CHOICES = ("report", "vqa", "ground")
FRAME_CHOICES = ("first", "middle", "all")  # radscribe.data.images.FRAME_RULES, kept here so --help imports nothing heavy


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("report")(report)
    app.command("ask")(ask)


def report(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, TIFF, DICOM) or folders (searched recursively)."),
    model: str = typer.Option(None, "--model", "-m", help="Saved model folder, local HF checkpoint, or registered name (default: the embedded model)."),
    template: str = typer.Option(None, "--template", "-t", help="Report template name or YAML path (default: spine-ap-alignment)."),
    task: str = typer.Option("report", "--task", help="report | vqa | ground"),
    question: str = typer.Option(None, "--question", "-q", help="The question (vqa) or the phrase to locate (ground)."),
    out: Path = typer.Option(Path("radscribe-reports"), "--out", "-o", help="Output folder (one sub-folder per image)."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", min=1),
    rfi: bool = typer.Option(
        False, "--rfi/--no-rfi",
        help="Crop to the spine column first (Region-Focused Inference). Off by default: the embedded model was "
        "trained on whole films and loses vertebra F1 on crops (MODEL_CARD.md).",
    ),
    rfi_encoder: str = typer.Option("embedded", "--rfi-encoder", help="'embedded' or 'dinov2:PATH' (a local DINOv2 folder)."),
    rfi_debug: bool = typer.Option(False, "--rfi-debug", help="Use RFI and also write rfi.png (PCA map, mask, crop) per image."),
    unconstrained: bool = typer.Option(False, "--unconstrained", help="Free generation (no template constraint), for comparison."),
    fhir: bool = typer.Option(False, "--fhir", help="Also write fhir.json (FHIR R4 DiagnosticReport, status preliminary)."),
    frames: str = typer.Option(
        "first", "--frames",
        help="Multi-frame images (DICOM cine, enhanced objects, multi-page TIFF): report on the first frame, the "
        "middle one, or all (one report per frame, folders <name>-frame<N>).",
    ),
) -> None:
    """Write report.md, report.json and overlay.png per image (see --help for the options)."""
    if task not in TASK_CHOICES:
        fail(f"--task must be one of {', '.join(TASK_CHOICES)}, got {task!r}", 2)
    if task in ("vqa", "ground") and not (question or "").strip():
        fail(f"--task {task} needs --question ({'the question' if task == 'vqa' else 'the phrase to locate'})", 2)
    if frames not in FRAME_CHOICES:
        fail(f"--frames must be one of {', '.join(FRAME_CHOICES)}, got {frames!r}", 2)
    if task == "vqa" and frames == "all":
        fail("--task vqa answers about one image: use --frames first or --frames middle", 2)
    paths = _collect(images)
    reporter = _reporter(model, template, task, question, batch_size, rfi or rfi_debug, rfi_encoder, rfi_debug, unconstrained, frames)
    from radscribe.infer import ReportError, write_result

    failures: list[dict[str, str]] = []
    written = 0
    names: dict[str, int] = {}
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    complete = False
    try:
        for batch in progress(batches, f"{task} ({len(paths)} images)", total=len(batches)):
            if task == "vqa":
                results = [reporter.ask(path, question) for path in batch]
            else:
                results = reporter.report(batch, task="ground" if task == "ground" else "report")
            for result in results:
                if not isinstance(result, ReportError):
                    try:
                        write_result(result, out / _folder_name(result, names), fhir=fhir, rfi_debug=rfi_debug)
                        written += 1
                        continue
                    except Exception as error:  # a disk or drawing failure loses this image's files only
                        result = ReportError.unexpected(result.image, "write", error)
                failures.append(result.to_dict())
                console.print(f"[red]failed[/] {result.image} ({result.stage}, {result.code}): {result.reason}", highlight=False)
            _summary(out, len(paths), written, failures, frames, complete=False)
        complete = True
    finally:
        _summary(out, len(paths), written, failures, frames, complete=complete, final=True)
    if failures:
        raise typer.Exit(1)


def ask(
    image: Path = typer.Argument(..., help="One image file."),
    question: str = typer.Argument(..., help="The question, in quotes."),
    model: str = typer.Option(None, "--model", "-m", help="Saved model folder, local HF checkpoint, or registered name (default: the embedded model)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
) -> None:
    """Answer a question about one radiograph (prints the answer)."""
    if not question.strip():
        fail("the question is empty", 2)
    reporter = _reporter(model, None, "vqa", question, 1, True, "embedded", False, True)
    from radscribe.infer import ReportError

    result = reporter.ask(image, question, max_new_tokens=max_new_tokens)
    if isinstance(result, ReportError):
        fail(f"{result.image}: {result.reason}")
    typer.echo(result.text)


def _collect(images: list[Path]) -> list[Path]:
    from radscribe.infer import collect_images

    paths = collect_images(images)
    if not paths:
        fail("no images found in the given paths (image extensions: png, jpg, jpeg, tif, tiff, bmp, dcm)", 2)
    return paths


def _reporter(model, template, task, question, batch_size, use_rfi, rfi_encoder, rfi_debug, unconstrained, frames="first"):
    from radscribe.infer import ModelNotAvailable, Reporter, RFIConfig

    try:
        rfi = RFIConfig(encoder=rfi_encoder, debug=rfi_debug) if use_rfi else None
        ground = [question.strip()] if task == "ground" else None
        reporter = Reporter.from_pretrained(
            model, template=template, rfi=rfi, constrained=not unconstrained, ground=ground, batch_size=batch_size, frames=frames
        )
    except ModelNotAvailable as error:
        fail(str(error), 2)
    except (FileNotFoundError, KeyError, ValueError) as error:
        fail(f"cannot load model {model or '(the embedded one)'!r} or set up its reporter: {str(error).strip(chr(39) + chr(34))}", 2)
    console.print(f"model: {reporter.description}", highlight=False)
    if reporter.detector is not None:
        role = "its boxes are the report's" if reporter.boxes_from == "detector" else "its boxes go into the model's grounding prompt"
        console.print(f"detector: {reporter.detector.config.name} (saved with the model; {role})", highlight=False)
    return reporter


def _folder_name(result, seen: dict[str, int]) -> str:
    """The image's stem (plus ``-frame<N>``, 1-based, for a frame of a multi-frame file), numbered when two share one."""
    stem = Path(result.image).stem or "image"
    if result.frame is not None:
        stem += f"-frame{result.frame + 1}"
    seen[stem] = seen.get(stem, 0) + 1
    return stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"


def _summary(out: Path, total: int, written: int, failures: list[dict[str, str]], frames: str, complete: bool, final: bool = False) -> None:
    """summary.json: inputs, reports written, failures with stage, code and reason, counts per code."""
    from radscribe.data.manifest import atomic_write

    by_code: dict[str, int] = {}
    for failure in failures:
        by_code[failure["code"]] = by_code.get(failure["code"], 0) + 1
    summary = {
        "images": total, "frames": frames, "reported": written, "failed": len(failures), "complete": complete,
        "failed_by_code": dict(sorted(by_code.items())), "failures": failures,
    }
    with atomic_write(out / "summary.json") as handle:
        json.dump(summary, handle, indent=2)
    if final:
        colour = "green" if not failures and complete else "yellow"
        ending = "" if complete else " (interrupted: the summary covers what was done)"
        console.print(f"[{colour}]{written} reported from {total} images, {len(failures)} failed[/]{ending}; results in {out}", highlight=False)
