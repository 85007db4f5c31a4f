"""Which kernel backend runs: each backend has a priority and a test of whether it can run here; the
highest available one wins, the reference is always there, and GORGON_ATTENTION forces a choice.

A backend is a module with the fused operations of `gorgon.kernels.reference` (rms_norm, rope_write_kv,
attend, silu_mul, argmax, keep_path); within one, an operation it has no kernel for (prefill attention,
say) calls the reference itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from gorgon.errors import GorgonError

ENV = "GORGON_ATTENTION"


@dataclass(frozen=True)
class Backend:
    name: str
    priority: int
    module: str
    available: Callable[[torch.device], bool]
    why_not: str


def _triton_ok(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


def _cuda_ok(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    from gorgon.kernels.cuda_ops import buildable

    return buildable()


BACKENDS = [
    Backend(
        "cuda",
        10,
        "gorgon.kernels.cuda_ops",
        _cuda_ok,
        "needs a CUDA device, a CUDA build of torch, nvcc and ninja",
    ),
    Backend("triton", 20, "gorgon.kernels.triton_ops", _triton_ok, "needs a CUDA device and Triton"),
    Backend("reference", 0, "gorgon.kernels.reference", lambda device: True, ""),
]
# cuda ranks below triton: it compiles for about a minute on first use, and only tree attention and KV
# compaction are its own (the rest is Triton's); GORGON_ATTENTION=cuda selects it.
PLANNED: dict[str, str] = {}


def choose(device: torch.device) -> tuple[str, ModuleType]:
    """(name, module) of the backend to run on `device`: the forced one, or the best available."""
    name, module = _choose(device)
    if hasattr(module, "extension"):
        module.extension()  # compiled now, not inside the first CUDA-graph capture
    return name, module


def _choose(device: torch.device) -> tuple[str, ModuleType]:
    forced = os.environ.get(ENV) or os.environ.get("GORGON_KERNELS")  # the older name still works
    if forced in (None, "", "auto"):
        best = max((b for b in BACKENDS if b.available(device)), key=lambda b: b.priority)
        return best.name, importlib.import_module(best.module)
    if forced == "torch":
        forced = "reference"
    match = [b for b in BACKENDS if b.name == forced]
    if not match:
        known = ", ".join(b.name for b in BACKENDS)
        raise GorgonError(f"{ENV}={forced!r} is not a backend (known: {known}, or auto)")
    if not match[0].available(device):
        raise GorgonError(f"{ENV}={forced}: {match[0].why_not}")
    return forced, importlib.import_module(match[0].module)
