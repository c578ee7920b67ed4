"""The training loop, top to bottom: set up, then for each curriculum stage draw batches, step, evaluate, save.

What the loop needs from a model is only the radscribe.models contract: ``collate(examples)`` gives a
batch dict, ``model(**batch).loss`` is the token-mean loss over target tokens (labels -100 elsewhere),
``image_embeddings(paths)`` for reference retrieval, ``save_pretrained(folder)``.

Loss weighting: every micro-batch's mean loss is weighted by its share of the global batch's target
tokens, so one optimiser step minimises the token mean over the whole global batch however it is
split across ranks and accumulation steps (two processes give the step one process gives).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radscribe.data.manifest import atomic_write
from radscribe.train import checkpoint as ckpt
from radscribe.train.config import ModelSection, StageSection, TrainConfig, save_config
from radscribe.train.data import (
    Datasets,
    MixtureSampler,
    count_loss_tokens,
    load_split,
    micro_batches,
    rank_slice,
    to_device,
)
from radscribe.train.distributed import Dist, pick_device, setup_distributed
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
    ddp = setup_distributed(device)
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
    # --- run folder and recipe -------------------------------------------------------------
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoints; resume it (--resume {run_dir}) or choose another run folder")
    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        if latest is None:  # a fresh run: drop what an attempt killed before its first checkpoint left behind
            clear_outputs(run_dir)
    ddp.barrier()

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

    # --- where to start: a fresh run, or the latest checkpoint -------------------------------
    state = ckpt.load_checkpoint(latest) if latest is not None else None
    log = RunLog(run_dir, config.logging, enabled=ddp.is_main)
    position = {"stage": 0, "stage_step": 0, "step": 0}
    early = {"best": None, "bad_evals": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        position, early = state["position"], state["early_stopping"]
        log.truncate_after(position["step"])
    step = position["step"]
    stage_summaries: list[dict[str, Any]] = state["stage_summaries"] if state else []
    last_valid: dict[str, Any] | None = state.get("last_valid") if state else None
    stopped_early = interrupted = False
    # backbones carry parameters a given batch does not reach (a vision pooling head, the memory adapter
    # of a text-only task), which DDP must be told to expect
    train_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if ddp.enabled else model
    progress = StepProgress(sum(s.steps for s in stages), step, enabled=ddp.is_main)

    for stage_index, stage in enumerate(stages):
        if stage_index < position["stage"]:
            continue
        resuming_stage = state is not None and stage_index == position["stage"] and position["stage_step"] > 0
        stage_step = position["stage_step"] if stage_index == position["stage"] else 0

        references = prepare_references(model, datasets, run_dir, ddp) if stage.reference else {}
        train_pool = stage_pool(train_by_task, stage, references)
        valid_pool = stage_pool(valid_by_task, stage, references)
        mixture = MixtureSampler(train_pool, stage.tasks, config.data.temperature, seed=config.seed + stage_index)
        optimizer = make_optimizer(model, config.optim, stage.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(stage.steps, config.optim.warmup_steps, config.optim.min_lr_ratio)
        )
        if resuming_stage:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            mixture.load_state_dict(state["mixture"])
        if state is not None and stage_index == position["stage"]:
            ckpt.set_rng_state(state["rng"][ddp.rank] if len(state["rng"]) == ddp.world_size else state["rng"][0])
        if stage_step == 0:
            early = {"best": None, "bad_evals": 0}  # validation prompts change between stages: losses do not compare
            log.write({"kind": "stage", "step": step, "stage": stage.name, "stage_kind": stage.kind,
                       "tasks": mixture.probabilities, "reference": stage.reference})

        stage_done = stopped_early = False
        while not stage_done:
            # --- one optimiser step on one global batch -----------------------------------
            started = time.perf_counter()
            model.train()
            global_batch = mixture.sample(config.optim.batch_size)
            micro = micro_batches(rank_slice(global_batch, ddp.rank, ddp.world_size), config.optim.grad_accum)
            batches = [to_device(model.collate(examples), device) for examples in micro]
            tokens = [count_loss_tokens(batch) for batch in batches]
            global_tokens = ddp.all_reduce_sum(torch.tensor(float(sum(tokens)), dtype=torch.float64)).item()
            if global_tokens == 0:
                raise ValueError(
                    f"step {step + 1} (stage '{stage.name}'): no target token is left in the batch; the prompts fill the "
                    "model's max_length (shorten stages[].reference_max_chars or raise model.overrides.max_length)"
                )
            loss_sum = torch.zeros((), dtype=torch.float64)
            task_sums: dict[str, list[float]] = {}
            for index, (batch, examples, count) in enumerate(zip(batches, micro, tokens)):
                syncing = index == len(batches) - 1 or not ddp.enabled
                with contextlib.nullcontext() if syncing else train_model.no_sync():
                    with autocast():
                        output = train_model(**batch)
                    # DDP averages gradients over ranks, hence the world-size factor
                    (output.loss.float() * (count * ddp.world_size / global_tokens)).backward()
                loss_sum += output.loss.detach().double().cpu() * count
                _add_task_losses(task_sums, examples, output, batch)
            grad_norm = None
            if config.optim.grad_clip is not None:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            stage_step += 1

            loss = ddp.all_reduce_sum(loss_sum).item() / global_tokens
            record = {"kind": "train", "step": step, "stage": stage.name, "loss": loss, "lr": lr,
                      "task_loss": _reduce_task_losses(task_sums, ddp), "grad_norm": grad_norm,
                      "examples_per_s": config.optim.batch_size / (time.perf_counter() - started)}
            if step % config.logging.log_every == 0:
                log.write(record)
            progress.update(step, f"{stage.name} loss {loss:.4f} lr {lr:.2e}")

            # --- periodic validation, best model, early stopping -----------------------------
            stage_done = stage_step >= stage.steps
            if valid_pool and (step % config.eval.every == 0 or stage_done):
                with torch.random.fork_rng(devices=[]):  # evaluation must not move the training RNG
                    last_valid = evaluate(model, valid_pool, config.eval, config.optim.batch_size, device, autocast, ddp)
                last_valid.update(kind="valid", step=step, stage=stage.name)
                log.write(last_valid)
                if ddp.is_main:
                    plot_loss_curve(log.records(), run_dir / CURVE_FILE)
                loss_now = last_valid["loss"]
                improved = loss_now is not None and (early["best"] is None or loss_now < early["best"] - config.early_stopping.min_delta)
                if improved:
                    early = {"best": last_valid["loss"], "bad_evals": 0}
                    if ddp.is_main:
                        ckpt.save_model_dir(model, run_dir / "best")
                else:
                    early["bad_evals"] += 1
                if config.early_stopping.patience and early["bad_evals"] >= config.early_stopping.patience:
                    stage_done = stopped_early = True

            if stage_done:
                stage_summaries.append({"stage": stage.name, "steps": stage_step, "end_step": step,
                                        "stopped_early": stopped_early, "valid": last_valid})
            # --- checkpoint: the position is where the next step starts ---------------------
            if step % config.checkpoint.every == 0 or stage_done or step == stop_at_step:
                next_position = ({"stage": stage_index + 1, "stage_step": 0, "step": step} if stage_done
                                 else {"stage": stage_index, "stage_step": stage_step, "step": step})
                rng_states = ddp.gather_objects(ckpt.rng_state())
                if ddp.is_main:
                    ckpt.save_checkpoint(run_dir, step, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "mixture": mixture.state_dict(), "rng": rng_states,
                        "position": next_position, "early_stopping": early, "stage_summaries": stage_summaries,
                        "last_valid": last_valid,
                    }, keep_last=config.checkpoint.keep_last)
                ddp.barrier()
            if step == stop_at_step:
                interrupted = True
                break
        if interrupted:
            break
    progress.close()

    # --- the trained model ---------------------------------------------------------------
    final = None
    if not interrupted:
        final = run_dir / "final"
        if ddp.is_main:
            ckpt.save_model_dir(model, final)
    best = run_dir / "best" if (run_dir / "best").exists() else None
    result = TrainResult(run_dir, step, final, best, early["best"], last_valid, stopped_early, stage_summaries)
    if ddp.is_main and not interrupted:
        if log.records():
            plot_loss_curve(log.records(), run_dir / CURVE_FILE)
        with atomic_write(run_dir / RESULT_FILE) as handle:
            json.dump(result.to_dict(), handle, indent=2)
    log.close()
    ddp.barrier()
    return result


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
    train = load_split(data.train, tasks, codec, data.train_split, data.max_train_studies)
    valid = load_split(data.valid, tasks, codec, data.valid_split, data.max_valid_studies) if data.valid else None
    return Datasets(train=train, valid=valid)


def prepare_references(model: Any, datasets: Datasets, run_dir: Path, ddp: Dist) -> dict[str, Neighbour]:
    """Nearest training report for every study, computed once (at the first reference stage) and kept in the run folder.

    Later stages and resumed runs read the saved assignment, so retrieval uses the model as it was
    when the reference stage began, whatever happens afterwards.
    """
    path = run_dir / REFERENCES_FILE
    if not path.exists():
        if ddp.is_main:
            was_training = model.training
            model.eval()
            index = ReferenceIndex.build(model, datasets.train.studies)
            index.save(run_dir / REFERENCE_INDEX_FILE)
            studies = datasets.train.studies + (datasets.valid.studies if datasets.valid else [])
            assigned = index.assign(model, studies)
            model.train(was_training)
            with atomic_write(path) as handle:
                json.dump({sid: n.__dict__ for sid, n in assigned.items()}, handle)
        ddp.barrier()
    return {sid: Neighbour(**value) for sid, value in json.loads(path.read_text(encoding="utf-8")).items()}


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
    """A rich progress bar over optimiser steps, on stderr (main rank only)."""

    def __init__(self, total: int, done: int, enabled: bool):
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True))
        self._task = self._bar.add_task("training", total=total, completed=done)
        self._bar.start()

    def update(self, step: int, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=description)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
