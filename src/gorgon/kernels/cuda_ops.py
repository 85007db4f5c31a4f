"""The `cuda` backend: tree attention and KV compaction as CUDA C++ kernels (kernels/cuda/*.cu).

Built at first use with `torch.utils.cpp_extension` (nvcc and ninja needed; about a minute, cached under
~/.cache/gorgon/cuda-<hash> afterwards), for the architecture of the GPU at hand (sm_90 on H100/H200).
Tree attention in bfloat16/float16 with head_dim 64 or 128 runs the tensor-core kernel; float32 and other
head sizes run the exact warp-per-row kernel. The decode-step operations this backend has no CUDA kernel
for (RMSNorm, RoPE + KV write, SiLU, decode attention, argmax) come from the Triton backend when Triton is
installed, else from the reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from gorgon.errors import GorgonError
from gorgon.kernels import reference
from gorgon.kernels.attention import AttentionMeta

SOURCES = [Path(__file__).parent / "cuda" / name for name in ("tree_attention.cu", "binding.cpp")]
MAX_TREE = 128


def buildable() -> bool:
    """Whether this machine can build the extension (a CUDA build of torch, nvcc, ninja)."""
    from torch.utils import cpp_extension

    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and shutil.which("ninja") is not None
    )


@cache
def extension() -> ModuleType:
    """The compiled extension, built on first call."""
    from torch.utils import cpp_extension

    if not buildable():
        raise GorgonError("the cuda backend needs a CUDA build of torch, nvcc (CUDA_HOME) and ninja")
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES)).hexdigest()[:12]
    build = (
        Path(os.environ.get("GORGON_CACHE", Path.home() / ".cache" / "gorgon"))
        / f"cuda-{digest}-sm{major}{minor}"
    )
    build.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="gorgon_cuda",
        sources=[str(p) for p in SOURCES],
        build_directory=str(build),
        extra_cuda_cflags=["-O3", "-std=c++17", "-lineinfo"],
        extra_cflags=["-O3", "-std=c++17"],
    )


@cache
def _fallback() -> ModuleType:
    if importlib.util.find_spec("triton") is not None:
        from gorgon.kernels import triton_ops

        return triton_ops
    return reference


def __getattr__(name: str):
    # rms_norm, rope_write_kv, silu_mul, argmax: whatever the next backend down provides.
    if name in ("rms_norm", "rope_write_kv", "silu_mul", "argmax"):
        return getattr(_fallback(), name)
    raise AttributeError(name)


def _aligned(*tensors: torch.Tensor) -> bool:
    # The tensor-core kernel moves 16-byte vectors: base addresses and row strides must allow it.
    return all(t.data_ptr() % 16 == 0 and all(s % 8 == 0 for s in t.stride()[:-1]) for t in tensors)


def _split_size(span: int) -> int:
    # Up to 256 committed slots: one block per row block does everything; beyond, at most ~32 splits.
    need = -(-span // 32)
    return max(256, 1 << (need - 1).bit_length())


def tree_attention(
    q: torch.Tensor,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    committed: torch.Tensor,
    bits: torch.Tensor,
    kv_len: int,
    scale: float,
    out: torch.Tensor | None = None,
    fast: bool | None = None,
) -> torch.Tensor:
    """Same contract as gorgon.kernels.tree_attention.tree_attention (q [B, N, Hq, D], N <= 128).
    `fast`: force the tensor-core (True) or the exact (False) kernel; default: tensor cores where they
    apply."""
    b, n, hq, d = q.shape
    out = torch.empty_like(q) if out is None else out
    if fast is None:
        fast = q.dtype in (torch.float16, torch.bfloat16) and d in (64, 128) and _aligned(q, cache_k, cache_v)
    span = max(kv_len - n, 1)
    split = _split_size(span)
    nsplit = 1 if span <= split else -(-span // split) + 1
    parts = b * n * hq * nsplit if nsplit > 1 else 1
    m = torch.empty(parts, device=q.device, dtype=torch.float32)
    l_ = torch.empty_like(m)
    acc = torch.empty(parts, d if nsplit > 1 else 1, device=q.device, dtype=torch.float32)
    extension().tree_attention(
        q, cache_k, cache_v, committed, bits, out, m, l_, acc, scale, nsplit, split, fast
    )
    return out


def attend(
    q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, meta: AttentionMeta, scale: float
) -> torch.Tensor:
    """Trees run the CUDA kernel; everything else the next backend down."""
    if meta.tree is not None and q.shape[1] <= MAX_TREE and q.shape[-1] <= 256:
        tree = meta.tree
        return tree_attention(q, cache_k, cache_v, tree.committed, tree.bits, meta.kv_len, scale)
    return _fallback().attend(q, cache_k, cache_v, meta, scale)


def keep_path(
    data: torch.Tensor, committed: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor
) -> None:
    """The reference's keep_path as one kernel: a block per (plane, row) copies its accepted slots."""
    if path.shape[1] == 0:
        return
    if data.element_size() not in (2, 4) or not data.is_contiguous():
        return reference.keep_path(data, committed, path, n_accepted)
    as64 = lambda t: t.to(torch.int64).contiguous()
    extension().keep_path(data, as64(committed), as64(path), as64(n_accepted))
