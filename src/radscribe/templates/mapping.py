"""The mapping between label sets (CheXpert's 14 observations, NIH ChestX-ray14's 14 labels) and
the fields of the ``chest-pa`` template, read from ``specs/label-mapping.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from radscribe.templates.spec import SPECS_FOLDER, SPECS_PACKAGE, TemplateSpecError, load_template

NIH_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)


@dataclass(frozen=True)
class FieldMapping:
    field: str                    # "section.field" in the template
    chexpert: str | None          # the CheXpert observation this field is, if any
    nih: tuple[str, ...]          # the NIH labels that fill it
    note: str = ""
    chexpert_closest: str | None = None  # for a field with no CheXpert observation: the nearest one


@dataclass(frozen=True)
class LabelMapping:
    template: str
    fields: tuple[FieldMapping, ...]

    def field_for_nih(self, label: str) -> str:
        """The template field an NIH label fills (``Pleural_Thickening`` and ``Pleural Thickening`` both work)."""
        wanted = _key(label)
        for mapping in self.fields:
            if any(_key(name) == wanted for name in mapping.nih):
                return mapping.field
        raise KeyError(f"unknown NIH label '{label}'; known: {', '.join(NIH_LABELS)}")

    def field_for_chexpert(self, observation: str) -> str:
        wanted = _key(observation)
        for mapping in self.fields:
            if mapping.chexpert is not None and _key(mapping.chexpert) == wanted:
                return mapping.field
        raise KeyError(f"unknown CheXpert observation '{observation}'")

    def chexpert_for_field(self, field_id: str) -> str | None:
        """The CheXpert observation a field counts towards (its own, else the closest one, else None)."""
        for mapping in self.fields:
            if mapping.field == field_id:
                return mapping.chexpert or mapping.chexpert_closest
        raise KeyError(f"field '{field_id}' is not in the label mapping")


def _key(label: str) -> str:
    return " ".join(label.replace("_", " ").split()).casefold()


@lru_cache(maxsize=None)
def load_label_mapping() -> LabelMapping:
    """The shipped CheXpert/NIH -> chest-pa mapping, checked against the template."""
    source = f"{SPECS_FOLDER}/label-mapping.yaml"
    data = yaml.safe_load(resources.files(SPECS_PACKAGE).joinpath(SPECS_FOLDER, "label-mapping.yaml").read_text("utf-8"))
    template = load_template(data["template"])
    fields = []
    for index, entry in enumerate(data.get("fields") or []):
        try:
            template.field(entry["field"])
        except KeyError:
            raise TemplateSpecError(source, f"fields[{index}].field", f"a field of template '{template.name}'", entry.get("field")) from None
        fields.append(
            FieldMapping(
                field=entry["field"],
                chexpert=entry.get("chexpert"),
                nih=tuple(entry.get("nih") or ()),
                note=str(entry.get("note", "")),
                chexpert_closest=entry.get("chexpert_closest"),
            )
        )
    mapping = LabelMapping(template.name, tuple(fields))
    covered = {_key(name) for item in mapping.fields for name in item.nih}
    missing = [label for label in NIH_LABELS if _key(label) not in covered]
    if missing:
        raise TemplateSpecError(source, "fields", "every NIH label mapped", missing)
    return mapping
