"""Entry point of the `radscribe` command.

Each capability has its own module in this package with a ``register(app)`` function that adds its
commands; heavy libraries (torch, transformers) are imported inside the commands, never here, so that
``radscribe --help`` stays instant and works without the optional extras.
"""

from __future__ import annotations

import importlib

import typer

from radscribe import __version__
from radscribe.cli.common import setup_logging

COMMAND_MODULES = ("data", "template", "label", "annotate", "evaluate", "predict", "train", "plan", "report", "serve")

app = typer.Typer(
    name="radscribe",
    help="Grounded, structured radiology report generation: import data, train, report, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"radscribe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """radscribe: grounded, structured radiology report generation with vision-language models."""
    setup_logging()


for _module in COMMAND_MODULES:
    importlib.import_module(f"radscribe.cli.{_module}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
