"""The training loop, top to bottom: set up, then for each curriculum stage draw batches, step, evaluate, save.

What the loop needs from a model is only the radscribe.models contract: ``collate(examples)`` gives a
batch dict, ``model(**batch).loss`` is the token-mean loss over target tokens (labels -100 elsewhere),
``image_embeddings(paths)`` for reference retrieval, ``save_pretrained(folder)`` (and, for
``distributed.strategy: fsdp``, ``save_pretrained(folder, state=...)`` with the gathered weights).

Loss weighting: every micro-batch's mean loss is weighted by its share of the global batch's target
tokens, so one optimiser step minimises the token mean over the whole global batch however it is
split across ranks and accumulation steps (two processes give the step one process gives).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radscribe.data.manifest import atomic_write
from radscribe.train import checkpoint as ckpt
from radscribe.train.augment import ExampleAugmenter
from radscribe.train.config import ModelSection, StageSection, TrainConfig, save_config
from radscribe.tasks import TaskMixture
from radscribe.train.data import (
    Datasets,
    count_loss_tokens,
    load_split,
    micro_batches,
    rank_slice,
    to_device,
)
from radscribe.train.distributed import (
    Dist,
    grad_norm_value,
    gradient_sync,
    load_optimizer_state,
    model_state,
    optimizer_state,
    pick_device,
    setup_distributed,
    share_model,
    whole_model,
)
from radscribe.train.evaluation import evaluate
from radscribe.train.optim import make_optimizer, warmup_cosine
from radscribe.train.reference import Neighbour, ReferenceIndex, with_reference
from radscribe.train.tracking import CURVE_FILE, RunLog, plot_loss_curve

# Tasks whose prompt gets the retrieved reference report in reference stages; grounding and VQA
# prompts ask about one region or question, where a whole report is noise.
REPORT_TASKS = ("report", "structured_report", "grounded_report")
REFERENCE_INDEX_FILE = "reference_index.npz"
REFERENCES_FILE = "references.json"
RESULT_FILE = "result.json"

ModelFactory = Callable[..., torch.nn.Module]
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_model: Path | None
    best_model: Path | None
    best_valid_loss: float | None
    last_valid: dict[str, Any] | None
    stopped_early: bool
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("run_dir", "final_model", "best_model"):
            out[key] = None if out[key] is None else str(out[key])
        return out


def train(
    config: TrainConfig,
    run_dir: Path | str,
    resume: bool = False,
    *,
    model_factory: ModelFactory | None = None,
    datasets: Datasets | None = None,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Train (or continue training, with ``resume``) a model by ``config``, writing everything under ``run_dir``.

    ``model_factory(name, **overrides)`` replaces ``radscribe.models.create_model`` and ``datasets``
    replaces reading ``config.data``'s manifests (bring your own model or data). ``stop_at_step``
    ends the run after that step as a kill would, leaving it resumable (for time-sliced training).
    """
    device = pick_device(config.device)
    ddp = setup_distributed(device, config.distributed.strategy)
    try:
        return _train(config, Path(run_dir), resume, device, ddp, model_factory, datasets, stop_at_step)
    finally:
        ddp.close()


def _train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    device: torch.device,
    ddp: Dist,
    model_factory: ModelFactory | None,
    datasets: Datasets | None,
    stop_at_step: int | None,
) -> TrainResult:
    latest = _prepare_run_dir(config, run_dir, resume, ddp)

    # --- determinism: same seed, same model, same batches, same result ---------------------
    seed_everything(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    use_bf16 = config.optim.precision == "bf16" or (config.optim.precision == "auto" and device.type == "cuda")
    autocast = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)  # noqa: E731

    # --- model and data --------------------------------------------------------------------
    model = build_model(config.model, model_factory).to(device)
    torch.manual_seed(config.seed + 1009 * ddp.rank)  # dropout streams differ between ranks, model init does not
    stages = config.resolved_stages()
    if datasets is None:
        datasets = load_datasets(config, model, stages)
    train_by_task = datasets.train.by_task()
    valid_by_task = datasets.valid.by_task() if datasets.valid is not None else {}
    per_rank, rem = divmod(config.optim.batch_size, ddp.world_size * config.optim.grad_accum)
    if per_rank == 0 or rem:
        raise ValueError(
            f"optim.batch_size ({config.optim.batch_size}) must be a multiple of ranks x optim.grad_accum "
            f"({ddp.world_size} x {config.optim.grad_accum})"
        )
    augmenter = None
    if config.augment is not None and config.augment.enabled:
        from radscribe.grounding import create_codec

        augmenter = ExampleAugmenter(config.augment, create_codec(config.data.codec or model.codec_name))

    # --- where to start: a fresh run, or the latest checkpoint -------------------------------
    saved = ckpt.load_checkpoint(latest) if latest is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])  # the full weights, before the model is shared across ranks
    train_model = share_model(model, ddp)
    log = RunLog(run_dir, config.logging, enabled=ddp.is_main)
    run = _RunState()
    if saved is not None:
        run = _RunState(saved["position"], saved["early_stopping"], saved["stage_summaries"], saved.get("last_valid"))
        log.truncate_after(run.position["step"])
    step = run.position["step"]
    progress = StepProgress(sum(s.steps for s in stages), step, config.logging.log_every, enabled=ddp.is_main)
    interrupted = False

    for stage_index, stage in enumerate(stages):
        if stage_index < run.position["stage"]:
            continue
        resuming_stage = saved is not None and stage_index == run.position["stage"] and run.position["stage_step"] > 0
        stage_step = run.position["stage_step"] if stage_index == run.position["stage"] else 0

        references = prepare_references(model, datasets, run_dir, ddp) if stage.reference else {}
        train_pool = stage_pool(train_by_task, stage, references)
        valid_pool = stage_pool(valid_by_task, stage, references)
        weights = {task: weight for task, weight in stage.tasks.items() if task in train_pool}
        mixture = TaskMixture(train_pool, weights, config.data.temperature, seed=config.seed + stage_index)
        optimizer = make_optimizer(model, config.optim, stage.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(stage.steps, config.optim.warmup_steps, config.optim.min_lr_ratio)
        )
        if resuming_stage:
            load_optimizer_state(model, optimizer, saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            mixture.load_state_dict(saved["mixture"])
        if saved is not None and stage_index == run.position["stage"]:
            ckpt.set_rng_state(saved["rng"][ddp.rank] if len(saved["rng"]) == ddp.world_size else saved["rng"][0])
        if stage_step == 0:
            run.early = {"best": None, "bad_evals": 0}  # validation prompts change between stages: losses do not compare
            log.write({"kind": "stage", "step": step, "stage": stage.name, "stage_kind": stage.kind,
                       "tasks": mixture.probabilities, "reference": stage.reference})

        stage_done = stopped_early = False
        while not stage_done:
            global_batch = [mixture.sample() for _ in range(config.optim.batch_size)]
            if augmenter is not None:  # seeded by (step, slot): a resumed run augments exactly as before
                global_batch = [augmenter(example, config.seed * 1_000_003 + step * 1009 + slot) for slot, example in enumerate(global_batch)]
            record = train_step(model, train_model, global_batch, config, ddp, device, autocast, optimizer, scheduler)
            step += 1
            stage_step += 1
            record.update(step=step, stage=stage.name)
            if step % config.logging.log_every == 0:
                log.write(record)
            progress.update(step, stage.name, record)

            stage_done = stage_step >= stage.steps
            if valid_pool and (step % config.eval.every == 0 or stage_done):
                stopped_early = _validate(model, valid_pool, config, device, autocast, ddp, run, log, run_dir, step, stage.name)
                stage_done = stage_done or stopped_early
            if stage_done:
                run.stage_summaries.append({"stage": stage.name, "steps": stage_step, "end_step": step,
                                            "stopped_early": stopped_early, "valid": run.last_valid})
            if step % config.checkpoint.every == 0 or stage_done or step == stop_at_step:
                # the position is where the next step starts
                run.position = ({"stage": stage_index + 1, "stage_step": 0, "step": step} if stage_done
                                else {"stage": stage_index, "stage_step": stage_step, "step": step})
                _checkpoint(model, optimizer, scheduler, mixture, run, config, ddp, run_dir, step)
            if step == stop_at_step:
                interrupted = True
                break
        if interrupted:
            break
    progress.close()
    return _finish(model, run, log, ddp, run_dir, step, interrupted)


@dataclass
class _RunState:
    """What a checkpoint restores besides weights and optimiser: where the run is, and its validation record."""

    position: dict[str, int] = field(default_factory=lambda: {"stage": 0, "stage_step": 0, "step": 0})
    early: dict[str, Any] = field(default_factory=lambda: {"best": None, "bad_evals": 0})
    stage_summaries: list[dict[str, Any]] = field(default_factory=list)
    last_valid: dict[str, Any] | None = None


def _prepare_run_dir(config: TrainConfig, run_dir: Path, resume: bool, ddp: Dist) -> Path | None:
    """The latest checkpoint to resume from (None: a fresh run); the recipe is saved into the run folder."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume {run_dir}) or choose another run folder")
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        if latest is None:  # a fresh run: drop what an attempt killed before its first checkpoint left behind
            clear_outputs(run_dir)
    ddp.barrier()
    return latest


def train_step(
    model: Any, train_model: Any, global_batch: Sequence[Any], config: TrainConfig, ddp: Dist, device: torch.device,
    autocast: Callable[[], Any], optimizer: torch.optim.Optimizer, scheduler: Any,
) -> dict[str, Any]:
    """One optimiser step on one global batch (this rank's share, in length-grouped micro-batches); its record.

    Each micro-batch's mean loss is weighted by its share of the global batch's target tokens, so the
    step minimises the token mean over the whole global batch however it is split.
    """
    started = time.perf_counter()
    model.train()
    micro = micro_batches(rank_slice(global_batch, ddp.rank, ddp.world_size), config.optim.grad_accum)
    batches = [to_device(model.collate(examples), device) for examples in micro]
    tokens = [count_loss_tokens(batch) for batch in batches]
    global_tokens = ddp.all_reduce_sum(torch.tensor(float(sum(tokens)), dtype=torch.float64)).item()
    if global_tokens == 0:
        raise ValueError(
            "no target token is left in the batch; the prompts fill the model's max_length "
            "(shorten stages[].reference_max_chars or raise model.overrides.max_length)"
        )
    loss_sum = torch.zeros((), dtype=torch.float64)
    task_sums: dict[str, list[float]] = {}
    for index, (batch, examples, count) in enumerate(zip(batches, micro, tokens)):
        syncing = index == len(batches) - 1 or not ddp.enabled
        with gradient_sync(train_model, syncing):
            with autocast():
                output = train_model(**batch)
            # DDP and FSDP average gradients over ranks, hence the world-size factor
            (output.loss.float() * (count * ddp.world_size / global_tokens)).backward()
        loss_sum += output.loss.detach().double().cpu() * count
        _add_task_losses(task_sums, examples, output, batch)
    grad_norm = None
    if config.optim.grad_clip is not None:
        grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"kind": "train", "loss": ddp.all_reduce_sum(loss_sum).item() / global_tokens, "lr": lr,
            "task_loss": _reduce_task_losses(task_sums, ddp), "grad_norm": grad_norm,
            "examples_per_s": config.optim.batch_size / (time.perf_counter() - started)}


def _validate(
    model: Any, valid_pool: dict[str, list[Any]], config: TrainConfig, device: torch.device, autocast: Callable[[], Any],
    ddp: Dist, run: _RunState, log: RunLog, run_dir: Path, step: int, stage: str,
) -> bool:
    """Validation loss (and generation metrics), the best model so far, early stopping; True to stop the stage."""
    with torch.random.fork_rng(devices=[]):  # evaluation must not move the training RNG
        run.last_valid = evaluate(model, valid_pool, config.eval, config.optim.batch_size, device, autocast, ddp)
    run.last_valid.update(kind="valid", step=step, stage=stage)
    log.write(run.last_valid)
    logger.info("step %d validation loss %s %s", step, _format(run.last_valid["loss"]),
                " ".join(f"{task} {value:.4f}" for task, value in (run.last_valid.get("task_loss") or {}).items()))
    if ddp.is_main:
        plot_loss_curve(log.records(), run_dir / CURVE_FILE)
    loss = run.last_valid["loss"]
    if loss is not None and (run.early["best"] is None or loss < run.early["best"] - config.early_stopping.min_delta):
        run.early = {"best": loss, "bad_evals": 0}
        _save_model(model, run_dir / "best", ddp)
    else:
        run.early["bad_evals"] += 1
    return bool(config.early_stopping.patience and run.early["bad_evals"] >= config.early_stopping.patience)


def _checkpoint(model: Any, optimizer: Any, scheduler: Any, mixture: TaskMixture, run: _RunState, config: TrainConfig,
                ddp: Dist, run_dir: Path, step: int) -> None:
    rng_states = ddp.gather_objects(ckpt.rng_state())
    weights, optimizer_moments = model_state(model), optimizer_state(model, optimizer)  # sharded: gathered onto rank 0
    if ddp.is_main:
        ckpt.save_checkpoint(run_dir, step, {
            "model": weights, "optimizer": optimizer_moments,
            "scheduler": scheduler.state_dict(), "mixture": mixture.state_dict(), "rng": rng_states,
            "position": run.position, "early_stopping": run.early, "stage_summaries": run.stage_summaries,
            "last_valid": run.last_valid,
        }, keep_last=config.checkpoint.keep_last)
    ddp.barrier()


def _finish(model: Any, run: _RunState, log: RunLog, ddp: Dist, run_dir: Path, step: int, interrupted: bool) -> TrainResult:
    """The final model (unless the run was stopped at a step), result.json and the loss curve."""
    final = None
    if not interrupted:
        final = run_dir / "final"
        _save_model(model, final, ddp)
    best = run_dir / "best" if (run_dir / "best").exists() else None
    stopped_early = bool(run.stage_summaries and run.stage_summaries[-1]["stopped_early"])
    result = TrainResult(run_dir, step, final, best, run.early["best"], run.last_valid, stopped_early, run.stage_summaries)
    if ddp.is_main and not interrupted:
        if log.records():
            plot_loss_curve(log.records(), run_dir / CURVE_FILE)
        with atomic_write(run_dir / RESULT_FILE) as handle:
            json.dump(result.to_dict(), handle, indent=2)
    log.close()
    ddp.barrier()
    return result


def _save_model(model: Any, target: Path, ddp: Dist) -> None:
    """The model's release folder, written by rank 0 (a sharded model's weights are gathered first: every rank calls this)."""
    state = model_state(model) if ddp.sharded else None
    if ddp.is_main:
        ckpt.save_model_dir(model, target, state)


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(section: ModelSection, factory: ModelFactory | None = None) -> torch.nn.Module:
    if factory is None:
        from radscribe.models import create_model as factory
    overrides = dict(section.overrides)
    if section.memory_slots is not None:
        overrides["memory_slots"] = section.memory_slots
    model = factory(section.name, **overrides)
    if section.freeze_vision:
        model.freeze_vision()
    if section.lora is not None:
        model.add_lora(**section.lora)
    return model


def load_datasets(config: TrainConfig, model: Any, stages: Sequence[StageSection]) -> Datasets:
    from radscribe.grounding import create_codec

    if config.data.train is None:
        raise ValueError("data.train: a training manifest is required (set it in the recipe or with --set data.train=PATH)")
    codec = create_codec(config.data.codec or model.codec_name)
    tasks = sorted({task for stage in stages for task in stage.tasks})
    data = config.data
    options = {task: value for task, value in data.task_options.items() if task in tasks}
    train = load_split(data.train, tasks, codec, data.train_split, data.max_train_studies, options)
    valid = load_split(data.valid, tasks, codec, data.valid_split, data.max_valid_studies, options) if data.valid else None
    return Datasets(train=train, valid=valid)


def prepare_references(model: Any, datasets: Datasets, run_dir: Path, ddp: Dist) -> dict[str, Neighbour]:
    """Nearest training report for every study, computed once (at the first reference stage) and kept in the run folder.

    Later stages and resumed runs read the saved assignment, so retrieval uses the model as it was
    when the reference stage began, whatever happens afterwards.
    """
    path = run_dir / REFERENCES_FILE
    if not path.exists():
        with whole_model(model):  # a sharded model runs whole on rank 0 alone
            if ddp.is_main:
                _assign_references(model, datasets, run_dir, path)
        ddp.barrier()
    return {sid: Neighbour(**value) for sid, value in json.loads(path.read_text(encoding="utf-8")).items()}


def _assign_references(model: Any, datasets: Datasets, run_dir: Path, path: Path) -> None:
    was_training = model.training
    model.eval()
    index = ReferenceIndex.build(model, datasets.train.studies)
    index.save(run_dir / REFERENCE_INDEX_FILE)
    studies = datasets.train.studies + (datasets.valid.studies if datasets.valid else [])
    assigned = index.assign(model, studies)
    model.train(was_training)
    with atomic_write(path) as handle:
        json.dump({sid: n.__dict__ for sid, n in assigned.items()}, handle)


def stage_pool(by_task: dict[str, list[Any]], stage: StageSection, references: dict[str, Neighbour]) -> dict[str, list[Any]]:
    """The stage's tasks, with reference reports put into report prompts when the stage asks for them."""
    import dataclasses

    pool = {}
    for task in stage.tasks:
        examples = by_task.get(task, [])
        if references and task in REPORT_TASKS:
            examples = [
                dataclasses.replace(e, prompt=with_reference(e.prompt, references[e.study_id].report, stage.reference_max_chars))
                if e.study_id in references else e
                for e in examples
            ]
        if examples:
            pool[task] = examples
    return pool


def per_example_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """(sum of token losses, token count) per example, from next-token logits aligned with the labels."""
    if logits is None or logits.shape[:2] != labels.shape:
        return None
    shifted_logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).view(targets.shape)
    return torch.stack([losses.sum(dim=1), (targets != -100).sum(dim=1).to(losses.dtype)], dim=1)


def _add_task_losses(sums: dict[str, list[float]], examples: Sequence[Any], output: Any, batch: dict[str, Any]) -> None:
    with torch.no_grad():
        per_example = per_example_losses(getattr(output, "logits", None), batch["labels"])
    if per_example is None:
        return
    for example, (total, count) in zip(examples, per_example.tolist()):
        entry = sums.setdefault(example.task, [0.0, 0.0])
        entry[0] += total
        entry[1] += count


def _reduce_task_losses(sums: dict[str, list[float]], ddp: Dist) -> dict[str, float]:
    if ddp.enabled:
        merged: dict[str, list[float]] = {}
        for part in ddp.gather_objects(sums):
            for task, (total, count) in part.items():
                entry = merged.setdefault(task, [0.0, 0.0])
                entry[0] += total
                entry[1] += count
        sums = merged
    return {task: total / count for task, (total, count) in sorted(sums.items()) if count}


def clear_outputs(run_dir: Path) -> None:
    """Remove the outputs of an earlier attempt at this run folder that never reached a checkpoint."""
    import shutil

    for name in ("metrics.jsonl", CURVE_FILE, RESULT_FILE, REFERENCES_FILE, REFERENCE_INDEX_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("best", "final"):
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)


class StepProgress:
    """Progress over optimiser steps (main rank only): a rich bar on a terminal, else a plain log line
    every ``every`` steps, so a batch job's log shows the loss as the run goes."""

    def __init__(self, total: int, done: int, every: int, enabled: bool):
        self.total, self.every, self._bar = total, every, None
        self.enabled = enabled
        if not enabled or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True))
        self._task = self._bar.add_task("training", total=total, completed=done)
        self._bar.start()

    def update(self, step: int, stage: str, record: dict[str, Any]) -> None:
        description = f"{stage} loss {record['loss']:.4f} lr {record['lr']:.2e}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=description)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            logger.info("step %d/%d %s, %.2f examples/s", step, self.total, description, record["examples_per_s"])

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
