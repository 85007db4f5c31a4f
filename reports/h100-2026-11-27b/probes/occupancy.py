"""Probe: programs an SM of the Triton tree-attention kernel, estimated (_per_sm) against the driver's count
for the compiled kernel, and the split grids each gives, over the kernel table's cases and decode steps."""

# ruff: noqa: SIM115, E501

import json
import os

import torch

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import HEADS, _case
from gorgon.kernels.triton_ops import DECODE_LAUNCH

seen = {}
real_split = ta._split_size


def spy(span, programs, sms, tile, per_sm, launch=ta.DEFAULT_LAUNCH, tree_split=True):
    split = real_split(span, programs, sms, tile, per_sm, launch, tree_split)
    seen.update(programs=programs, per_sm=per_sm, nparts=-(-span // split) + tree_split, split=split)
    return split


ta._split_size = spy
rows = []
for shape, (hq, hkv, d) in HEADS.items():
    for batch in (1, 8):
        for n in (0, 1, 16, 64, 128):  # 0: a decode step (no tree slots, float32 partials)
            for p in (512, 2048, 8192):
                q, k, v, tree = _case(batch, max(n, 1), p, hq, hkv, d, torch.bfloat16)
                bits, tree_len = (None, 0) if n == 0 else (tree.bits, None)
                launch = DECODE_LAUNCH if n == 0 else ta.DEFAULT_LAUNCH
                row = dict(shape=shape, batch=batch, n=n, p=p)
                for name, occ in (("estimate", False), ("driver", True)):
                    seen.clear()
                    kv_len, lo = p + max(n, 1), ta.replace(launch, occupancy=occ)
                    ta.tree_attention(q, k, v, tree.committed, bits, kv_len, d**-0.5, tree_len=tree_len, launch=lo)
                    row[name] = dict(seen)
                rows.append(row)
                e, r = row["estimate"], row["driver"]
                flag = "" if e["per_sm"] == r["per_sm"] else "  <-- differs"
                case = f"{shape} b{batch} n{n} p{p}: programs {e['programs']}"
                print(f"{case}, per_sm {e['per_sm']} -> {r['per_sm']}, parts {e['nparts']} -> {r['nparts']}{flag}")
torch.cuda.synchronize()
out = os.environ.get("OUT", ".")
json.dump(rows, open(f"{out}/occupancy.json", "w"), indent=1)
