"""Cluster form study (2026-11-28b): the ws kernel's splits as one cluster merged in shared memory (wsc)
against the shipped ws kernel (split kernel + merge kernel) and Triton; same run, cold L2, medians of 5
interleaved. Variants: ws (shipped plan), ws8 (ws with 8 context splits: 72 blocks at batch 1), wsc (the
cluster plan), wscN (clusters of N forced).

usage: python .clab.py OUT [build]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path


def main() -> None:
    from gorgon.kernels import cuda_ops

    ext = cuda_ops.extension()
    if len(sys.argv) > 2 and sys.argv[2] == "build":
        print("built")
        return
    import torch

    from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
    from gorgon.bench.timing import copy_bandwidth
    from gorgon.kernels.tree_attention import tree_attention

    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    bw = copy_bandwidth("cuda")
    log = open(out_dir / "clab.jsonl", "a")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")

    emit({"capacity_d128": cuda_ops._cluster_capacity(ext, 0, 128), "capacity_d64": cuda_ops._cluster_capacity(ext, 0, 64)})
    heads = {"llama": (32, 8, 128), "smollm2": (9, 3, 64)}
    cases_list = json.loads(os.environ["CASES"])
    for shape, batch, n, p, names in cases_list:
        hq, hkv, d = heads[shape]
        scale = d**-0.5
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        kv_len = p + n
        tag = {"shape": shape, "batch": batch, "n": n, "p": p}

        def run(name):
            if name == "triton":
                return lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale)
            base = name.rstrip("0123456789")
            code = cuda_ops.KERNELS[base]
            splits = int(name[len(base):]) if name != base else None
            return lambda c: cuda_ops.launch(ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale,
                                             torch.empty_like(c[0]), splits)  # fmt: skip

        ref = run("ws")(cases[0]).float()
        errs = {name: round((run(name)(cases[0]).float() - ref).abs().max().item(), 5) for name in names}
        plan = cuda_ops.cluster_plan(ext, cases[0][0], cases[0][1], kv_len)
        emit({**tag, "check": "max |x - ws|", "errs": errs, "wsc_plan": plan,
              "ws_plan": cuda_ops.split_plan(cases[0][0], cases[0][1], kv_len, cuda_ops.KERNELS["ws"])})
        variants = {name: run(name) for name in names}
        res = {k: [] for k in variants}
        for _ in range(5):
            for name, fn in variants.items():
                res[name].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in cases]) * 1e3)
        floor = kv_bytes(batch, kv_len, hkv, d) / bw * 1e6
        for name, ts in res.items():
            us = statistics.median(ts)
            emit({**tag, "variant": name, "us": round(us, 3), "x_floor": round(us / floor, 3),
                  "spread": round(max(ts) - min(ts), 3), "floor_us": round(floor, 3)})  # fmt: skip
        del cases
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
