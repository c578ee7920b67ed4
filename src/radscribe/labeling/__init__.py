"""Report labeling: chexpert-lite, an offline approximation of the CheXpert labeler.

Phrase lists from the CheXpert labeler (Stanford ML Group, MIT licence) ship as data in
``rules/``; negation and uncertainty detection is radscribe's own (``rules/cues.yaml``).
"""

from radscribe.labeling.labeler import (
    LABELER_NAME,
    ChexpertLite,
    Mention,
    ReportLabels,
    default_labeler,
    label_report,
    label_reports,
)
from radscribe.labeling.rules import CHEXPERT_OBSERVATIONS, RULES_DIR, RulesError
from radscribe.labeling.sentences import Sentence, split_sentences
from radscribe.labeling.structure import (
    SourceSentence,
    StructuredReport,
    StructureSummary,
    structure_manifest,
    structure_report,
    structure_study,
)

__all__ = [
    "CHEXPERT_OBSERVATIONS",
    "LABELER_NAME",
    "RULES_DIR",
    "ChexpertLite",
    "Mention",
    "ReportLabels",
    "RulesError",
    "Sentence",
    "SourceSentence",
    "StructureSummary",
    "StructuredReport",
    "default_labeler",
    "label_report",
    "label_reports",
    "split_sentences",
    "structure_manifest",
    "structure_report",
    "structure_study",
]
