"""Matrix products on the CPU for float32 decoding: Gorgon's own packed kernel (cpu_gemm.c), else numpy.

Decoding on a CPU is bound by reading the weights once per step. On the AMD EPYC development and CI
machines (notes/cpu.md), PyTorch's MKL reads float32 weights at 11-18 GB/s for one row and worse for
a few; numpy's OpenBLAS reaches ~27 GB/s for one row but a third of that for 2 to 8 rows, which is
exactly what verifying a small tree needs. cpu_gemm.c, compiled on first use with gcc and cached,
reads each weight once per 6 rows at ~20-30 GB/s for 1 to 6 rows. Without gcc or AVX2 the numpy
path is used. Two thread pools on two cores fight, so while Gorgon steps, PyTorch's own ops run
single-threaded (`single_torch_thread`) and the kernel's OpenMP threads have the cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import torch

PANEL = 16  # output columns per packed panel (the kernel's register block width)
_SOURCE = Path(__file__).with_name("cpu_gemm.c")


def _cpu_supports_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags


@cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, built once per source version into the user's cache; None if unavailable."""
    if os.environ.get("GORGON_CPU_KERNEL", "1") == "0" or not _cpu_supports_avx2():
        return None
    source = _SOURCE.read_bytes()
    tag = hashlib.sha256(source).hexdigest()[:16]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gorgon"
    target = cache_dir / f"cpu_gemm-{tag}.so"
    if not target.is_file():
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                out = Path(tmp) / target.name
                cmd = [
                    "gcc",
                    "-O3",
                    "-mavx2",
                    "-mfma",
                    "-fopenmp",
                    "-shared",
                    "-fPIC",
                    str(_SOURCE),
                    "-o",
                    str(out),
                ]
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                out.replace(target)  # atomic: concurrent builds don't see half a file
        except (OSError, subprocess.SubprocessError):
            return None
    lib = ctypes.CDLL(str(target))
    fn = lib.gorgon_packed_gemm
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    fn.restype = None
    return lib


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A Linear weight [N, K] as panels [ceil(N / 16), K, 16] (zero rows pad the last panel)."""
    n, k = weight.shape
    panels = -(-n // PANEL)
    padded = torch.zeros(panels * PANEL, k, dtype=torch.float32)
    padded[:n] = weight.detach().float()
    return padded.view(panels, PANEL, k).transpose(1, 2).contiguous()


def packed_linear(
    x: torch.Tensor, packed: torch.Tensor, out_features: int, bias: torch.Tensor | None
) -> torch.Tensor:
    """x [..., K] @ W^T (+ bias) with W packed by `pack`."""
    k = x.shape[-1]
    flat = x.reshape(-1, k).contiguous()
    m, panels = flat.shape[0], packed.shape[0]
    y = torch.empty(m, panels * PANEL, dtype=torch.float32)
    library().gorgon_packed_gemm(flat.data_ptr(), packed.data_ptr(), y.data_ptr(), m, k, panels)
    if panels * PANEL != out_features:
        y = y[:, :out_features]
    y = y.view(*x.shape[:-1], out_features)
    return y if bias is None else y + bias


def transpose_storage(module: torch.nn.Module) -> None:
    """The numpy fallback: store every Linear weight of `module` as the transpose of a contiguous
    [in, out] tensor, so that `weight.t()` is contiguous and numpy uses it without a copy. Shapes and
    values are unchanged; tied weights stay tied."""
    done: dict[int, torch.nn.Parameter] = {}
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            w = sub.weight
            if id(w) not in done:
                done[id(w)] = torch.nn.Parameter(w.detach().t().contiguous().t(), requires_grad=False)
            sub.weight = done[id(w)]
    for sub in module.modules():  # embeddings that share a head's weight follow it
        if isinstance(sub, torch.nn.Embedding) and id(sub.weight) in done:
            sub.weight = done[id(sub.weight)]


def numpy_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] @ weight.T (+ bias) via numpy; weight [out, in] stored as by `transpose_storage`."""
    flat = x.reshape(-1, x.shape[-1]).numpy()
    y = torch.from_numpy(np.matmul(flat, weight.t().numpy())).view(*x.shape[:-1], weight.shape[0])
    return y if bias is None else y + bias


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run PyTorch's own CPU ops on one thread for the duration (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
