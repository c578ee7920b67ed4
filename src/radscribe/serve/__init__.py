"""The reporting workstation: a FastAPI server and page to draft, review, correct and sign reports.

``create_app(settings, reporter=None)`` is the app (``radscribe serve`` runs it with uvicorn);
:class:`Storage` keeps studies, drafts, the append-only edit log and signatures in SQLite (WAL) and
images by content hash; :mod:`~radscribe.serve.readerstudy` runs unassisted vs draft-assisted reader
studies (``radscribe study create`` / ``radscribe study analyze``).
"""

from radscribe.serve.app import create_app
from radscribe.serve.queue import ModelQueue, QueueFull
from radscribe.serve.readerstudy import StudyDefinitionError, StudyPlan, analyze_study, create_study, design, load_plan
from radscribe.serve.reports import DocumentError, check, export_fhir, export_json, export_markdown, from_filled, to_filled
from radscribe.serve.settings import ServeSettings, check_bind, is_loopback
from radscribe.serve.storage import Conflict, ImageStore, NotFound, Storage
from radscribe.serve.uploads import UploadRejected, check_upload, render_png, sniff

__all__ = [
    "Conflict",
    "DocumentError",
    "ImageStore",
    "ModelQueue",
    "NotFound",
    "QueueFull",
    "ServeSettings",
    "Storage",
    "StudyDefinitionError",
    "StudyPlan",
    "UploadRejected",
    "analyze_study",
    "check",
    "check_bind",
    "check_upload",
    "create_app",
    "create_study",
    "design",
    "export_fhir",
    "export_json",
    "export_markdown",
    "from_filled",
    "is_loopback",
    "load_plan",
    "render_png",
    "sniff",
    "to_filled",
]
