"""Batch 1, Llama-3-8B heads, P=8192: the automatic Triton launch against the warp-specialized kernel forced
(wgmma=True, warp_specialize=True), cold L2, CUDA graphs, interleaved 3 times. usage: ws_small.py OUT"""
import json
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels.tree_attention import Launch, tree_attention

OUT = Path(sys.argv[1])
variants = {
    "auto": Launch(),
    "ws": Launch(wgmma=True, warp_specialize=True),
    "ws_s3": Launch(wgmma=True, warp_specialize=True, num_stages=3),
    "ws_b64": Launch(wgmma=True, warp_specialize=True, block_n=64, num_stages=4),
    "triton_ps2_b64": Launch(block_n=64, per_sm=2),
}
res = []
for n in (1, 16, 64):
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
            print(json.dumps(row))
            res.append(row)
(OUT / "ws_small.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res))
