"""Study (2026-11-28c), round 8: the shipped ws kernel with its context split forced to 576, 640, 704, 768 and
832 slots (Llama-3-8B heads, batch 1, N=16, P=8192); same run, cold L2, medians of 5 interleaved."""

import json
import statistics
import sys

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels import cuda_ops

batch, n, p, hq, hkv, d = 1, 16, 8192, 32, 8, 128
cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
code = cuda_ops.KERNELS["ws"]
plans = {576: (64, 15), 640: (128, 13), 704: (64, 12), 768: (128, 12), 832: (64, 10)}
fns = {}
for size, (tile, k) in plans.items():
    cuda_ops.WS_TILE = tile
    assert cuda_ops.split_plan(cases[0][0], cases[0][1], p + n, code, k)[1] == size
    fns[size] = [lambda c=c, t=tile, k=k: (setattr(cuda_ops, "WS_TILE", t), cuda_ops.launch(
        cuda_ops.extension(), code, c[0], c[1], c[2], c[3].committed, c[3].bits, p + n, d**-0.5,
        torch.empty_like(c[0]), k)) for c in cases]  # fmt: skip
res = {s: [] for s in fns}
for _ in range(5):
    for s, calls in fns.items():
        res[s].append(time_rotating(calls) * 1e3)
with open(sys.argv[1] + "/spacing.jsonl", "w") as f:
    for s, ts in res.items():
        rec = {"split": s, "splits": -(-p // s), "us": round(statistics.median(ts), 3), "spread": round(max(ts) - min(ts), 3)}
        print(json.dumps(rec), flush=True)
        f.write(json.dumps(rec) + "\n")
