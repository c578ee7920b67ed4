"""`radscribe template` commands: list, show, validate and render report templates."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from radscribe.cli.common import fail

template_app = typer.Typer(help="Report templates: list, show, validate markdown, render filled values.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(template_app, name="template")


def _template(name: str):
    from radscribe.templates import TemplateSpecError, load_template

    try:
        return load_template(name)
    except (KeyError, FileNotFoundError, TemplateSpecError) as error:
        fail(str(error).strip("'\""))


def _read_text(path: Path) -> str:
    if not path.is_file():
        fail(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        fail(f"{path}: not UTF-8 text (undecodable byte at offset {error.start})")


@template_app.command("list")
def list_command() -> None:
    """List the shipped templates."""
    from radscribe.templates import list_templates, load_template

    for name in list_templates():
        template = load_template(name)
        fields = sum(len(section.fields) for section in template.sections)
        typer.echo(f"{name}\tv{template.version}\t{len(template.sections)} sections, {fields} fields\t{template.title}")


@template_app.command("show")
def show_command(
    name: str = typer.Argument(..., help="Template name (see `radscribe template list`) or a YAML file."),
    skeleton: bool = typer.Option(False, "--skeleton", help="Print the blank skeleton instead of the normal report."),
) -> None:
    """Print a template as markdown: its normal report, or its blank skeleton."""
    from radscribe.templates import render

    template = _template(name)
    typer.echo(template.skeleton() if skeleton else render(template.normal(), template), nl=False)


@template_app.command("validate")
def validate_command(
    file: Path = typer.Argument(..., help="A markdown report written in the template's layout."),
    template_name: str = typer.Option(..., "--template", "-t", help="Template name or YAML file."),
) -> None:
    """Parse a markdown report and list every problem; exit 1 when it is not valid."""
    from radscribe.templates import TemplateParseError, parse, validate

    template = _template(template_name)
    text = _read_text(file)
    try:
        filled = parse(text, template)
    except TemplateParseError as error:
        fail(f"{file}:{error.line}: {error.reason}" if error.line else f"{file}: {error.reason}")
    issues = validate(filled, template)
    for issue in issues:
        typer.echo(f"{file}: {issue}", err=True)
    if issues:
        fail(f"{file}: {len(issues)} issue(s) against template '{template.name}'")
    typer.echo(f"{file}: valid '{template.name}' report")


@template_app.command("render")
def render_command(
    file: Path = typer.Argument(..., help="Filled values as JSON or YAML: {template: NAME, sections: {section: {field: value}}}."),
    template_name: str = typer.Option(None, "--template", "-t", help="Template name or YAML file (default: the file's 'template')."),
) -> None:
    """Render filled values as markdown (problems are listed on stderr, and exit 1)."""
    import yaml

    from radscribe.templates import FilledTemplate, render, validate
    from radscribe.types import SchemaError

    text = _read_text(file)
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        fail(f"{file}: not valid {'JSON' if file.suffix.lower() == '.json' else 'YAML'} ({str(error).splitlines()[0]})")
    if isinstance(data, dict) and template_name and "template" not in data:
        data = {**data, "template": template_name}
    try:
        filled = FilledTemplate.from_dict(data)
    except SchemaError as error:
        fail(f"{file}: {error}")
    template = _template(template_name or filled.template)
    issues = validate(filled, template)
    typer.echo(render(filled, template), nl=False)
    for issue in issues:
        typer.echo(f"{file}: {issue}", err=True)
    if issues:
        fail(f"{file}: {len(issues)} issue(s) against template '{template.name}'")
