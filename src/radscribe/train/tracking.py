"""Run records: ``metrics.jsonl`` always, TensorBoard / MLflow when installed, and the loss-curve PNG.

Each record is one JSON line ``{"kind": "train" | "valid" | "stage", "step": ..., ...}``. On resume
the records after the checkpoint's step are dropped, since the resumed run writes them again.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from radscribe.data.manifest import atomic_write
from radscribe.train.config import LoggingSection

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss_curve.png"


class RunLog:
    def __init__(self, run_dir: Path, settings: LoggingSection, enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tensorboard = None
        self._mlflow = None
        if not enabled:
            return
        if _wanted(settings.tensorboard, "tensorboard", "logging.tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if _wanted(settings.mlflow, "mlflow", "logging.mlflow"):
            import mlflow

            mlflow.start_run(run_name=self.run_dir.name)
            self._mlflow = mlflow

    def truncate_after(self, step: int) -> None:
        """Keep only what was recorded up to a checkpoint at ``step`` (used when resuming from it).

        A ``stage`` record at ``step`` was written after that checkpoint (it opens the next stage),
        so it goes too: the resumed run writes it again.
        """
        if not self.enabled or not self.path.exists():
            return

        def before(line: str) -> bool:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                return False
            return record["step"] < step or (record["step"] == step and record["kind"] != "stage")

        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip() and before(line)]
        with atomic_write(self.path) as handle:
            handle.writelines(line + "\n" for line in kept)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        scalars = {k: v for k, v in _flatten(record).items() if isinstance(v, (int, float)) and k != "step"}
        if self._tensorboard is not None:
            for key, value in scalars.items():
                self._tensorboard.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"{record['kind']}.{k}": v for k, v in scalars.items()}, step=record["step"])

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._mlflow is not None:
            self._mlflow.end_run()


def _wanted(choice: str, module: str, key: str) -> bool:
    installed = importlib.util.find_spec(module) is not None
    if choice == "on" and not installed:
        raise RuntimeError(f"{key}: on, but the '{module}' package is not installed (pip install {module}, or set it to auto)")
    return choice == "on" or (choice == "auto" and installed)


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def plot_loss_curve(records: list[dict[str, Any]], path: Path) -> None:
    """Training loss per step (with a running mean), validation loss per evaluation, stage boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train" and math.isfinite(r["loss"])]
    valid = [(r["step"], r["loss"]) for r in records if r["kind"] == "valid" and r.get("loss") is not None]
    stages = [(r["step"], r["stage"]) for r in records if r["kind"] == "stage"]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        steps, losses = zip(*train)
        axis.plot(steps, losses, color="#9ab", linewidth=0.8, label="train (per step)")
        window = max(1, len(losses) // 20)
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
        axis.plot(steps, smooth, color="#1f5f8b", linewidth=1.6, label=f"train (mean of {window})")
    if valid:
        steps, losses = zip(*valid)
        axis.plot(steps, losses, "o-", color="#c0392b", linewidth=1.6, label="validation")
    for step, name in stages:
        axis.axvline(step, color="#888", linestyle=":", linewidth=1)
        axis.text(step, 1.0, f" {name}", transform=axis.get_xaxis_transform(), va="top", fontsize=8, color="#555")
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("loss (token mean)")
    axis.grid(alpha=0.3)
    if train or valid:
        axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)
