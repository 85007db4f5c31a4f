"""Study (2026-11-28c), round 8 (not run: no device time left): the shipped ws kernel with its context split
forced to 576, 640, 704, 768 and 832 slots (Llama-3-8B heads, batch 1, N=16 and 1, P=8192); same run, cold
L2, medians of 5 interleaved. At 576, 704 and 832 slots the shipped kernel loads each split's last half
tile whole, 0.2-0.5 us dearer than loading it alone (round 3). Run as scripts/.spacing.py with
PYTHONPATH=src: python scripts/.spacing.py OUT"""

import json
import statistics
import sys

import torch

from gorgon.bench.kernels import _case, input_sets, time_rotating
from gorgon.kernels import cuda_ops

BATCH, P, HQ, HKV, D = 1, 8192, 32, 8, 128
PLANS = {576: (64, 15), 640: (128, 13), 704: (64, 12), 768: (128, 12), 832: (64, 10)}  # (tile, splits asked)
CODE = cuda_ops.KERNELS["ws"]


def calls(cases, n, tile, k):
    def call(c):
        cuda_ops.WS_TILE = tile  # split_plan reads it when the graph is captured
        cuda_ops.launch(cuda_ops.extension(), CODE, c[0], c[1], c[2], c[3].committed, c[3].bits, P + n, D**-0.5,
                        torch.empty_like(c[0]), k)  # fmt: skip

    return [lambda c=c: call(c) for c in cases]


def main() -> None:
    with open(sys.argv[1] + "/spacing.jsonl", "w") as out:
        for n in (16, 1):
            cases = [_case(BATCH, n, P, HQ, HKV, D, torch.bfloat16) for _ in range(input_sets(BATCH, P + n, HKV, D, True))]
            fns = {}
            for size, (tile, k) in PLANS.items():
                cuda_ops.WS_TILE = tile
                assert cuda_ops.split_plan(cases[0][0], cases[0][1], P + n, CODE, k)[1] == size
                fns[size] = calls(cases, n, tile, k)
            res = {s: [] for s in fns}
            for _ in range(5):
                for s, fn in fns.items():
                    res[s].append(time_rotating(fn) * 1e3)
            cuda_ops.WS_TILE = 128
            for s, ts in res.items():
                rec = {"n": n, "split": s, "splits": -(-P // s), "us": round(statistics.median(ts), 3),
                       "spread": round(max(ts) - min(ts), 3)}  # fmt: skip
                print(json.dumps(rec), flush=True)
                out.write(json.dumps(rec) + "\n")
            del cases, fns


if __name__ == "__main__":
    main()
