"""Process groups for `torchrun` (it sets RANK, WORLD_SIZE, MASTER_ADDR...), and how ranks share the model.

One process per device; gloo on CPU, NCCL on CUDA. Without those variables the run is a plain
single process and nothing here touches torch.distributed.

Two ways to share the model across ranks (the recipe's ``distributed.strategy``):

- ``ddp``: every rank holds the whole model, optimiser state and gradients;
  ``DistributedDataParallel`` averages gradients after each backward pass;
- ``fsdp``: PyTorch's fully sharded data parallelism (``torch.distributed.fsdp.fully_shard``, FSDP2):
  each rank holds 1/N of every parameter, gradient and AdamW moment. Each transformer block the
  backbone marks as indivisible (transformers' ``_no_split_modules``: decoder layers, vision blocks)
  is one unit, all-gathered just before it runs and freed after; the rest of the backbone
  (embeddings, vision tower, projector, memory adapter, head) is the root unit. Frozen parameters
  (a frozen vision tower, the base under LoRA) are sharded too and simply get no gradient.

Both average gradients over ranks, so the loop weights losses the same way for either.

Checkpoints hold the full weights and optimiser state, gathered onto rank 0 (``torch.distributed.
checkpoint.state_dict`` with ``full_state_dict``) in the single-process layout, rather than one
file per rank in torch.distributed.checkpoint's sharded format: one ``state.pt`` written atomically
as before, the same release folders, and a run resumes with either strategy and any number of ranks
(exactly when neither changes). The price is that rank 0 holds the whole state in CPU memory while
saving: weights plus two AdamW moments of what trains, about 42 GB for a bf16 full fine-tune of a
7B model and little more than the weights with LoRA (15 GB at 7B, 9 GB for MedGemma-4B); a model
whose state does not fit one host's memory would need the sharded format.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this run created the process group, so it destroys it
    strategy: str = "ddp"  # how the ranks share the model (DISTRIBUTED_STRATEGIES)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Parameters are split across ranks: every forward pass is a collective every rank must join."""
        return self.enabled and self.strategy == "fsdp"

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_objects(self, value: Any) -> list[Any]:
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: torch.device, strategy: str = "ddp") -> Dist:
    """Join the process group described by the launcher's environment, if there is one."""
    if strategy not in DISTRIBUTED_STRATEGIES:
        raise ValueError(f"distributed strategy must be one of {', '.join(DISTRIBUTED_STRATEGIES)}, got {strategy!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(strategy=strategy)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
        owns = True
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns, strategy=strategy)


def pick_device(requested: str) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch sees no CUDA device")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


# ----------------------------------------------------------------------------------------------- sharing the model


def share_model(model: torch.nn.Module, ddp: Dist) -> torch.nn.Module:
    """The module the training step calls: ``model`` itself (one process, or sharded in place by FSDP) or its DDP wrapper.

    Load checkpoint weights into ``model`` before this, and build the optimiser after it (FSDP
    replaces the parameters by sharded ones).
    """
    if not ddp.enabled:
        return model
    if ddp.sharded:
        _fully_shard(model)
        return model
    # backbones carry parameters a given batch does not reach (a vision pooling head, the memory adapter
    # of a text-only task), which DDP must be told to expect
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


def _fully_shard(model: torch.nn.Module) -> None:
    """One FSDP unit per indivisible transformer block, and the backbone's root unit around them.

    The root is the transformers model itself (``model.base_model()``), not radscribe's wrapper, so
    that transformers' own calls into it (``generate``) go through FSDP's hooks; every parameter
    must therefore live inside it.
    """
    from torch.distributed.fsdp import fully_shard

    base_model = getattr(model, "base_model", None)
    root = base_model() if callable(base_model) else model
    inside = {id(parameter) for parameter in root.parameters()}
    outside = [name for name, parameter in model.named_parameters() if id(parameter) not in inside]
    if outside:
        raise ValueError(f"fsdp: parameters outside the backbone cannot be sharded with it: {outside[:5]}")
    blocks = set(getattr(root, "_no_split_modules", None) or [])
    for module in root.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(root)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


def gradient_sync(train_model: torch.nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Inside: backward passes accumulate gradients locally (``enabled`` False) or average them over ranks."""
    if isinstance(train_model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext() if enabled else train_model.no_sync()
    return _fsdp_gradient_sync(train_model, enabled)


@contextlib.contextmanager
def _fsdp_gradient_sync(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    from torch.distributed.fsdp import FSDPModule

    units = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for unit in units:
        unit.set_requires_gradient_sync(enabled, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_requires_gradient_sync(True, recurse=False)


@contextlib.contextmanager
def whole_model(model: torch.nn.Module) -> Iterator[None]:
    """Inside, a sharded model's parameters are whole on every rank, so one rank alone may run it
    (generation for validation metrics, reference retrieval); a no-op for an unsharded model.

    Every rank must enter (the all-gathers are collectives). This needs the whole model's weights on
    each device for the duration, as DDP always does; training steps stay sharded.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for unit in units[1:]:  # the root unit keeps FSDP's default: no reshard after its own forward
            unit.set_reshard_after_forward(True, recurse=False)


def grad_norm_value(norm: torch.Tensor) -> float:
    """``clip_grad_norm_``'s total norm as a number (a replicated DTensor when gradients are sharded)."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


# ----------------------------------------------------------------------------------------------- full state for checkpoints


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict (CPU tensors) of a plain or sharded model; sharded: a collective, whole only on rank 0."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` as one process would write it (parameters by position), gathered
    from the shards when the model is sharded (a collective; whole only on rank 0)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not by_name:  # other ranks than 0
        return {}
    position = {name: index for index, name in enumerate(_optimizer_parameter_names(model, optimizer))}
    return {
        "state": {position[name]: value for name, value in by_name["state"].items()},
        "param_groups": [{**group, "params": [position[name] for name in group["params"]]} for group in by_name["param_groups"]],
    }


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore what :func:`optimizer_state` returned (every rank passes the full state; FSDP keeps its shard)."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _optimizer_parameter_names(model, optimizer)
    by_name = {
        "state": {names[index]: value for index, value in state["state"].items()},
        "param_groups": [{**group, "params": [names[index] for index in group["params"]]} for group in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


def _optimizer_parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each parameter the optimiser holds, in its position order (what ``state_dict()`` numbers)."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [names[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]
