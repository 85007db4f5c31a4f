"""Fixed cost and cost a tile of the CUDA kernels against the Triton kernel, unsplit, at the default model's
verify shapes (SmolLM2 heads, batch 1, N=16): one block / program a row block over P = 64 .. 2048."""

import json
import statistics
import sys

import torch

from gorgon.bench.kernels import HEADS, _case, input_sets, time_rotating
from gorgon.kernels import cuda_ops
from gorgon.kernels.tree_attention import Launch, tree_attention

out = sys.argv[1]
for shape, n in (("smollm2-135m", 16), ("llama-3-8b", 1)):
    hq, hkv, d = HEADS[shape]
    for p in (64, 256, 512, 1024, 2048):
        sets = [_case(1, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(1, p + n, hkv, d, True))]
        kv, sc = p + n, d**-0.5
        fns = {
            "triton": lambda c: tree_attention(
                c[0], c[1], c[2], c[3].committed, c[3].bits, kv, sc, launch=Launch(splits=1)
            )
        }
        for name in ("wgmma4", "mma4", "ws"):
            fns[name] = lambda c, name=name: cuda_ops.tree_attention(
                c[0], c[1], c[2], c[3].committed, c[3].bits, kv, sc, kernel=name, splits=1
            )
        times = {k: [] for k in fns}
        for _ in range(3):
            for k, fn in fns.items():
                times[k].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in sets]) * 1e3)
        row = {
            "shape": shape,
            "n": n,
            "p": p,
            "us": {k: round(statistics.median(v), 2) for k, v in times.items()},
        }
        print(json.dumps(row), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
