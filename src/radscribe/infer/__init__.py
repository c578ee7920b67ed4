"""Inference: Region-Focused Inference, template-constrained decoding, grounded structured reports.

``Reporter(model, template=None, rfi=RFIConfig() | None, constrained=True, codec=None)`` with
``.report(images) -> list[ReportResult | ReportError]`` and ``.ask(image, question)``;
``write_result`` writes report.md / report.json / overlay.png (/ fhir.json); ``locate_region`` is
RFI on its own. Constrained decoding in three layers: ``template_grammar`` compiles a template into
a character grammar, ``TokenConstraint`` / ``RowCursor`` lift it to the tokenizer's tokens, and
``generate_constrained`` (our own loop: fixed text fed in whole spans, batched rows) or any
RadscribeVLM's ``generate`` with ``constrained_generate_kwargs`` (a transformers logits processor) runs it.
"""

from radscribe.infer.constraint import RowCursor, TokenConstraint
from radscribe.infer.hf_generate import ConstrainedLogitsProcessor, constrained_generate_kwargs
from radscribe.infer.template_grammar import ConstraintLimits, grounding_grammar, template_grammar
from radscribe.infer.tokens import Vocabulary
from radscribe.infer.decoding import DecodeStats, DraftMemory, generate_constrained
from radscribe.infer.features import FeatureFn, FeatureGrid, as_feature_fn, dinov2_features, feature_fn, model_features
from radscribe.infer.fhir import diagnostic_report
from radscribe.infer.inputs import IMAGE_SUFFIXES, collect_images
from radscribe.infer.loading import ModelNotAvailable, describe_model, load_model, model_version
from radscribe.infer.outputs import result_markdown, write_result
from radscribe.infer.reporter import DEFAULT_GROUNDING, DEFAULT_TEMPLATE, Reporter, ReportError, ReportResult
from radscribe.infer.rfi import RegionCrop, RFIConfig, locate_region, principal_scores, save_rfi_overlay

__all__ = [
    "DEFAULT_GROUNDING",
    "DEFAULT_TEMPLATE",
    "IMAGE_SUFFIXES",
    "ConstrainedLogitsProcessor",
    "ConstraintLimits",
    "DecodeStats",
    "DraftMemory",
    "FeatureFn",
    "FeatureGrid",
    "ModelNotAvailable",
    "RFIConfig",
    "RegionCrop",
    "ReportError",
    "ReportResult",
    "Reporter",
    "RowCursor",
    "TokenConstraint",
    "Vocabulary",
    "as_feature_fn",
    "collect_images",
    "constrained_generate_kwargs",
    "describe_model",
    "diagnostic_report",
    "dinov2_features",
    "feature_fn",
    "generate_constrained",
    "grounding_grammar",
    "load_model",
    "locate_region",
    "model_features",
    "model_version",
    "principal_scores",
    "result_markdown",
    "save_rfi_overlay",
    "template_grammar",
    "write_result",
]
