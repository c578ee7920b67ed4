"""Report labeling: chexpert-lite, an offline approximation of the CheXpert labeler.

Phrase lists from the CheXpert labeler (Stanford ML Group, MIT licence) ship as data in
``rules/``; negation and uncertainty detection is radscribe's own (``rules/cues.yaml``).
"""

from radscribe.labeling.labeler import (
    LABELER_NAME,
    ChexpertLite,
    Mention,
    ReportLabels,
    cue_starts,
    default_labeler,
    label_report,
    label_reports,
    scope_statuses,
)
from radscribe.labeling.rules import CHEXPERT_OBSERVATIONS, RULES_DIR, CueRules, RulesError, load_cues
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
    "CueRules",
    "Mention",
    "ReportLabels",
    "RulesError",
    "Sentence",
    "SourceSentence",
    "StructureSummary",
    "StructuredReport",
    "cue_starts",
    "default_labeler",
    "label_report",
    "label_reports",
    "load_cues",
    "scope_statuses",
    "split_sentences",
    "structure_manifest",
    "structure_report",
    "structure_study",
]
