"""Pictures of an evaluation: per-label CE F1 bars and the IoU histogram (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from radscribe.evaluate.runner import EvaluationResult

DEFAULT_CE_KEY_PART = "pos-only/macro/14"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_label_f1(result: EvaluationResult, path: Path | str, variant: str = DEFAULT_CE_KEY_PART) -> Path | None:
    """Horizontal bars of per-label F1 (from the macro CE variant); ``None`` when CE was not computed."""
    item = next((v for v in result.values if v.name == "ce-f1" and v.protocol.startswith(variant)), None)
    if item is None or "per_label" not in item.details:
        return None
    labels = list(item.details["per_label"])
    f1 = [item.details["per_label"][label]["f1"] for label in labels]
    support = [int(item.details["per_label"][label]["support"]) for label in labels]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2))
    axes.barh(range(len(labels)), f1, color="#3b7dd8")
    axes.set_yticks(range(len(labels)), [f"{label} (n={n})" for label, n in zip(labels, support)])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(f"Per-label CE F1 ({item.protocol}); macro F1 = {item.value:.3f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)


def plot_iou_histogram(result: EvaluationResult, path: Path | str) -> Path | None:
    """Histogram of the IoU of every reference box with its matched prediction (0 when unmatched)."""
    item = next((v for v in result.values if v.name == "miou"), None)
    if item is None or not item.details.get("gt_ious"):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(item.details["gt_ious"], bins=20, range=(0, 1), color="#d8783b", edgecolor="white")
    for threshold in (0.3, 0.5, 0.7):
        axes.axvline(threshold, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("IoU with matched prediction (0 = missed)")
    axes.set_ylabel("reference boxes")
    axes.set_title(f"Box IoU ({item.protocol}); mean IoU = {item.value:.3f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
