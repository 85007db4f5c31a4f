"""Round 3 (2026-11-27i): which CUDA kernel serves N=1 best now that it merges its own splits: ws (the
rule's choice at P=8192), wgmma4 and wgmma8, each fused and not, Llama-3-8B heads, batch 1; cold L2, CUDA
graphs, interleaved 5 times. usage: n1_kernels.py OUT"""
import json
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels import cuda_ops
from gorgon.kernels.tree_attention import tree_attention

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
bw = copy_bandwidth("cuda")
lines = ["| P | variant | us | x floor |", "|---|---|---|---|"]
for p in (8192, 2048):
    hq, hkv, d, n, batch = 32, 8, 128, 1, 1
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
    variants = {f"cuda {k} {'fused' if f else 'merge kernel'}": (k, f) for k in ("ws", "wgmma4", "wgmma8") for f in (True, False)}
    times = {name: [] for name in [*variants, "triton"]}
    for _ in range(5):
        for name, (kernel, fuse) in variants.items():
            fns = [lambda q=q, k=k, v=v, t=t: cuda_ops.tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5, kernel=kernel, fuse=fuse) for q, k, v, t in cases]  # noqa: E501
            times[name].append(time_rotating(fns) * 1e3)
        fns = [lambda q=q, k=k, v=v, t=t: tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5) for q, k, v, t in cases]  # noqa: E501
        times["triton"].append(time_rotating(fns) * 1e3)
    floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
    for name, ts in times.items():
        us = statistics.median(ts)
        lines.append(f"| {p} | {name} | {us:.2f} | {us / floor:.2f} |")
        print(json.dumps({"p": p, "variant": name, "us": us, "floor_us": floor}), flush=True)
(OUT / "n1_kernels.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
