"""S2D-Align's memory adapter and the vision bridge it lives in.

The memory adapter holds N learnable slots that every visual token reads through cross-attention
(query = token, keys/values = slots). The read is added residually through a tanh gate initialised
at zero, so a fresh adapter is exactly the identity and inserting it never disturbs a trained model;
the gate opens as training finds the slots useful. Each token attends to the slots on its own, so
the adapter works on any token layout ((batch, tokens, dim) or Qwen2.5-VL's flat (tokens, dim)).
Because it is an ordinary sub-module, every training stage shares (and keeps updating) the same slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryAdapter(nn.Module):
    def __init__(self, dim: int, slots: int, heads: int = 4):
        super().__init__()
        if slots <= 0:
            raise ValueError(f"MemoryAdapter needs slots > 0, got {slots}")
        if dim % heads:
            raise ValueError(f"MemoryAdapter: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.memory = nn.Parameter(torch.randn(slots, dim) * dim**-0.5)
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        shape = tokens.shape
        flat = tokens.reshape(1, -1, shape[-1]) if tokens.dim() == 2 else tokens.reshape(-1, shape[-2], shape[-1])
        batch, length, dim = flat.shape
        head_dim = dim // self.heads
        memory = self.memory.to(flat.dtype)
        q = self.query(self.norm(flat)).view(batch, length, self.heads, head_dim).transpose(1, 2)
        k = self.key(memory).view(1, -1, self.heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1)
        v = self.value(memory).view(1, -1, self.heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1)
        read = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, dim)
        return (flat + torch.tanh(self.gate) * self.out(read)).reshape(shape)


class VisionBridge(nn.Module):
    """What sits between a vision tower and the language model: optional memory adapter, then the projector."""

    def __init__(self, projector: nn.Module, memory: MemoryAdapter | None = None):
        super().__init__()
        self.memory = memory
        self.projector = projector

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.memory is not None:
            features = self.memory(features)
        return self.projector(features)
