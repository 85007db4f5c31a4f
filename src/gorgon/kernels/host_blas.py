"""Matrix products on the CPU through numpy's BLAS (OpenBLAS) instead of PyTorch's (MKL).

Decoding on a CPU is bound by reading the weights once per token. On the AMD EPYC development and CI
machines, PyTorch's MKL matrix-vector products read float32 weights at 11-18 GB/s, numpy's OpenBLAS
at about 23 GB/s with the weights stored transposed ([in, out], reports/cpu_blas.md): 30 vs 17 tokens/s
end to end on SmolLM2-135M. Two thread pools on two cores fight, so while Gorgon steps, PyTorch runs
single-threaded and leaves the cores to OpenBLAS (`single_torch_thread`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def transpose_storage(module: nn.Module) -> None:
    """Store every Linear weight of `module` as the transpose of a contiguous [in, out] tensor, so that
    `weight.t()` is contiguous and numpy can use it without a copy. Shapes and values are unchanged;
    tied weights stay tied."""
    done: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            w = sub.weight
            if id(w) not in done:
                done[id(w)] = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=False)
            sub.weight = done[id(w)]
    for sub in module.modules():  # embeddings that share a head's weight follow it
        if isinstance(sub, nn.Embedding) and id(sub.weight) in done:
            sub.weight = done[id(sub.weight)]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
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
