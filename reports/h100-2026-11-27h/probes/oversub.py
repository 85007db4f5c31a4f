"""Batch 1, Llama-3-8B heads, P=8192: the Triton kernel's split plan against more, shorter splits than one
round of resident programs holds (the block scheduler then balances fast and slow SMs), cold L2, CUDA
graphs, interleaved 3 times. usage: oversub.py OUT"""
import json
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels.tree_attention import Launch, tree_attention

OUT = Path(sys.argv[1])
import os
if os.environ.get("KNOBS"):
    variants = {"auto": Launch(), "w8": Launch(num_warps=8), "b64": Launch(block_n=64), "b64_w8": Launch(block_n=64, num_warps=8),
                "st4": Launch(num_stages=4), "st2": Launch(num_stages=2), "b64_st4": Launch(block_n=64, num_stages=4),
                "b64_st5": Launch(block_n=64, num_stages=5), "ts0": Launch(tree_split=False), "b64_ts0": Launch(block_n=64, tree_split=False)}
else:
    variants = {"auto": Launch()}
    for k in (20, 26, 32, 48):
        variants[f"s{k}"] = Launch(splits=k)
        variants[f"s{k}_st2"] = Launch(splits=k, num_stages=2)
    for k in (26, 32, 64):
        variants[f"s{k}_b64"] = Launch(splits=k, block_n=64)
res = []
for n in ((1, 16) if os.environ.get("KNOBS") else (1, 16, 64)):
    p = 8192
    sets = input_sets(1, p + n, 8, 128, True)
    cases = [_case(1, n, p, 32, 8, 128, torch.bfloat16) for _ in range(sets)]
    ref = tree_attention(*cases[0][:3], cases[0][3].committed, cases[0][3].bits, p + n, 128**-0.5)
    for rep in range(3):
        for name, launch in variants.items():
            fns = [lambda q=q, k=k, v=v, t=t, l=launch: tree_attention(q, k, v, t.committed, t.bits, p + n, 128**-0.5, launch=l) for q, k, v, t in cases]  # noqa: E501
            err = (fns[0]() - ref).abs().max().item()
            us = time_rotating(fns) * 1e3
            row = {"n": n, "p": p, "variant": name, "rep": rep, "us": us, "maxerr": err}
            res.append(row)
        print(n, rep, " ".join(f"{r['variant']}={r['us']:.2f}" for r in res if r["n"] == n and r["rep"] == rep))
(OUT / ("knobs.jsonl" if os.environ.get("KNOBS") else "oversub.jsonl")).write_text("".join(json.dumps(r) + "\n" for r in res))
