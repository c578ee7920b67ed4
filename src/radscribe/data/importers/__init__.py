"""Importers: each turns one source format into canonical studies, found by name in a registry.

``import_dataset("cadma", src, out)`` runs one; ``IMPORTERS`` lists them. An importer is a function
``(source: Path, context: ImportContext) -> Iterator[Study]`` registered with :func:`register`.
"""

from radscribe.data.importers.base import (
    IMPORTERS,
    ImportContext,
    ImportSummary,
    RecordError,
    get_importer,
    import_dataset,
    register,
)

__all__ = [
    "IMPORTERS",
    "ImportContext",
    "ImportSummary",
    "RecordError",
    "get_importer",
    "import_dataset",
    "register",
]
