"""Round 1 (2026-11-27i): the CUDA kernels' fused merge (the row block's last split merges it, a warp a
row) against the merge kernel, cold L2, CUDA graphs, interleaved 5 times; forced at more rows than the
rule fuses to find where it stops paying. usage: cuda_fuse_ab.py OUT"""
import json
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels import cuda_ops
from gorgon.kernels.attention import block_counters

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
bw = copy_bandwidth("cuda")
HEADS = {"smollm2-135m": (9, 3, 64), "llama-3-8b": (32, 8, 128)}
CASES = [("llama-3-8b", 1, 1, 8192), ("llama-3-8b", 1, 1, 2048), ("llama-3-8b", 1, 1, 512),
         ("llama-3-8b", 2, 1, 8192), ("llama-3-8b", 8, 1, 8192), ("llama-3-8b", 8, 1, 2048),
         ("llama-3-8b", 1, 2, 8192), ("llama-3-8b", 1, 4, 8192), ("llama-3-8b", 1, 16, 8192),
         ("smollm2-135m", 1, 1, 8192), ("smollm2-135m", 1, 1, 2048), ("smollm2-135m", 8, 1, 8192),
         ("smollm2-135m", 1, 2, 8192), ("smollm2-135m", 1, 4, 8192)]
import os
if os.environ.get("ONLY_N1"):
    CASES = [c for c in CASES if c[2] <= 2]
rows = []
for shape, batch, n, p in CASES:
    hq, hkv, d = HEADS[shape]
    sets = input_sets(batch, p + n, hkv, d, True)
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    q, k, v, t = cases[0]
    args = (q, k, v, t.committed, t.bits, p + n, d**-0.5)
    merged = cuda_ops.tree_attention(*args, fuse=False)
    fused = cuda_ops.tree_attention(*args, fuse=True)
    err = (fused.float() - merged.float()).abs().max().item()
    code = cuda_ops._kernel_code(q, (q, k, v, merged), None, None, p)
    nsplit, _ = cuda_ops.split_plan(q, k, p + n, code)
    times = {"merge_kernel": [], "fused": []}
    for _ in range(5):
        for name, fuse in (("merge_kernel", False), ("fused", True)):
            fns = [lambda q=q, k=k, v=v, t=t, f=fuse: cuda_ops.tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5, fuse=f) for q, k, v, t in cases]  # noqa: E501
            times[name].append(time_rotating(fns) * 1e3)
    torch.cuda.synchronize()
    floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
    row = {"shape": shape, "batch": batch, "n": n, "p": p, "kernel": {v: k for k, v in cuda_ops.KERNELS.items()}[code],
           "parts": nsplit, "rows_a_head": n * hq // hkv, "floor_us": floor, "maxerr": err,
           "counters_zero": int(block_counters(q.device).abs().sum()) == 0,
           **{f"{k}_us": statistics.median(v) for k, v in times.items()}}
    print(json.dumps(row), flush=True)
    rows.append(row)
(OUT / "cuda_fuse_ab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
lines = ["| heads | batch | N | P | kernel | parts | merge kernel us | fused us | fused / merge | x floor merge | x floor fused | max diff |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['shape']} | {r['batch']} | {r['n']} | {r['p']} | {r['kernel']} | {r['parts']} | {r['merge_kernel_us']:.2f} | "
                 f"{r['fused_us']:.2f} | {r['fused_us'] / r['merge_kernel_us']:.3f} | {r['merge_kernel_us'] / r['floor_us']:.2f} | "
                 f"{r['fused_us'] / r['floor_us']:.2f} | {r['maxerr']:.1e} |")
(OUT / "cuda_fuse_ab.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
