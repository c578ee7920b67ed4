"""`radscribe data`: import datasets into manifests, inspect them, draw a study, make splits."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radscribe.cli.common import console, fail, progress

data_app = typer.Typer(help="Import datasets into manifests, count what they hold, draw a study, split.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(data_app, name="data")


@data_app.command("import")
def import_command(
    kind: str = typer.Argument(..., help="Importer: cadma, yolo, vqa-rad, nih-cxr14, iu-xray, mimic-cxr, vindr-spinexr, slake, jsonl, csv."),
    source: Path = typer.Argument(..., help="The dataset folder (or file) to import."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write (JSONL; written atomically)."),
    on_error: str = typer.Option("fail", "--on-error", help="fail: stop at the first bad record; skip: leave it out and report it."),
    option: list[str] = typer.Option([], "--option", help="Importer option key=value (repeatable), e.g. names=vertebra."),
    images: Path | None = typer.Option(None, "--images", help="Folder holding the images, where the importer cannot find them."),
) -> None:
    """Import a dataset into a radscribe manifest and print a summary of what was skipped and why."""
    from radscribe.data.importers import RecordError, import_dataset

    if on_error not in ("fail", "skip"):
        fail(f"--on-error: expected fail or skip, got {on_error!r}")
    options = _parse_options(option)
    if images is not None:
        options["images"] = str(images)
    try:
        summary = import_dataset(
            kind, source, out, on_error=on_error, options=options,  # type: ignore[arg-type]
            progress=lambda studies: progress(studies, f"importing {kind}"),
        )
    except RecordError as error:
        fail(f"{error}\n(nothing written; --on-error skip leaves bad records out)")
    except KeyError as error:
        fail(str(error.args[0]))
    except (FileNotFoundError, ValueError, ImportError, OSError) as error:
        fail(str(error))
    console.print(f"imported {summary.imported:,} studies into {out}", highlight=False)
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped):,} record(s):[/]", highlight=False)
        for reason, count in summary.reasons().most_common(10):
            example = next(error.where for error in summary.skipped if error.reason == reason)
            console.print(f"  {count:,} x {reason}  (e.g. {example})", highlight=False, markup=False)


@data_app.command("stats")
def stats_command(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) to count."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Counts per split, labels, boxes, question types, image sizes and reports."""
    from radscribe.data import format_stats, manifest_stats

    stats = manifest_stats(_read(manifest))
    typer.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))


@data_app.command("show")
def show_command(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL)."),
    study_id: str | None = typer.Option(None, "--id", help="Study to draw (default: the first one)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write."),
    image: int = typer.Option(0, "--image", help="Which image of the study (0 = first)."),
) -> None:
    """Draw one study: its image with boxes and labels, and its findings, report and questions."""
    from radscribe.data import ImageReadError, save_study_overlay

    studies = _read(manifest)
    if not studies:
        fail(f"{manifest} holds no studies")
    study = next((s for s in studies if s.id == study_id), None) if study_id else studies[0]
    if study is None:
        close = [s.id for s in studies if study_id.lower() in s.id.lower()][:5]  # type: ignore[union-attr]
        fail(f"no study with id {study_id!r} in {manifest}" + (f"; similar: {', '.join(close)}" if close else ""))
    try:
        save_study_overlay(study, manifest, out, image)
    except (ImageReadError, ValueError, ImportError) as error:
        fail(str(error))
    console.print(f"wrote {out} (study {study.id}, {len(study.boxes)} boxes, {len(study.findings)} findings)", highlight=False)


@data_app.command("split")
def split_command(
    manifest: Path = typer.Argument(..., help="Manifest (JSONL) to split."),
    out: Path = typer.Option(..., "--out", "-o", help="New manifest to write."),
    valid: float = typer.Option(0.15, "--valid", help="Fraction of studies for the valid split."),
    test: float = typer.Option(0.0, "--test", help="Fraction of studies for the test split."),
    seed: int = typer.Option(0, "--seed", help="Shuffle seed (same seed, same split)."),
    keep_existing: bool = typer.Option(False, "--keep-existing", help="Studies that have a split keep it; only the rest are assigned."),
) -> None:
    """Assign train/valid/test, keeping each patient (or image) on one side; deterministic for a seed."""
    from collections import Counter

    from radscribe.data import assign_splits, write_manifest

    try:
        studies = assign_splits(_read(manifest), valid=valid, test=test, seed=seed, keep_existing=keep_existing)
    except ValueError as error:
        fail(str(error))
    write_manifest(studies, out)
    counts = Counter(study.split for study in studies)
    console.print(f"wrote {out}: " + ", ".join(f"{name} {counts[name]:,}" for name in ("train", "valid", "test")), highlight=False)


def _read(manifest: Path):
    from radscribe.data import ManifestError, read_manifest

    try:
        return read_manifest(manifest)
    except (ManifestError, FileNotFoundError, UnicodeDecodeError) as error:
        fail(str(error))


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            fail(f"--option: expected key=value, got {pair!r}")
        options[key.strip()] = value.strip()
    return options
