"""Probe: where batch-1 time goes (cold L2): total, split kernel alone, pure read of the same bytes."""

# A one-off probe, kept as run: its closures are called inside the loop that binds them.
# ruff: noqa: B007, B023, SIM115

import json
import os

import torch
import triton
import triton.language as tl

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import HEADS, _case, copy_ms, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels.tree_attention import Launch, tree_attention


@triton.jit
def _read(K, V, OUT, PER, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    off = pid * PER + tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    for i in range(0, PER, BLOCK):
        acc += tl.load(K + off + i).to(tl.float32) + tl.load(V + off + i).to(tl.float32)
    tl.store(OUT + pid, tl.sum(acc, 0))


class _Skip:
    def __getitem__(self, grid):
        return lambda *a, **k: None


bw = copy_bandwidth("cuda")
out = []
for shape, b, n, p in [
    ("llama-3-8b", 1, 1, 8192),
    ("llama-3-8b", 1, 16, 8192),
    ("llama-3-8b", 1, 64, 8192),
    ("llama-3-8b", 8, 16, 8192),
]:
    hq, hkv, d = HEADS[shape]
    sets = input_sets(b, p + n, hkv, d, True)
    cases = [_case(b, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    scale, kv_len = d**-0.5, p + n
    floor = kv_bytes(b, p, hkv, d) / bw * 1e3

    def mk(launch):
        return [
            lambda c=c: tree_attention(
                c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, launch=launch
            )
            for c in cases
        ]

    row = {"case": f"{shape} b{b} N{n} P{p}", "floor_us": floor * 1e3}
    for rep in range(3):
        r = {}
        r["total"] = time_rotating(mk(Launch()))
        r["tree_split_off"] = time_rotating(mk(Launch(tree_split=False)))
        saved = ta._merge_kernel
        ta._merge_kernel = _Skip()
        try:
            r["split_only"] = time_rotating(mk(Launch()))
        finally:
            ta._merge_kernel = saved
        nel = cases[0][1].numel()
        progs = 132 * 4
        per = nel // progs // 4096 * 4096
        o = torch.empty(progs, device="cuda")
        r["read_kernel"] = time_rotating(
            [lambda c=c: _read[(progs,)](c[1], c[2], o, per, BLOCK=4096, num_warps=8) for c in cases]
        )
        r["read_kernel_bytes_frac"] = per * progs / nel
        r["copy"] = copy_ms(kv_bytes(b, p, hkv, d), sets)
        for k_, v_ in r.items():
            row.setdefault(k_, []).append(v_)
    for k_ in list(row):
        if isinstance(row[k_], list):
            vals = sorted(row[k_])
            row[k_] = vals[len(vals) // 2] * (1e3 if k_ != "read_kernel_bytes_frac" else 1)
    print(json.dumps(row), flush=True)
    out.append(row)
os.makedirs(os.environ.get("OUT", "/tmp"), exist_ok=True)
json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), "probe_merge.json"), "w"), indent=1)
