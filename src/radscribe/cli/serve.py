"""`radscribe serve` (the reporting workstation), `radscribe serve user|import|export`, `radscribe study create|analyze`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from radscribe.cli.common import console, fail, progress

DATA_DIR_HELP = "The workstation's data folder (a reader-study folder runs the study)."


def register(app: typer.Typer) -> None:
    """Add the ``serve`` group (run, user, import, export) and the ``study`` group to the root app."""
    serve_app = typer.Typer(help="The reporting workstation: run it, manage its accounts, import proposals, export signed reports.",
                            invoke_without_command=True)
    serve_app.callback()(serve)
    user = typer.Typer(help="Accounts: radiologist, reader, organiser, admin.", no_args_is_help=True)
    user.command("add")(user_add)
    user.command("list")(user_list)
    user.command("disable")(user_disable)
    user.command("token")(user_token)
    serve_app.add_typer(user, name="user")
    serve_app.command("import")(import_proposals)
    serve_app.command("export")(export_signed)
    app.add_typer(serve_app, name="serve")
    study = typer.Typer(help="Reader studies: unassisted vs draft-assisted reporting (crossover, washout, blinded).", no_args_is_help=True)
    study.command("create")(study_create)
    study.command("analyze")(study_analyze)
    app.add_typer(study, name="study")


def serve(
    context: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs accounts and TLS."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option(None, help="Model: registered name or local folder (default: the embedded model)."),
    data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="A Host name the server answers to besides loopback and --host (repeatable)."),
    ssl_certfile: Path = typer.Option(None, help="TLS certificate (PEM): serve HTTPS, session cookies Secure."),
    ssl_keyfile: Path = typer.Option(None, help="TLS private key (PEM)."),
    insecure_http: bool = typer.Option(False, "--insecure-http", help="Allow a non-loopback bind over plain HTTP (behind a TLS proxy)."),
    template: str = typer.Option(None, help="Template the model reports in (default: the reporter's)."),
    queue_size: int = typer.Option(8, min=1, help="Model requests allowed to wait before answering 503."),
    max_upload_mb: float = typer.Option(50.0, min=0.001, help="Size limit of one upload request (all files) in MB."),
    decoder_memory_mb: int = typer.Option(1024, min=64, help="Memory cap of the image decoder process in MB."),
    cache_mb: int = typer.Option(512, min=16, help="Decoded images kept in memory, in MB."),
    rfi: bool = typer.Option(False, "--rfi", help="Region-focused inference (crop to the spine) in drafts."),
) -> None:
    """Run the reporting workstation: the page (/) and the REST API (/openapi.json).

    With no account in the data folder it runs in single-user local mode on loopback; add accounts
    with `radscribe serve user add` and everyone signs in.
    """
    if context.invoked_subcommand is not None:
        return
    from radscribe.serve.accounts import Accounts
    from radscribe.serve.settings import ServeSettings, check_bind
    from radscribe.serve.storage import Storage

    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together")
    settings = ServeSettings(host=host, port=port, model=model, data_dir=data_dir, allowed_hosts=list(allowed_host),
                             tls=ssl_certfile is not None, insecure_http=insecure_http, template=template, queue_size=queue_size,
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024), decoder_memory_bytes=decoder_memory_mb * 1024 * 1024,
                             cache_bytes=cache_mb * 1024 * 1024, rfi=rfi)
    storage = Storage(data_dir)
    has_accounts = Accounts(storage).any()
    storage.close()
    try:
        check_bind(settings, has_accounts)
    except ValueError as error:
        fail(str(error))
    import uvicorn

    from radscribe.infer import ModelNotAvailable
    from radscribe.serve.app import create_app

    try:
        app = create_app(settings)
    except (ModelNotAvailable, FileNotFoundError, ValueError) as error:
        fail(str(error))
    scheme = "https" if settings.tls else "http"
    mode = "accounts: sign in" if has_accounts else "single-user local mode (no accounts)"
    console.print(f"radscribe workstation on {scheme}://{host}:{port}/ ({mode})", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None, ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)


def _accounts(data_dir: Path):
    from radscribe.serve.accounts import Accounts
    from radscribe.serve.storage import Storage

    return Accounts(Storage(data_dir))


def user_add(
    name: str = typer.Argument(..., help="Account name (letters, digits, '.', '_', '@', '-')."),
    role: str = typer.Option(..., help="radiologist, reader, organiser or admin."),
    data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True, envvar="RADSCRIBE_PASSWORD",
                                 help="At least 10 characters (prompted; or RADSCRIBE_PASSWORD)."),
) -> None:
    """Add an account. The first account ends single-user local mode: from then on everyone signs in."""
    from radscribe.serve.accounts import AccountError

    accounts = _accounts(data_dir)
    try:
        accounts.add(name, role, password)
    except AccountError as error:
        fail(str(error))
    console.print(f"added {name} ({role}) to {data_dir}", highlight=False)


def user_list(data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP)) -> None:
    """List the accounts: name, role, disabled, created."""
    for user in _accounts(data_dir).list():
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(user["created_at"]))
        typer.echo(f"{user['name']}\t{user['role']}\t{'disabled' if user['disabled'] else 'active'}\t{created}")


def user_disable(name: str = typer.Argument(...), data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP)) -> None:
    """Disable an account: its sessions and API tokens stop working at once (its signatures stay)."""
    from radscribe.serve.accounts import AccountError

    try:
        _accounts(data_dir).disable(name)
    except AccountError as error:
        fail(str(error))
    console.print(f"disabled {name}", highlight=False)


def user_token(
    name: str = typer.Argument(...),
    data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP),
    days: float = typer.Option(90.0, min=0.01, help="Days until the token expires."),
) -> None:
    """Print a new API token for scripts (send it as `Authorization: Bearer TOKEN`); it is shown only once."""
    from radscribe.serve.accounts import AccountError

    try:
        token = _accounts(data_dir).issue(name, "api", days * 86_400)
    except AccountError as error:
        fail(str(error))
    typer.echo(token)


def import_proposals(
    manifest: Path = typer.Argument(..., help="A manifest of proposals (`radscribe annotate spine --detect ... --out M.jsonl`) or any manifest."),
    data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP),
    template: str = typer.Option("spine-ap-alignment", help="Template of studies whose manifest line names none."),
) -> None:
    """Import a manifest's studies as drafts to review: each image stored, a study created, the proposal (boxes and template) its draft.

    A radiologist corrects and signs them in the workstation; `radscribe serve export --format manifest`
    turns the signed ones into a training manifest. Running it again skips what was imported (same study id and images).
    """
    from radscribe.data import ManifestError
    from radscribe.serve.manifests import import_manifest

    try:
        summary = import_manifest(manifest, data_dir, template=template,
                                  progress=lambda lines, total: progress(lines, "importing proposals", total))
    except (ManifestError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    console.print(f"{summary.imported} of {summary.studies} studies imported as drafts to review into {data_dir} "
                  f"({summary.without_template} without a template: boxes only), {summary.already_imported} imported before",
                  highlight=False)


def export_signed(
    out: Path = typer.Option(..., "--out", help="Folder for one file per signed report (manifest: manifest.jsonl and images/), and summary.json."),
    data_dir: Path = typer.Option(Path("radscribe-data"), help=DATA_DIR_HELP),
    format: str = typer.Option("json", help="md, json, fhir, or manifest (a training manifest: corrected boxes and signed template)."),
    split: str = typer.Option("train", help="manifest: the split of studies that bring none from an imported manifest."),
) -> None:
    """Export every signed report after verifying the signature chain and each signed content; tampered ones are listed, not exported."""
    from radscribe.serve.bulk import FORMATS
    from radscribe.serve.bulk import export_signed as run
    from radscribe.types import SPLITS

    if format not in FORMATS:
        fail(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    if split not in SPLITS:
        fail(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    summary = run(data_dir, out, format, split)
    console.print(f"exported {summary['exported']} signed report(s) to {out} in {summary['seconds']:.2f} s; "
                  f"{len(summary['tampered'])} refused as tampered", highlight=False)
    if summary["tampered"]:
        typer.echo(json.dumps(summary["tampered"], indent=1))
        raise typer.Exit(1)


def study_create(
    definition: Path = typer.Argument(..., help="Study definition YAML (cases, references, readers, washout, seed)."),
    out: Path = typer.Option(..., "--out", help="New study folder (serve it with --data-dir)."),
) -> None:
    """Create a reader-study folder: images by hash, blinded randomised crossover assignment, reader accounts."""
    from radscribe.serve.readerstudy import ACCOUNTS_FILE, StudyDefinitionError, create_study

    try:
        plan, _ = create_study(definition, out)
    except (StudyDefinitionError, FileNotFoundError, FileExistsError) as error:
        fail(str(error))
    console.print(f"study '{plan.name}': {len(plan.references)} cases x {len(plan.readers)} readers x 2 arms "
                  f"= {len(plan.assignments)} reads, washout {plan.washout_days:g} days")
    console.print(f"reader accounts and initial passwords written to {out / ACCOUNTS_FILE} (give each reader their own)")
    console.print(f"run: radscribe serve --data-dir {out}  (add an organiser: radscribe serve user add NAME --role organiser --data-dir {out})")


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
