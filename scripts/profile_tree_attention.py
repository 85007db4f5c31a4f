"""One tree-attention case per launch setting, launched twice (compile and warm up, then again), for
Nsight Compute to profile, e.g.

    ncu -k regex:tree_attention --section SpeedOfLight python3 scripts/profile_tree_attention.py \
        --case llama-3-8b,1,64,8192 --launch '{}' --launch '{"wgmma": true}' --cuda mma4

--cuda KERNEL adds the CUDA backend's kernel of that name (mma4, mma8, wmma; wgmma4, wgmma8 on sm_90).
--read adds a read-only reference per case: torch.sum over the same K and V caches (the bytes the kernel
must read, in PyTorch's tuned reduction), so a profile shows what one kernel reading them achieves.
Each setting prints its name before its launches, so the report's kernels can be matched to settings.
"""

from __future__ import annotations

import argparse
import json

import torch

from gorgon.bench.kernels import HEADS, _case
from gorgon.kernels.tree_attention import Launch, tree_attention


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", action="append", required=True, help="SHAPE,B,N,P")
    ap.add_argument("--launch", action="append", default=[], help="Launch keywords as JSON")
    ap.add_argument(
        "--cuda", action="append", default=[], help="a CUDA kernel: mma4, mma8, wmma, wgmma4, wgmma8"
    )
    ap.add_argument("--read", action="store_true", help="also sum K and V (a read-only reference)")
    args = ap.parse_args()
    if args.cuda:
        from gorgon.kernels import cuda_ops

        cuda_ops.extension()
    for case in args.case:
        shape, batch, n, p = case.split(",")[0], *map(int, case.split(",")[1:])
        hq, hkv, d = HEADS[shape]
        q, k, v, tree = _case(batch, n, p, hq, hkv, d, torch.bfloat16)
        for text in args.launch:
            launch = Launch(**json.loads(text))
            print(f"== {case} {text}", flush=True)
            for _ in range(2):
                tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, launch=launch)
                torch.cuda.synchronize()
        if args.read:
            print(f"== {case} read", flush=True)
            for _ in range(2):
                torch.sum(k)
                torch.sum(v)
                torch.cuda.synchronize()
        for kernel in args.cuda:
            print(f"== {case} cuda {kernel}", flush=True)
            for _ in range(2):
                cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, kernel=kernel)
                torch.cuda.synchronize()


if __name__ == "__main__":
    main()
