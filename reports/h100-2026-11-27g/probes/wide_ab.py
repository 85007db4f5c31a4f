"""The CUDA backend's deep form (the wgmma form with 4 warps, one block an SM, a deeper K/V pipeline) at
several stage counts against the automatic CUDA choice, wgmma4 and the Triton kernel, same run, cold L2
(2026-11-27g).

    python deep_ab.py OUT_DIR --variant NAME=S64,S128 ... [--repeats 3]

Each variant is the extension built with -DGORGON_WIDE_STAGES_64=S64 -DGORGON_WIDE_STAGES_128=S128 (built
beforehand with --build-only, in parallel). Rows (JSON lines, appended to OUT_DIR/wide_ab.jsonl as they
come): us per runner with cuda_ops' split plan, and "unsplit" rows with every kernel in one split.
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
from gorgon.kernels.tree_attention import Launch, tree_attention

CASES = (
    [("llama-3-8b", 1, n, p, None) for p in (8192, 2048, 512) for n in (1, 16, 64)]
    + [("smollm2-135m", 1, n, p, None) for p in (256, 768, 2048, 8192) for n in (16, 64)]
    + [("llama-3-8b", b, 16, 8192, None) for b in (2, 4)]
    + [("smollm2-135m", 1, 16, p, 1) for p in (256, 1024)]
    + [("llama-3-8b", 1, n, p, 1) for p in (512, 2048) for n in (1, 16)]
    + [("llama-3-8b", 8, n, 8192, None) for n in (16, 64)]
)


def build(name: str, stages: str):
    s64, s128 = stages.split(",")
    flags = ["-lineinfo", f"-DGORGON_WIDE_STAGES_64={s64}", f"-DGORGON_WIDE_STAGES_128={s128}"]
    return cuda_ops.build(f"gorgon_cuda_{name}", cuda_ops.SOURCES, f"variant-{name}", flags)


def measure(shape, b, n, p, splits, exts, repeats, bandwidth) -> dict:
    hq, hkv, d = HEADS[shape]
    sets = [_case(b, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(b, p + n, hkv, d, True))]
    kv_len, scale = p + n, d**-0.5
    launch = Launch(splits=splits) if splits else Launch()
    fns = {
        "triton": lambda c: tree_attention(
            c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, launch=launch
        )
    }
    if not splits:
        fns["cuda"] = lambda c: cuda_ops.tree_attention(
            c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale
        )
    for kernel in ("wgmma4", "wgmma8", "ws", "wide"):
        fns[kernel] = lambda c, kernel=kernel: cuda_ops.tree_attention(
            c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, kernel=kernel, splits=splits
        )
    for name, ext in exts.items():
        fns[name] = lambda c, ext=ext: cuda_ops.launch(
            ext, 7, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0]), splits
        )
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
    q, k = sets[0][0], sets[0][1]
    auto = cuda_ops._kernel_code(q, (q, k, sets[0][2], q), None, None, p)
    us = {name: round(statistics.median(t), 2) for name, t in times.items()}
    floor = kv_bytes(b, kv_len, hkv, d) / bandwidth * 1e6
    return {"shape": shape, "batch": b, "n": n, "p": p, "splits": splits, "floor_us": round(floor, 2),
            "auto": next(k for k, v in cuda_ops.KERNELS.items() if v == auto),
            "wide_plan": cuda_ops.split_plan(q, k, kv_len, 7, splits), "us": us}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--variant", action="append", required=True, help="NAME=S64,S128")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    cuda_ops.extension()
    exts = {v.split("=")[0]: build(*v.split("=")) for v in args.variant}
    if args.build_only:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bandwidth = copy_bandwidth("cuda")
    for case in CASES:
        row = measure(*case, exts, args.repeats, bandwidth)
        print(json.dumps(row), flush=True)
        with open(out / "wide_ab.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
