"""The model's fused operations and their backends.

`reference` is plain PyTorch (the definition of correct, and what runs on the CPU); `triton_ops` has the
same functions as Triton kernels for CUDA; `cuda_ops` has tree attention and KV compaction in CUDA C++.
`registry.choose(device)` picks one; GORGON_ATTENTION=reference|triton|cuda forces a choice.
"""

from __future__ import annotations

from types import ModuleType

import torch

from gorgon.kernels import host_blas, reference
from gorgon.kernels.attention import AttentionMeta, TreeMask, attention, pack_ancestors, write_kv

__all__ = [
    "AttentionMeta",
    "TreeMask",
    "attention",
    "backend_name",
    "host_blas",
    "ops_for",
    "pack_ancestors",
    "reference",
    "write_kv",
]


def ops_for(device: torch.device) -> ModuleType:
    """The module of fused ops to run on `device` (see kernels.registry)."""
    from gorgon.kernels.registry import choose

    return choose(device)[1]


def backend_name(ops: ModuleType) -> str:
    """The registry's name of a backend module."""
    from gorgon.kernels.registry import BACKENDS

    return next((b.name for b in BACKENDS if b.module == ops.__name__), ops.__name__)
