"""Importers: each turns one source format into canonical studies, found by name in a registry.

``import_dataset("cadma", src, out)`` runs one; ``IMPORTERS`` lists them. An importer is a function
``(source: Path, context: ImportContext) -> Iterator[Study]`` registered with :func:`register` by its
module; importing this package imports every importer module, which completes the registry.
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

from radscribe.data.importers import (  # noqa: E402, F401  (each module registers its importers)
    cadma,
    generic,
    iu_xray,
    mimic_cxr,
    nih_cxr14,
    slake,
    vindr_spinexr,
    vqa_rad,
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
