"""Time builds of the CUDA extension compiled with different macros, in one run on one GPU (a study tool).

    python scripts/cuda_variants.py --variant base= --variant pingpong=-DGORGON_WS_PINGPONG=1 \
        [--kernel ws] [--case SHAPE,B,N,P ...] [--repeats 5] [--out DIR]
    python scripts/cuda_variants.py --variant NAME=FLAGS --build-only   # build it (several at once)

Each variant is kernels/cuda/*.cu and binding.cpp as they are, compiled with its flags (space-separated
nvcc options, e.g. -DGORGON_WS_STAGES=3) into its own extension. For each case (bf16, full top-4 trees, K/V
rotated over 160 MB so that every call reads a cold L2), every variant runs `--kernel` with the split
plan that cuda_ops gives it, after its output agreed with the Triton kernel's; the Triton kernel and the
shipped CUDA backend (its automatic choice) run alongside. Times are medians of CUDA-graph replays,
interleaved `--repeats` times. Tables go to DIR/cuda_variants.{md,jsonl}.
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

CASES = ["llama-3-8b,8,64,8192", "llama-3-8b,1,64,8192", "llama-3-8b,1,128,8192", "llama-3-8b,8,128,8192"]


def build(name: str, flags: list[str]):
    """The extension compiled with `flags` (cached by sources and flags under $GORGON_CACHE)."""
    cuda_ops.extension()  # first: it sets the architecture list (sm_90a on Hopper) and builds the shipped one
    return cuda_ops.build(f"gorgon_cuda_{name}", cuda_ops.SOURCES, f"variant-{name}", ["-lineinfo", *flags])


def runner(ext, kernel: str, kv_len: int, scale: float):
    code = cuda_ops.KERNELS[kernel]

    def run(case):
        q, k, v, tree = case
        out = torch.empty_like(q)
        return cuda_ops.launch(ext, code, q, k, v, tree.committed, tree.bits, kv_len, scale, out)

    return run


def measure(case_text: str, exts: dict, kernel: str, repeats: int, bandwidth: float) -> dict:
    shape, batch, n, p = case_text.split(",")
    batch, n, p = int(batch), int(n), int(p)
    hq, hkv, d = HEADS[shape]
    sets = [
        _case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))
    ]
    kv_len, scale = p + n, d**-0.5
    fns = {
        "triton": lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale),
        "cuda (auto)": lambda c: cuda_ops.tree_attention(
            c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale
        ),
    } | {name: runner(ext, kernel, kv_len, scale) for name, ext in exts.items()}
    want = fns["triton"](sets[0]).float()
    for name, fn in fns.items():
        if not torch.allclose(fn(sets[0]).float(), want, atol=2e-2, rtol=2e-2):
            raise AssertionError(f"{name} disagrees with the Triton kernel on {case_text}")
    calls = {name: [lambda c=c, fn=fn: fn(c) for c in sets] for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, group in calls.items():
            times[name].append(time_rotating(group) * 1e3)
    floor = kv_bytes(batch, kv_len, hkv, d) / bandwidth * 1e6
    us = {name: statistics.median(t) for name, t in times.items()}
    return {"case": case_text, "floor_us": floor, "us": us, "x_floor": {k: t / floor for k, t in us.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, help="NAME=FLAGS (repeatable)")
    ap.add_argument("--kernel", default="ws", choices=[k for k in cuda_ops.KERNELS if k != "exact"])
    ap.add_argument("--case", action="append", help="SHAPE,B,N,P (repeatable)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=".")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split() for v in args.variant}
    exts = {name: build(name, flags) for name, flags in variants.items()}
    if args.build_only:
        return
    bandwidth = copy_bandwidth("cuda")
    rows = [measure(c, exts, args.kernel, args.repeats, bandwidth) for c in args.case or CASES]
    names = list(rows[0]["us"])
    gpu = torch.cuda.get_device_name()
    lines = [
        f"CUDA variants ({args.kernel}), {gpu}, bf16, cold L2, median of {args.repeats} interleaved:"
        " us (x floor)",
        "",
        "| case | floor us | " + " | ".join(names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for r in rows:
        cells = [f"{r['us'][k]:.1f} ({r['x_floor'][k]:.2f})" for k in names]
        lines.append(f"| {r['case']} | {r['floor_us']:.1f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Variants: " + "; ".join(f"{k}: {' '.join(v) or '(as shipped)'}" for k, v in variants.items()),
    ]
    print("\n".join(lines))
    out = Path(args.out)
    (out / "cuda_variants.md").write_text("\n".join(lines) + "\n")
    with open(out / "cuda_variants.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r | {"gpu": gpu, "kernel": args.kernel, "variants": variants}) + "\n")


if __name__ == "__main__":
    main()
