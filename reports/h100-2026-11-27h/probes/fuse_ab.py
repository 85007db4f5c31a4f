"""Round 10: the Triton kernel's fused merge (the last program of a row block merges it, all partials
loaded at once) against the merge kernel, where the partials fit (few rows a block), cold L2, CUDA graphs,
interleaved 5 times; fused-merge GPU tests first. usage: fuse_ab.py OUT"""
import json
import statistics
import sys
from pathlib import Path

import torch

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)
bw = copy_bandwidth("cuda")
CASES = [("llama-3-8b", 1, 1, 8192), ("llama-3-8b", 1, 1, 2048), ("llama-3-8b", 1, 1, 512),
         ("llama-3-8b", 1, 2, 8192), ("llama-3-8b", 2, 1, 8192), ("llama-3-8b", 4, 1, 8192),
         ("smollm2-135m", 1, 1, 8192), ("smollm2-135m", 1, 1, 2048), ("smollm2-135m", 1, 2, 8192)]
HEADS = {"smollm2-135m": (9, 3, 64), "llama-3-8b": (32, 8, 128)}
rows = []
for shape, batch, n, p in CASES:
    hq, hkv, d = HEADS[shape]
    sets = input_sets(batch, p + n, hkv, d, True)
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    ref = ta.tree_attention(*cases[0][:3], cases[0][3].committed, cases[0][3].bits, p + n, d**-0.5)
    fused_out = ta.tree_attention(*cases[0][:3], cases[0][3].committed, cases[0][3].bits, p + n, d**-0.5,
                                  launch=ta.Launch(fuse_merge=True))
    err = (fused_out.float() - ref.float()).abs().max().item()
    times = {"default": [], "fused": [], "dynamic": []}
    variants = {"default": ta.Launch(), "fused": ta.Launch(fuse_merge=True), "dynamic": ta.Launch(dynamic=True)}
    for _ in range(5):
        for name, launch in variants.items():
            fns = [lambda q=q, k=k, v=v, t=t, l=launch: ta.tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5, launch=l) for q, k, v, t in cases]  # noqa: E501
            times[name].append(time_rotating(fns) * 1e3)
    floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
    row = {"shape": shape, "batch": batch, "n": n, "p": p, "floor_us": floor, "maxerr_fused": err,
           "counters_zero": int(ta.claim_counters(cases[0][0].device).abs().sum()) == 0,
           **{f"{k}_us": statistics.median(v) for k, v in times.items()}}
    print(json.dumps(row), flush=True)
    rows.append(row)
(OUT / "fuse_ab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
lines = ["| heads | batch | N | P | default us | fused us | fused / default | x floor default | x floor fused | dynamic us |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['shape']} | {r['batch']} | {r['n']} | {r['p']} | {r['default_us']:.2f} | {r['fused_us']:.2f} | "
                 f"{r['fused_us'] / r['default_us']:.3f} | {r['default_us'] / r['floor_us']:.2f} | "
                 f"{r['fused_us'] / r['floor_us']:.2f} | {r['dynamic_us']:.2f} |")
(OUT / "fuse_ab.md").write_text("\n".join(lines) + "\n")
