"""The CUDA backend's cluster form (a row block's splits as one thread-block cluster, merged in distributed
shared memory) against the automatic CUDA choice and the Triton kernel, same run, cold L2 (2026-11-27g).

    python cluster_ab.py OUT_DIR [--set b1|small|batch] [--repeats 3]

Rows (JSON lines, printed and appended to OUT_DIR/cluster_ab.jsonl as they come): us per runner, x floor,
the automatic kernel and the cluster plan. Every runner's output is checked against the Triton kernel's
on the first input set before it is timed.
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

SETS = {
    "b1": [("llama-3-8b", 1, n, p) for p in (8192, 2048, 512) for n in (1, 16, 64, 128)],
    "small": [("smollm2-135m", 1, n, p) for p in (256, 768, 2048, 8192) for n in (1, 16, 64)],
    "focus": [("llama-3-8b", 1, n, p) for p in (8192, 2048) for n in (1, 16, 64)]
    + [("smollm2-135m", 1, n, p) for p in (768, 8192) for n in (1, 16)],
    "batch": [("llama-3-8b", b, n, 8192) for b in (2, 4, 8) for n in (1, 16)]
    + [("smollm2-135m", b, 16, 768) for b in (2, 4, 8)],
}


VARIANTS = {}  # name -> extension built with -DGORGON_CLUSTER_STAGES=...


def variant_runners(kv_len: int, scale: float, q, k) -> dict:
    fns = {}
    b, n, hq, d = q.shape
    blocks = b * k.shape[2] * -(-n * (hq // k.shape[2]) // 64)
    for name, ext in VARIANTS.items():
        size = max(min(16, 132 // blocks, -(-(kv_len - n) // 128)), 1)
        while size > 1 and ext.cluster_capacity(d, size) < blocks:
            size -= 1
        for s in sorted({size, 16}):
            fns[f"{name}-{s}"] = lambda c, ext=ext, s=s: cuda_ops.launch(
                ext, 7, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0]), s
            )
    return fns


def runners(kv_len: int, scale: float, code: int) -> dict:
    def cuda(kernel=None, splits=None):
        return lambda c: cuda_ops.tree_attention(
            c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, kernel=kernel, splits=splits
        )

    fns = {
        "triton": lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale),
        "cuda": cuda(),
        "cluster": cuda("cluster"),
    }
    for size in (4, 8, 16):
        fns[f"cluster{size}"] = cuda("cluster", size)
    return fns


def measure(shape: str, b: int, n: int, p: int, repeats: int, bandwidth: float) -> dict:
    hq, hkv, d = HEADS[shape]
    sets = [_case(b, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(b, p + n, hkv, d, True))]
    kv_len, scale = p + n, d**-0.5
    q, k = sets[0][0], sets[0][1]
    auto = cuda_ops._kernel_code(q, (q, k, sets[0][2], q), None, None, p)
    code = cuda_ops.KERNELS["cluster"]
    plan = cuda_ops.split_plan(q, k, kv_len, code)
    fns = runners(kv_len, scale, code) | variant_runners(kv_len, scale, q, k)
    want = fns["triton"](sets[0]).float()
    for name, fn in fns.items():
        got = fn(sets[0]).float()
        if not torch.allclose(got, want, atol=2e-2, rtol=2e-2):
            raise AssertionError(
                f"{name} disagrees with the Triton kernel on {shape} b{b} N={n} P={p}: "
                f"{(got - want).abs().max().item()}"
            )
    calls = {name: [lambda c=c, fn=fn: fn(c) for c in sets] for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, group in calls.items():
            times[name].append(time_rotating(group) * 1e3)
    floor = kv_bytes(b, kv_len, hkv, d) / bandwidth * 1e6
    us = {name: round(statistics.median(t), 2) for name, t in times.items()}
    auto_name = next(k for k, v in cuda_ops.KERNELS.items() if v == auto)
    return {"shape": shape, "batch": b, "n": n, "p": p, "floor_us": round(floor, 2), "us": us,
            "x_floor": {k: round(t / floor, 3) for k, t in us.items()}, "auto": auto_name,
            "cluster_plan": plan}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--set", action="append", choices=list(SETS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", type=int, action="append", default=[], help="cluster-form variant builds")
    args = ap.parse_args()
    cuda_ops.extension()
    for st in args.stages:
        VARIANTS[f"s{st}"] = cuda_ops.build(
            f"gorgon_cuda_s{st}",
            cuda_ops.SOURCES,
            f"variant-s{st}",
            ["-lineinfo", f"-DGORGON_CLUSTER_STAGES={st}"],
        )
        print(f"s{st} capacity d128:", [VARIANTS[f"s{st}"].cluster_capacity(128, s) for s in range(1, 17)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ext = cuda_ops.extension()
    cap = {d: [ext.cluster_capacity(d, s) for s in range(1, 17)] for d in (64, 128)}
    print("clusters at once, sizes 1-16:", json.dumps(cap), flush=True)
    (out / "capacity.json").write_text(json.dumps(cap))
    bandwidth = copy_bandwidth("cuda")
    for name in args.set or list(SETS):
        for case in SETS[name]:
            row = measure(*case, args.repeats, bandwidth)
            print(json.dumps(row), flush=True)
            with open(out / "cluster_ab.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
