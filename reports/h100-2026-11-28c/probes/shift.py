"""Study (2026-11-28c), round 6: does a K/V cache whose slots start off a 128-slot boundary in memory slow the
shipped kernels? The same calls with K and V as views that start `shift` slots into a larger allocation
(shift 0 = the plain case), cuda (ws) and triton; same run, cold L2, medians of 5 interleaved.

usage: python .shift.py OUT
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels import cuda_ops
from gorgon.kernels.tree_attention import tree_attention

SHIFTS = (0, 32, 64, 128)


def shifted(c, shift):
    q, k, v, tree = c
    out = []
    for t in (k, v):
        big = torch.empty(t.shape[0], t.shape[1] + shift, *t.shape[2:], device=t.device, dtype=t.dtype)
        view = big[:, shift:]
        view.copy_(t)
        out.append(view)
    return q, out[0], out[1], tree


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "shift.jsonl", "a")  # noqa: SIM115
    bw = copy_bandwidth("cuda")
    for batch, n, p in ((1, 16, 8192), (1, 1, 8192), (2, 16, 8192), (1, 64, 8192)):
        hq, hkv, d = 32, 8, 128
        scale = d**-0.5
        base = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        sets = {s: [shifted(c, s) for c in base] for s in SHIFTS}
        ref = cuda_ops.tree_attention(*sets[0][0][:3], sets[0][0][3].committed, sets[0][0][3].bits, p + n, scale)
        fns = {}
        for s, cases in sets.items():
            got = cuda_ops.tree_attention(*cases[0][:3], cases[0][3].committed, cases[0][3].bits, p + n, scale)
            assert torch.equal(got, ref), s
            for backend, fn in (("cuda", cuda_ops.tree_attention), ("triton", tree_attention)):
                fns[(backend, s)] = [lambda c=c, fn=fn: fn(c[0], c[1], c[2], c[3].committed, c[3].bits, p + n, scale)
                                     for c in cases]  # fmt: skip
        res = {k: [] for k in fns}
        for _ in range(5):
            for key, calls in fns.items():
                res[key].append(time_rotating(calls) * 1e3)
        floor = kv_bytes(batch, p + n, hkv, d) / bw * 1e6
        for (backend, s), ts in res.items():
            us = statistics.median(ts)
            rec = {"batch": batch, "n": n, "p": p, "backend": backend, "shift": s, "us": round(us, 3),
                   "x_floor": round(us / floor, 3), "spread": round(max(ts) - min(ts), 3)}  # fmt: skip
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
        del base, sets, fns
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
