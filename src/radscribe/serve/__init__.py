"""The reporting workstation: a FastAPI server and page to draft, review, correct and sign reports.

``create_app(settings, reporter=None)`` is the app (``radscribe serve`` runs it with uvicorn);
:class:`Storage` keeps studies, drafts, the append-only edit log, chained signatures, the audit log
and accounts in SQLite (WAL) and images by content hash; :class:`Accounts` holds users, roles,
sessions and API tokens; :mod:`~radscribe.serve.readerstudy` runs unassisted vs draft-assisted reader
studies (``radscribe study create`` / ``radscribe study analyze``).

Names are imported on first use (PEP 562), so the image decoder's worker process, which imports
:mod:`radscribe.serve.uploads`, does not load the web framework or the model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "app",
    "Accounts": "accounts", "AccountError": "accounts", "Principal": "accounts", "ROLES": "accounts",
    "ModelQueue": "queue", "QueueFull": "queue",
    "StudyDefinitionError": "readerstudy", "StudyPlan": "readerstudy", "analyze_study": "readerstudy",
    "create_study": "readerstudy", "design": "readerstudy", "load_plan": "readerstudy",
    "DocumentError": "reports", "check": "reports", "export_fhir": "reports", "export_json": "reports",
    "export_markdown": "reports", "export_sr": "reports", "from_filled": "reports", "to_filled": "reports",
    "ServeSettings": "settings", "check_bind": "settings", "is_loopback": "settings",
    "Conflict": "storage", "ImageStore": "storage", "NotFound": "storage", "StaleVersion": "storage",
    "Storage": "storage", "TamperedSignature": "storage",
    "Decoder": "uploads", "UploadRejected": "uploads", "check_upload": "uploads", "render_png": "uploads", "sniff": "uploads",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'radscribe.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"radscribe.serve.{_EXPORTS[name]}"), name)
