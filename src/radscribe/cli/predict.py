"""`radscribe predict`: a model's predictions on a manifest split (thin over radscribe.evaluate.predict)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radscribe.cli.common import console, fail, progress


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("predict")
    def predict_command(
        manifest: Path = typer.Argument(..., help="Reference manifest (JSONL of studies)."),
        out: Path = typer.Option(..., "--out", help="Predictions JSONL to write (appended per study; a rerun resumes)."),
        model: Optional[str] = typer.Option(None, "--model", help="Saved model folder or registered name (default: the embedded model)."),
        split: Optional[str] = typer.Option("valid", "--split", help="Manifest split to predict ('all': every study)."),
        task: str = typer.Option("report", "--task", help="report (template report + grounding), vqa (every question), detector (the detector alone)."),
        detector: Optional[str] = typer.Option(None, "--detector", help="Detector folder, or 'none' for the model alone (default: <model>/detector when present)."),
        template: Optional[str] = typer.Option(None, "--template", help="Report template (default: the studies' own template)."),
        limit: int = typer.Option(0, "--limit", min=0, help="Only the first N studies of the split (0: all)."),
        batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per generation batch."),
        rfi: bool = typer.Option(False, "--rfi", help="Region-Focused Inference: crop to the region before the report (report task)."),
        boxes_from: Optional[str] = typer.Option(None, "--boxes-from", help="model or detector: whose boxes the report carries (default: the release's choice)."),
        no_abstain: bool = typer.Option(False, "--no-abstain", help="Ignore the model folder's abstain.json: score what the model itself writes."),
    ) -> None:
        """Predict every study of MANIFEST's --split with --model and write the predictions file `radscribe evaluate` reads."""
        from radscribe.data.manifest import ManifestError, read_manifest
        from radscribe.evaluate.predict import PREDICT_TASKS, StalePredictions, predict, select_studies

        if task not in PREDICT_TASKS:
            fail(f"--task must be one of {', '.join(PREDICT_TASKS)}, got '{task}'")
        try:
            studies = select_studies(read_manifest(manifest), None if split == "all" else split, limit, manifest)
        except (FileNotFoundError, ManifestError, ValueError) as error:
            fail(str(error))
        try:
            predictor = _predictor(task, model, detector, template, studies, batch_size, manifest, rfi, boxes_from, no_abstain)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
            fail(str(error))
        try:
            summary = predict(studies, manifest, out, predictor, progress=lambda items, total: progress(items, f"predict {task}", total))
        except StalePredictions as error:
            fail(str(error))
        for study_id, reason in summary.errors[:10]:
            console.print(f"[yellow]failed[/] {study_id}: {reason}", highlight=False)
        console.print(
            f"{summary.predicted} predicted, {summary.resumed} done earlier, {len(summary.errors)} failed, "
            f"{summary.seconds:.1f} s; wrote {out} ({summary.fingerprint})",
            highlight=False,
        )



def _predictor(
    task: str, model: str | None, detector: str | None, template: str | None, studies: list, batch_size: int, manifest: Path, rfi: bool,
    boxes_from: str | None = None, no_abstain: bool = False,
):
    """The predictor of ``task``: a Reporter (report, vqa) or the detector alone."""
    from radscribe.evaluate.predict import DetectorPredictor, ReporterPredictor
    from radscribe.infer import Reporter, RFIConfig
    from radscribe.infer.loading import load_detector
    from radscribe.models.detector import BoxDetector

    if detector is not None and detector != "none":
        chosen_detector = BoxDetector.from_pretrained(detector)
    else:
        chosen_detector = None if detector == "none" else load_detector(model)
    if task == "detector":
        if chosen_detector is None:
            raise ValueError("--task detector needs a detector: --detector DIR, or a --model folder with a detector/ inside")
        return DetectorPredictor(chosen_detector, batch_size)
    abstain = {"abstain": {}} if no_abstain else {}
    if task == "vqa":
        return ReporterPredictor(Reporter.from_pretrained(model, detector=None, batch_size=1, **abstain), "vqa")
    if template is None:
        templates = sorted({s.template for s in studies if s.template})
        if len(templates) != 1:
            raise ValueError(f"{manifest}: the studies use templates {templates or 'none'}; give one with --template")
        template = templates[0]
    options = ({"boxes_from": boxes_from} if boxes_from is not None else {}) | abstain
    reporter = Reporter.from_pretrained(model, template=template, detector=chosen_detector, batch_size=batch_size, rfi=RFIConfig() if rfi else None, **options)
    return ReporterPredictor(reporter, "report")
