"""The model's fused operations and their backends.

`reference` is plain PyTorch (the definition of correct, and what runs on the CPU); `triton_ops` has the
same functions as Triton kernels for CUDA. `ops_for(device)` picks one; GORGON_KERNELS=torch|triton
forces a choice.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch

from gorgon.errors import GorgonError
from gorgon.kernels import host_blas, reference
from gorgon.kernels.attention import AttentionMeta, TreeMask, attention, write_kv

__all__ = ["AttentionMeta", "TreeMask", "attention", "host_blas", "ops_for", "reference", "write_kv"]


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def ops_for(device: torch.device) -> ModuleType:
    """The module of fused ops to run on `device`: Triton kernels on CUDA when Triton is installed."""
    choice = os.environ.get("GORGON_KERNELS", "auto")
    if choice not in ("auto", "torch", "triton"):
        raise GorgonError(f"GORGON_KERNELS={choice!r}: use auto, torch or triton")
    wants_triton = choice == "triton" or (choice == "auto" and device.type == "cuda")
    if not wants_triton:
        return reference
    if not triton_available():
        if choice == "triton":
            raise GorgonError("GORGON_KERNELS=triton, but Triton is not installed")
        return reference
    from gorgon.kernels import triton_ops

    return triton_ops
