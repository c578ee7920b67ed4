"""MIMIC-CXR-JPG (``mimic-cxr``): one study per ``sXXXXXXXX`` with its images, report and CheXpert labels.

MIMIC-CXR needs credentialed PhysioNet access, so radscribe ships no copy. With access::

    # images + tables: https://physionet.org/content/mimic-cxr-jpg/2.1.0/
    # reports (mimic-cxr-reports.zip): https://physionet.org/content/mimic-cxr/2.1.0/
    radscribe data import mimic-cxr /data/mimic-cxr-jpg/2.1.0 --out mimic.jsonl
    radscribe data import mimic-cxr /data/mimic-cxr-jpg/2.1.0 --out mimic.jsonl --option reports=/data/mimic-cxr-reports

The source folder holds ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` and the tables
``mimic-cxr-2.0.0-split.csv``, ``-chexpert.csv`` and ``-metadata.csv`` (each may be ``.gz``). Reports
are ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` under the source or under ``--option reports=DIR``; their
FINDINGS/IMPRESSION/INDICATION/COMPARISON sections become report sections. The split table defines
the studies (``validate`` becomes ``valid``). CheXpert labels 1/0/-1 become positive/negative/uncertain
findings (source ``chexpert``); a blank cell means not mentioned and adds nothing. A study whose image
file is missing is an error (``--on-error skip`` imports a partial download). Image sizes come from the
metadata table (Rows/Columns) when present, else from the file headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from radscribe.data.importers.base import ImportContext, RecordError, register
from radscribe.data.importers.common import canonical_split, csv_rows, find_table, image_ref, report_sections
from radscribe.types import Finding, ImageRef, Study

SPLIT_TABLE = "mimic-cxr-2.0.0-split.csv"
CHEXPERT_TABLE = "mimic-cxr-2.0.0-chexpert.csv"
METADATA_TABLE = "mimic-cxr-2.0.0-metadata.csv"
CHEXPERT_STATUS = {"1": "positive", "1.0": "positive", "0": "negative", "0.0": "negative", "-1": "uncertain", "-1.0": "uncertain"}
KEPT_SECTIONS = ("findings", "impression", "indication", "comparison")


@register("mimic-cxr", options=("reports",))
def import_mimic_cxr(source: Path, context: ImportContext) -> Iterator[Study]:
    split_table = find_table(source, SPLIT_TABLE)
    if split_table is None:
        raise FileNotFoundError(f"no {SPLIT_TABLE}(.gz) in {source}: expected the MIMIC-CXR-JPG folder")
    reports_root = Path(context.options["reports"]) if context.options.get("reports") else source
    if not (reports_root / "files").is_dir():
        raise FileNotFoundError(f"expected a files/ folder (pXX/pXXXXXXXX/sXXXXXXXX) in {reports_root}")
    labels = _chexpert(find_table(source, CHEXPERT_TABLE))
    image_info = _metadata(find_table(source, METADATA_TABLE))

    studies: dict[str, dict] = {}
    for where, row in csv_rows(split_table, required=("dicom_id", "study_id", "subject_id", "split")):
        entry = studies.setdefault(row["study_id"], {"where": where, "subject": row["subject_id"], "split": row["split"], "dicoms": []})
        entry["dicoms"].append(row["dicom_id"])
    for study_id, entry in studies.items():
        try:
            yield _study(source, reports_root, context, study_id, entry, labels, image_info)
        except RecordError as error:
            context.reject(error)


def _study(
    source: Path, reports_root: Path, context: ImportContext, study_id: str, entry: dict, labels: dict, image_info: dict
) -> Study:
    where, subject = entry["where"], entry["subject"]
    split = canonical_split(entry["split"])
    if split is None:
        raise RecordError(where, f"expected split train/validate/test, got {entry['split']!r}")
    if not (subject.isdigit() and study_id.isdigit()):
        raise RecordError(where, f"expected numeric subject_id and study_id, got {subject!r}, {study_id!r}")
    relative = Path("files") / f"p{subject[:2]}" / f"p{subject}" / f"s{study_id}"
    images = [_image(context, source / relative / f"{dicom}.jpg", image_info.get(dicom), where) for dicom in entry["dicoms"]]
    report_file = reports_root / relative.with_suffix(".txt")
    report = {}
    if report_file.is_file():
        sections = report_sections(report_file.read_text(encoding="utf-8", errors="replace"))
        report = {name: sections[name] for name in KEPT_SECTIONS if name in sections}
    elif "reports" in context.options:
        raise RecordError(where, f"expected the report {report_file}")
    return Study(
        id=f"s{study_id}",
        images=images,
        split=split,
        patient_id=f"p{subject}",
        report=report,
        findings=labels.get(study_id, []),
        metadata={"dataset": "mimic-cxr"},
    )


def _image(context: ImportContext, path: Path, info: dict | None, where: str) -> ImageRef:
    if not path.is_file():
        raise RecordError(where, f"expected the image {path}")
    view = (info or {}).get("view") or None
    if info and info.get("width") and info.get("height"):
        return ImageRef(path=context.image_path(path), width=info["width"], height=info["height"], view=view, modality="XR")
    return image_ref(context, path, where, view=view, modality="XR")


def _chexpert(table: Path | None) -> dict[str, list[Finding]]:
    if table is None:
        return {}
    findings: dict[str, list[Finding]] = {}
    for where, row in csv_rows(table, required=("subject_id", "study_id")):
        study_findings = []
        for label, value in row.items():
            if label in ("subject_id", "study_id") or value == "":
                continue
            if value not in CHEXPERT_STATUS:
                raise RecordError(where, f"expected 1, 0, -1 or blank for '{label}', got {value!r}")
            study_findings.append(Finding(label, CHEXPERT_STATUS[value], "chexpert"))  # type: ignore[arg-type]
        findings[row["study_id"]] = study_findings
    return findings


def _metadata(table: Path | None) -> dict[str, dict]:
    if table is None:
        return {}
    info = {}
    for where, row in csv_rows(table, required=("dicom_id",)):
        entry: dict = {"view": row.get("ViewPosition", "")}
        try:
            if row.get("Columns") and row.get("Rows"):
                entry["width"], entry["height"] = int(float(row["Columns"])), int(float(row["Rows"]))
        except ValueError:
            raise RecordError(where, f"expected integer Rows and Columns, got {row['Rows']!r}, {row['Columns']!r}") from None
        info[row["dicom_id"]] = entry
    return info
