"""`radscribe evaluate`: score a predictions file against a reference manifest (thin over evaluate.runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radscribe.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("evaluate")
    def evaluate_command(
        predictions: Optional[Path] = typer.Argument(None, help="Predictions JSONL ({id, report, template?, boxes?, answers?, labels?} per line; from `radscribe predict`)."),
        refs: Path = typer.Option(..., "--refs", help="Reference manifest (JSONL of studies)."),
        metrics: str = typer.Option("nlg,ce", "--metrics", help="Comma-separated families: nlg, ce, structured, grounding, vqa, judge, spine, chest."),
        split: Optional[str] = typer.Option(None, "--split", help="Score only the reference studies of this split (e.g. valid)."),
        baselines: Optional[str] = typer.Option(None, "--baselines", help="Image-blind baselines learned from --train-split, scored beside the model with paired differences: 'all' or comma-separated names (spine: majority, mean-spine; chest: majority, prior-positive, prior-sampled; vqa: majority, question-prior, nearest-question, question-classifier)."),
        baselines_only: bool = typer.Option(False, "--baselines-only", help="Score only the baselines (no predictions file; implies --baselines all unless given)."),
        train_split: str = typer.Option("train", "--train-split", help="The split of --refs the baselines learn from."),
        protocol: str = typer.Option("r2gen", "--protocol", help="NLG text protocol: r2gen, coco-ptb, whitespace."),
        bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95% CIs (0 = off)."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        out: Path = typer.Option(Path("evaluation"), "--out", help="Output folder."),
        compare: Optional[Path] = typer.Option(None, "--compare", help="Second predictions file: paired bootstrap of the difference."),
        labeler: str = typer.Option("chexpert-lite", "--labeler", help="CE labeler for report texts: chexpert-lite or chexbert."),
        ref_labels: Optional[Path] = typer.Option(None, "--ref-labels", help="CheXpert label CSV of the references (trusted path)."),
        pred_labels: Optional[Path] = typer.Option(None, "--pred-labels", help="CheXpert label CSV of the predictions."),
        labels_name: str = typer.Option("csv", "--labels-name", help="Name of the labeler that made the CSVs, for the protocol tag (e.g. chexpert-labeler)."),
        chexbert_weights: Optional[Path] = typer.Option(None, "--chexbert-weights", help="Local chexbert.pth (never downloaded)."),
        chexbert_tokenizer: Optional[Path] = typer.Option(None, "--chexbert-tokenizer", help="Local bert-base-uncased tokenizer folder."),
        vqa_mode: str = typer.Option("strict", "--vqa-mode", help="strict or llava-med-compat."),
        ignore_box_labels: bool = typer.Option(False, "--ignore-box-labels", help="Match boxes regardless of their labels."),
        phrase_similarity: str = typer.Option("label", "--phrase-similarity", help="G-IoU phrase similarity: label or minilm."),
        judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint for LLM-as-judge (off by default)."),
        judge_model: str = typer.Option("default", "--judge-model", help="Model name sent to the judge endpoint."),
        judge_prompts: str = typer.Option("llmscore", "--judge-prompts", help="Comma-separated judge prompts: llmscore, green."),
        judge_timeout: float = typer.Option(60.0, "--judge-timeout", help="Seconds per judge request."),
    ) -> None:
        """Score PREDICTIONS against --refs: metrics.json, metrics.md, per_sample.csv and plots in --out."""
        from radscribe.data.manifest import ManifestError
        from radscribe.evaluate.base import MetricUnavailable
        from radscribe.evaluate.clinical import LabelFileError
        from radscribe.evaluate.predictions import PredictionError
        from radscribe.evaluate.runner import EvaluationOptions, evaluate, write_result

        families = [m.strip() for m in metrics.split(",") if m.strip()]
        if baselines_only and predictions is not None:
            fail("--baselines-only scores no predictions file: drop PREDICTIONS or --baselines-only")
        if predictions is None and not baselines_only:
            fail("give a PREDICTIONS file (from `radscribe predict`), or --baselines-only")
        chosen_baselines: list[str] | bool = []
        if baselines_only and baselines is None or baselines == "all":
            chosen_baselines = True
        elif baselines:
            chosen_baselines = [b.strip() for b in baselines.split(",") if b.strip()]
        judge = None
        if judge_url:
            from radscribe.evaluate.judge import JudgeClient

            judge = JudgeClient(judge_url, model=judge_model, timeout=judge_timeout)
            if "judge" not in families:
                families.append("judge")
        options = EvaluationOptions(
            labeler=labeler, ref_labels=ref_labels, pred_labels=pred_labels, labels_name=labels_name,
            chexbert_weights=chexbert_weights, chexbert_tokenizer=chexbert_tokenizer, vqa_mode=vqa_mode,
            match_box_labels=not ignore_box_labels, phrase_similarity=phrase_similarity, judge=judge,
            judge_prompts=tuple(p.strip() for p in judge_prompts.split(",") if p.strip()),
        )
        try:
            result = evaluate(
                predictions, refs, families, protocol, n_resamples=bootstrap, seed=seed, compare=compare, options=options,
                on_family=lambda family: console.print(f"[dim]scoring {family}...[/]"),
                split=split, baselines=chosen_baselines, train_split=train_split,
            )
        except (FileNotFoundError, ManifestError, PredictionError, LabelFileError, MetricUnavailable, ValueError, KeyError) as error:
            fail(str(error))
        except RuntimeError as error:  # JudgeError and friends: a clear message, no traceback
            fail(str(error))
        written = write_result(result, out)
        for key, reason in result.unavailable.items():
            console.print(f"[yellow]not computed[/] {key}: {reason}")
        if result.missing:
            console.print(f"[yellow]{len(result.missing)} reference studies had no prediction (scored as empty)[/]")
        for value in result.values:
            if value.name in ("bleu4", "rouge_l", "cider_d") or value.key.startswith("ce-f1@pos-only/micro/14") or value.name in (
                "template-conformance", "miou", "g-iou", "closed-accuracy", "open-recall", "llmscore", "green",
                "vertebra-f1", "vertebra-f1-iou0.7", "severity-accuracy", "angle-mae", "column-iou", "report-consistency", "macro-f1",
            ):
                ci = f" [{value.ci_low:.4f}, {value.ci_high:.4f}]" if value.ci_low is not None else ""
                who = "" if value.system == "model" else f"{value.system} "
                console.print(f"{who}{value.key}: {value.value:.4f}{ci}", highlight=False)
        console.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
