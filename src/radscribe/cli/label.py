"""`radscribe label`: label report texts with chexpert-lite into a CheXpert-style CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from radscribe.cli.common import fail, progress

DEFAULT_TEXT_COLUMNS = "findings,impression"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("label")(label)


def label(
    reports: Path = typer.Argument(..., help="CSV, JSONL, or a radscribe manifest (report sections are read)."),
    out: Path = typer.Option(..., "--out", help="Label CSV to write: id, the 14 CheXpert columns, status."),
    text_column: str = typer.Option(DEFAULT_TEXT_COLUMNS, "--text-column", help="Comma-separated text columns, joined in order."),
    id_column: str = typer.Option("", "--id-column", help="Id column (default: uid, id, study_id, or the row number)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of REPORTS."),
    rules: Path | None = typer.Option(None, "--rules", help="A CheXpert-layout rules folder instead of the shipped phrases."),
) -> None:
    """Label reports with chexpert-lite (an approximation of the CheXpert labeler): 1 / 0 / -1 / blank."""
    from radscribe.data import atomic_write
    from radscribe.labeling import CHEXPERT_OBSERVATIONS, ChexpertLite, RulesError

    columns = [name.strip() for name in text_column.split(",") if name.strip()]
    if not columns:
        fail("--text-column: give at least one column name")
    rows = _read_rows(reports, encoding)
    ids, texts = _select(rows, reports, columns, id_column)
    try:
        labeler = ChexpertLite(rules_dir=rules)
    except RulesError as error:
        fail(str(error))
    with atomic_write(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *CHEXPERT_OBSERVATIONS, "status"])
        for report_id, text in progress(zip(ids, texts), "labelling", total=len(texts)):
            labels = labeler.label(text)
            writer.writerow([report_id, *("" if value is None else value for value in labels.row()), labels.status])
    typer.echo(f"wrote {len(texts)} rows to {out}")


def _read_rows(path: Path, encoding: str) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL file; manifest lines contribute their report sections as columns."""
    if not path.is_file():
        fail(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        fail(f"{path}:{line}: cannot decode byte {raw[error.start]:#04x} as {encoding}; pass --encoding (e.g. latin-1)")
    except LookupError:
        fail(f"--encoding: unknown encoding {encoding!r}")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                fail(f"{path}:{number}: not a JSON object ({error.msg} at column {error.colno})")
            if not isinstance(record, dict):
                fail(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            if isinstance(record.get("report"), dict):  # a radscribe manifest line
                record = {**record, **record["report"]}
            rows.append(record)
        return rows
    return list(csv.DictReader(text.splitlines()))


def _select(rows: list[dict[str, Any]], path: Path, columns: list[str], id_column: str) -> tuple[list[str], list[str]]:
    available = sorted({key for row in rows for key in row})
    missing = [column for column in columns if not any(column in row for row in rows)]
    if missing:
        fail(f"{path}: no column {', '.join(map(repr, missing))}; columns found: {', '.join(available) or '(none)'}")
    if id_column and not any(id_column in row for row in rows):
        fail(f"{path}: no id column {id_column!r}; columns found: {', '.join(available)}")
    id_key = id_column or next((key for key in ("uid", "id", "study_id") if any(key in row for row in rows)), "")
    ids, texts = [], []
    for number, row in enumerate(rows, start=1):
        ids.append(str(row.get(id_key, number)) if id_key else str(number))
        parts = [row.get(column) for column in columns]
        texts.append("\n".join(str(part).strip() for part in parts if part not in (None, "") and str(part).strip()))
    return ids, texts
