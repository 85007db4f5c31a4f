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


BACKENDS = [
    Backend("triton", 20, "gorgon.kernels.triton_ops", _triton_ok, "needs a CUDA device and Triton"),
    Backend("reference", 0, "gorgon.kernels.reference", lambda device: True, ""),
]
# A CUDA C++ backend (issue 5) slots in here at priority 30 once it exists; asking for it is an error
# until then rather than a silent fallback.
PLANNED = {"cuda": "the CUDA C++ backend is not built yet (use triton or reference)"}


def choose(device: torch.device) -> tuple[str, ModuleType]:
    """(name, module) of the backend to run on `device`: the forced one, or the best available."""
    forced = os.environ.get(ENV) or os.environ.get("GORGON_KERNELS")  # the older name still works
    if forced in (None, "", "auto"):
        best = max((b for b in BACKENDS if b.available(device)), key=lambda b: b.priority)
        return best.name, importlib.import_module(best.module)
    if forced == "torch":
        forced = "reference"
    if forced in PLANNED:
        raise GorgonError(f"{ENV}={forced}: {PLANNED[forced]}")
    match = [b for b in BACKENDS if b.name == forced]
    if not match:
        known = ", ".join([b.name for b in BACKENDS] + list(PLANNED))
        raise GorgonError(f"{ENV}={forced!r} is not a backend (known: {known}, or auto)")
    if not match[0].available(device):
        raise GorgonError(f"{ENV}={forced}: {match[0].why_not}")
    return forced, importlib.import_module(match[0].module)
