"""`radscribe serve` (the reporting workstation) and `radscribe study create|analyze` (reader studies)."""

from __future__ import annotations

from pathlib import Path

import typer

from radscribe.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``study`` group to the root app."""
    app.command("serve")(serve)
    study = typer.Typer(help="Reader studies: unassisted vs draft-assisted reporting (crossover, washout, blinded).", no_args_is_help=True)
    study.command("create")(study_create)
    study.command("analyze")(study_analyze)
    app.add_typer(study, name="study")


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs --token (or --insecure)."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option(None, help="Model: registered name or local folder (default: the embedded model)."),
    data_dir: Path = typer.Option(Path("radscribe-data"), help="Studies, reports and images live here (a reader-study folder runs the study)."),
    token: str = typer.Option(None, envvar="RADSCRIBE_TOKEN", help="Require this token on every request (header, or open /?token=...)."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback bind without a token."),
    template: str = typer.Option(None, help="Template the model reports in (default: the reporter's)."),
    queue_size: int = typer.Option(8, min=1, help="Model requests allowed to wait before answering 503."),
    max_upload_mb: float = typer.Option(50.0, min=0.001, help="Upload size limit in MB."),
    rfi: bool = typer.Option(False, "--rfi", help="Region-focused inference (crop to the spine) in drafts."),
) -> None:
    """Run the reporting workstation: REST API (/docs) and the page (/)."""
    from radscribe.serve.settings import ServeSettings, check_bind

    settings = ServeSettings(host=host, port=port, model=model, data_dir=data_dir, token=token, insecure=insecure,
                             template=template, queue_size=queue_size, max_upload_bytes=int(max_upload_mb * 1024 * 1024), rfi=rfi)
    try:
        check_bind(settings)
    except ValueError as error:
        fail(str(error))
    import uvicorn

    from radscribe.infer import ModelNotAvailable
    from radscribe.serve.app import create_app

    try:
        app = create_app(settings)
    except (ModelNotAvailable, FileNotFoundError, ValueError) as error:
        fail(str(error))
    where = f"http://{host}:{port}/"
    console.print(f"radscribe workstation on {where}" + (" (open it with ?token=YOUR_TOKEN once)" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def study_create(
    definition: Path = typer.Argument(..., help="Study definition YAML (cases, references, readers, washout, seed)."),
    out: Path = typer.Option(..., "--out", help="New study folder (serve it with --data-dir)."),
) -> None:
    """Create a reader-study folder: images by hash, blinded randomised crossover assignment, reader tokens."""
    from radscribe.serve.readerstudy import TOKENS_FILE, StudyDefinitionError, create_study

    try:
        plan, tokens = create_study(definition, out)
    except (StudyDefinitionError, FileNotFoundError, FileExistsError) as error:
        fail(str(error))
    console.print(f"study '{plan.name}': {len(plan.references)} cases x {len(plan.readers)} readers x 2 arms "
                  f"= {len(plan.assignments)} reads, washout {plan.washout_days:g} days")
    console.print(f"reader tokens written to {out / TOKENS_FILE} (give each reader their own; shown only there)")
    console.print(f"run: radscribe serve --data-dir {out}")


def study_analyze(
    study_dir: Path = typer.Argument(..., help="The reader-study folder."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: STUDY_DIR/analysis)."),
    resamples: int = typer.Option(2000, min=100, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Per reader and arm: diagnostic F1 vs the reference and time per case, with bootstrap CIs (markdown, JSON, PNG)."""
    from radscribe.serve.readerstudy import analysis_markdown, analyze_study

    try:
        result = analyze_study(study_dir, out, n_resamples=resamples, seed=seed)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    typer.echo(analysis_markdown(result))
    console.print(f"written to {out or study_dir / 'analysis'}: analysis.md, analysis.json, reading_time.png, diagnostic_f1.png")
