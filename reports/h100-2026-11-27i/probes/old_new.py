"""Round 5 (2026-11-27i): the CUDA extension before this session (HEAD 3b0d36c's tree_attention.cu and
binding) against the current one, same run, cold L2, CUDA graphs, interleaved 5 times: is there a
regression outside the fused merge (the merge kernel now shares merge_row; the kernels have the fused
tail)? The current one runs with its default rule and with fuse=False. usage: old_new.py OUT"""
import json
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels import cuda_ops

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
cuda_ops.extension()
old = cuda_ops.build("gorgon_cuda_before", [Path("scripts/.old") / n for n in ("tree_attention.cu", "binding.cpp")], "before")
bw = copy_bandwidth("cuda")
HEADS = {"smollm2-135m": (9, 3, 64), "llama-3-8b": (32, 8, 128)}
CASES = [("smollm2-135m", 1, n, 8192) for n in (1, 16, 64, 128)] + [("smollm2-135m", 8, 64, 8192)] + \
        [("llama-3-8b", 1, n, 8192) for n in (1, 16, 64, 128)] + [("llama-3-8b", 8, 128, 8192)]


def before(q, k, v, t, kv_len, scale):
    b, n, hq, d = q.shape
    code = cuda_ops._kernel_code(q, (q, k, v, q), None, None, max(kv_len - n, 1))
    nsplit, split = cuda_ops.split_plan(q, k, kv_len, code)
    parts = b * n * hq * nsplit if nsplit > 1 else 1
    out = torch.empty_like(q)
    lse = torch.empty(parts, device=q.device, dtype=torch.float32)
    part = torch.empty(parts, d if nsplit > 1 else 1, device=q.device, dtype=q.dtype)
    old.tree_attention(q, k, v, t.committed, t.bits, out, lse, part, scale, nsplit, split, code, False)
    return out


lines = ["| heads | batch | N | P | before us | now us | now, merge kernel us | now / before | x floor before | x floor now |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for shape, batch, n, p in CASES:
    hq, hkv, d = HEADS[shape]
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
    s = d**-0.5
    variants = {
        "before": lambda q, k, v, t: before(q, k, v, t, p + n, s),
        "now": lambda q, k, v, t: cuda_ops.tree_attention(q, k, v, t.committed, t.bits, p + n, s),
        "now_merge": lambda q, k, v, t: cuda_ops.tree_attention(q, k, v, t.committed, t.bits, p + n, s, fuse=False),
    }
    q, k, v, t = cases[0]
    err = (variants["before"](q, k, v, t).float() - variants["now"](q, k, v, t).float()).abs().max().item()
    times = {name: [] for name in variants}
    for _ in range(5):
        for name, fn in variants.items():
            times[name].append(time_rotating([lambda c=c, fn=fn: fn(*c) for c in cases]) * 1e3)
    floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
    med = {name: statistics.median(ts) for name, ts in times.items()}
    row = {"shape": shape, "batch": batch, "n": n, "p": p, "floor_us": floor, "maxdiff": err, **{f"{k}_us": v for k, v in med.items()}}
    print(json.dumps(row), flush=True)
    lines.append(f"| {shape} | {batch} | {n} | {p} | {med['before']:.2f} | {med['now']:.2f} | {med['now_merge']:.2f} | "
                 f"{med['now'] / med['before']:.3f} | {med['before'] / floor:.2f} | {med['now'] / floor:.2f} |")
(OUT / "old_new.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
