"""Probe: can a Triton matrix-vector kernel beat cuBLAS on decode-sized products (batch 1)?

    python -m gorgon.bench.gemv_probe

Times F.linear and a simple Triton GEMV over a few tile shapes, inside CUDA graphs (as the decode step
runs them), for the projections of SmolLM2-135M and Llama-3-8B. Prints microseconds per product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.testing import do_bench_cudagraph


@triton.jit
def _gemv_kernel(X, W, Y, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_N], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(
            W + rows[:, None] * K + cols[None, :], mask=(rows[:, None] < N) & (cols[None, :] < K), other=0.0
        )
        x = tl.load(X + cols, mask=cols < K, other=0.0)
        acc += tl.sum(w.to(tl.float32) * x[None, :].to(tl.float32), 1)
    tl.store(Y + rows, acc.to(Y.dtype.element_ty), mask=rows < N)


def gemv(x: torch.Tensor, w: torch.Tensor, block_n: int, block_k: int, warps: int) -> torch.Tensor:
    n, k = w.shape
    y = torch.empty(n, device=x.device, dtype=x.dtype)
    _gemv_kernel[(triton.cdiv(n, block_n),)](x, w, y, n, k, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps)
    return y


SHAPES = {
    "smollm2 qkv": (960, 576), "smollm2 o": (576, 576), "smollm2 gate_up": (3072, 576),
    "smollm2 down": (576, 1536), "smollm2 head": (49152, 576),
    "8b qkv": (6144, 4096), "8b o": (4096, 4096), "8b gate_up": (28672, 4096), "8b down": (4096, 14336),
}  # fmt: skip


def main() -> None:
    print("| product | N x K | MB | cuBLAS us | best Triton us | tile (BN, BK, warps) | max abs err |")
    print("|---|---|---|---|---|---|---|")
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        ref = F.linear(x, w)[0]
        base = do_bench_cudagraph(lambda x=x, w=w: F.linear(x, w), rep=50)
        tiles = [(bn, bk, wp) for bn in (4, 8, 16, 32) for bk in (128, 256, 512) for wp in (1, 2, 4)]
        tiles = [t for t in tiles if t[0] * t[1] <= 16384]
        timed = [(do_bench_cudagraph(lambda x=x, w=w, t=t: gemv(x[0], w, *t), rep=30), t) for t in tiles]
        best, tile = min(timed)
        err = (gemv(x[0], w, *tile).float() - ref.float()).abs().max().item()
        mb = n * k * 2 / 1e6
        cells = [name, f"{n}x{k}", f"{mb:.1f}", f"{base * 1e3:.2f}", f"{best * 1e3:.2f}", tile, f"{err:.3g}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
