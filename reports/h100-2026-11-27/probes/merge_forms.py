"""Probe: merge-kernel variants at batch 1 (cold L2), against the shipped merge and the split kernel alone."""

# A one-off probe, kept as run: its closures are called inside the loop that binds them.
# ruff: noqa: B023, SIM115

import json
import os

import torch
import triton
import triton.language as tl

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import HEADS, _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth
from gorgon.kernels.tree_attention import Launch, tree_attention


@triton.jit
def _merge_rows(
    LSE,
    PART,
    OUT,
    PARTS,
    N,
    HQ,
    NROWS,
    sob,
    son,
    soh,
    BLOCK_S: tl.constexpr,
    D: tl.constexpr,
    R: tl.constexpr,
    PDL: tl.constexpr,
):
    if PDL:
        tl.extra.cuda.gdc_wait()
    row = tl.program_id(0) * R + tl.arange(0, R)
    live = row < NROWS
    b = row // (N * HQ)
    node = (row // HQ) % N
    head = row % HQ
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    inside = (s < PARTS)[None, :] & live[:, None]
    cell = row[:, None] * PARTS + s[None, :]
    part = tl.load(PART + cell[:, :, None] * D + d[None, None, :], mask=inside[:, :, None], other=0.0)
    lse = tl.load(LSE + cell, mask=inside, other=float("-inf"))
    top = tl.max(lse, 1)
    top = tl.where(top == float("-inf"), 0.0, top)
    w = tl.where(lse == float("-inf"), 0.0, tl.math.exp2(lse - top[:, None]))
    out = (
        tl.sum(part.to(tl.float32) * w[:, :, None], 1)
        / tl.where(tl.sum(w, 1) == 0, 1.0, tl.sum(w, 1))[:, None]
    )
    dst = OUT + b[:, None] * sob + node[:, None] * son + head[:, None] * soh + d[None, :]
    tl.store(dst, out.to(OUT.dtype.element_ty), mask=live[:, None])


class Variant:
    def __init__(self, r, warps):
        self.r, self.warps = r, warps

    def __getitem__(self, grid):
        def launch(lse, part, out, nparts, n, hq, sob, son, soh, BLOCK_S, D, PDL, launch_pdl=False):
            rows = grid[0]
            _merge_rows[(triton.cdiv(rows, self.r),)](
                lse,
                part,
                out,
                nparts,
                n,
                hq,
                rows,
                sob,
                son,
                soh,
                BLOCK_S=BLOCK_S,
                D=D,
                R=self.r,
                PDL=PDL,
                num_warps=self.warps,
                launch_pdl=launch_pdl,
            )

        return launch


class _Skip:
    def __getitem__(self, grid):
        return lambda *a, **k: None


VARIANTS = {
    "shipped": None,
    "skip": _Skip(),
    "r1w1": Variant(1, 1),
    "r1w4": Variant(1, 4),
    "r4w4": Variant(4, 4),
    "r8w4": Variant(8, 4),
    "r16w8": Variant(16, 8),
}
bw = copy_bandwidth("cuda")
out = []
for shape, b, n, p in [
    ("llama-3-8b", 1, 1, 8192),
    ("llama-3-8b", 1, 16, 8192),
    ("llama-3-8b", 1, 64, 8192),
    ("llama-3-8b", 1, 128, 8192),
    ("llama-3-8b", 1, 64, 2048),
    ("smollm2-135m", 1, 16, 8192),
    ("smollm2-135m", 1, 64, 8192),
    ("llama-3-8b", 8, 1, 8192),
]:
    hq, hkv, d = HEADS[shape]
    sets = input_sets(b, p + n, hkv, d, True)
    cases = [_case(b, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    scale, kv_len = d**-0.5, p + n
    floor = kv_bytes(b, p, hkv, d) / bw * 1e6

    def mk(launch):
        return [
            lambda c=c: tree_attention(
                c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, launch=launch
            )
            for c in cases
        ]

    c0 = cases[0]
    ref = tree_attention(c0[0], c0[1], c0[2], c0[3].committed, c0[3].bits, kv_len, scale).float()
    row = {"case": f"{shape} b{b} N{n} P{p}", "floor_us": round(floor, 2)}
    saved = ta._merge_kernel
    times = {}
    for rep in range(3):
        for name, v in VARIANTS.items():
            for pdl in (False, True):
                if pdl and name in ("skip",):
                    continue
                ta._merge_kernel = saved if v is None else v
                try:
                    if rep == 0 and name != "skip":
                        got = tree_attention(
                            c0[0],
                            c0[1],
                            c0[2],
                            c0[3].committed,
                            c0[3].bits,
                            kv_len,
                            scale,
                            launch=Launch(pdl=pdl),
                        ).float()
                        err = (got - ref).abs().max().item()
                        if err > 1e-2:
                            row[f"ERR {name} pdl={pdl}"] = err
                    times.setdefault(f"{name}{'+pdl' if pdl else ''}", []).append(
                        time_rotating(mk(Launch(pdl=pdl))) * 1e3
                    )
                finally:
                    ta._merge_kernel = saved
    for k_, vals in times.items():
        vals = sorted(vals)
        row[k_] = round(vals[len(vals) // 2], 2)
    print(json.dumps(row), flush=True)
    out.append(row)
json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp"), "probe_merge2.json"), "w"), indent=1)
