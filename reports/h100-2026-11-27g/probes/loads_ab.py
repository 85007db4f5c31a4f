"""The mma kernels' unpredicated loads of full tiles against the build before them, same run, cold L2
(2026-11-27g): each case's automatic CUDA kernel in both builds, wgmma4 where that is another, and the
Triton kernel.

    python loads_ab.py OUT_DIR BEFORE_SRC_DIR [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from gorgon.bench.kernels import HEADS, _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels import cuda_ops
from gorgon.kernels.tree_attention import tree_attention

CASES = (
    [("llama-3-8b", b, n, 8192) for b in (1, 8) for n in (1, 16, 64, 128)]
    + [("llama-3-8b", b, 64, 2048) for b in (1, 8)]
    + [("smollm2-135m", 1, n, p) for p in (256, 768, 2048) for n in (16, 64)]
    + [("llama-3-8b", 1, n, p) for p in (512,) for n in (16, 64)]
)


def measure(shape, b, n, p, before, repeats, bandwidth) -> dict:
    hq, hkv, d = HEADS[shape]
    sets = [_case(b, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(b, p + n, hkv, d, True))]
    kv_len, scale = p + n, d**-0.5
    q, k = sets[0][0], sets[0][1]
    code = cuda_ops._kernel_code(q, (q, k, sets[0][2], q), None, None, p)
    ext = cuda_ops.extension()

    def run(e, c, code=code):
        return cuda_ops.launch(
            e, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0])
        )

    fns = {
        "triton": lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale),
        "before": lambda c: run(before, c),
        "after": lambda c: run(ext, c),
    }
    if code != cuda_ops.KERNELS["wgmma4"]:
        fns["before wgmma4"] = lambda c: run(before, c, cuda_ops.KERNELS["wgmma4"])
        fns["after wgmma4"] = lambda c: run(ext, c, cuda_ops.KERNELS["wgmma4"])
    want = fns["triton"](sets[0]).float()
    for name, fn in fns.items():
        got = fn(sets[0]).float()
        if not torch.allclose(got, want, atol=2e-2, rtol=2e-2):
            raise AssertionError(f"{name} disagrees with the Triton kernel on {shape} b{b} N={n} P={p}")
    calls = {name: [lambda c=c, fn=fn: fn(c) for c in sets] for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, group in calls.items():
            times[name].append(time_rotating(group) * 1e3)
    us = {name: round(statistics.median(t), 2) for name, t in times.items()}
    floor = kv_bytes(b, kv_len, hkv, d) / bandwidth * 1e6
    auto = next(k for k, v in cuda_ops.KERNELS.items() if v == code)
    return {"shape": shape, "batch": b, "n": n, "p": p, "floor_us": round(floor, 2), "auto": auto, "us": us}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("before")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cuda_ops.extension()
    src = Path(args.before)
    before = cuda_ops.build(
        "gorgon_cuda_before2", [src / "tree_attention.cu", src / "binding.cpp"], "before2", ["-lineinfo"]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bandwidth = copy_bandwidth("cuda")
    for case in CASES:
        row = measure(*case, before, args.repeats, bandwidth)
        print(json.dumps(row), flush=True)
        with open(out / "loads_ab.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
