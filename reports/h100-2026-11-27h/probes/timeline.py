"""Timeline of one tree-attention call (Triton kernel + merge) at batch 1, Llama-3-8B heads, P=8192, cold L2:
every program's SM and %globaltimer at its start and end, plus stamp kernels before and after, all in one
CUDA graph of `sets` calls on rotating inputs (as the kernel table times them). Also a read-only kernel
over the same K/V with the same grid, and a same-size copy, for the floor of each phase.

usage: python timeline.py OUT
"""

from __future__ import annotations

import inspect
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import triton
import triton.language as tl

import gorgon.kernels.tree_attention as ta
from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
from gorgon.bench.timing import copy_bandwidth

OUT = Path(sys.argv[1])
OUT.mkdir(parents=True, exist_ok=True)

STAMP = "tl.extra.cuda.globaltimer()"
SMID = "tl.extra.cuda.smid()"


def patched_module(name: str = "timed_kernels", stamps: bool = True, early: bool = False) -> object:
    """The Triton kernel and the merge kernel with stamps: [smid, start, loop end, end] a program. early:
    the PDL trigger at the program's start instead of after its loop."""
    src = inspect.getsource(ta._tree_attention_kernel.fn)
    if early:
        trig = "    if PDL:  # the merge may be scheduled once every program has come this far (it waits for the end)\n        tl.extra.cuda.gdc_launch_dependents()\n"
        assert trig in src
        src = src.replace(trig, "", 1)
        src = src.replace("sp = tl.program_id(2)\n", "sp = tl.program_id(2)\n    if PDL:\n        tl.extra.cuda.gdc_launch_dependents()\n", 1)
    if not stamps:
        return _write_module(name, src + "\n")
    src = src.replace("sob, son, soh,\n", "sob, son, soh, TIMES,\n", 1)
    src = src.replace("sp = tl.program_id(2)\n", f"sp = tl.program_id(2)\n    t_start = {STAMP}\n", 1)
    src = src.replace("    out = acc / tl.where(l_i", f"    t_loop = {STAMP}\n    out = acc / tl.where(l_i", 1)
    pid = "(sp * tl.num_programs(1) + mb) * tl.num_programs(0) + bh"
    tail = (
        f"    t_end = {STAMP}\n"
        f"    base = TIMES + ({pid}) * 4\n"
        f"    tl.store(base, {SMID}.to(tl.int64))\n"
        "    tl.store(base + 1, t_start)\n    tl.store(base + 2, t_loop)\n    tl.store(base + 3, t_end)\n"
    )
    src = src.rstrip() + "\n" + tail
    msrc = inspect.getsource(ta._merge_kernel.fn)
    msrc = msrc.replace("PDL: tl.constexpr\n", "PDL: tl.constexpr, TIMES=None\n", 1)
    msrc = msrc.replace("    row = tl.program_id(0)", f"    t_start = {STAMP}\n    row = tl.program_id(0)", 1)
    msrc = msrc.rstrip() + (
        f"\n    t_end = {STAMP}\n    base = TIMES + row * 3\n    tl.store(base, {SMID}.to(tl.int64))\n"
        "    tl.store(base + 1, t_start)\n    tl.store(base + 2, t_end)\n"
    )
    assert "TIMES," in src and "t_loop" in src and "t_start" in msrc
    code = "import triton\nimport triton.language as tl\nfrom gorgon.kernels.tree_attention import _online\n\n"
    code += src + "\n\n" + msrc + "\n\n"
    code += (
        "@triton.jit\ndef stamp_kernel(T):\n"
        f"    tl.store(T, {STAMP})\n"
        "\n\n@triton.jit\ndef read_kernel(K, V, SINK, TIMES, SPLIT, SLOTS, skh, sks, HKV, D: tl.constexpr, BLOCK: tl.constexpr):\n"
        "    bh = tl.program_id(0)\n    sp = tl.program_id(1)\n"
        f"    t_start = {STAMP}\n"
        "    d = tl.arange(0, D)\n    acc = tl.zeros([BLOCK, D], tl.float32)\n"
        "    lo = sp * SPLIT\n    hi = tl.minimum(lo + SPLIT, SLOTS)\n"
        "    for n0 in range(lo, hi, BLOCK):\n"
        "        c = n0 + tl.arange(0, BLOCK)\n        m = c < hi\n"
        "        k = tl.load(K + bh * skh + c[:, None] * sks + d[None, :], mask=m[:, None], other=0.0)\n"
        "        v = tl.load(V + bh * skh + c[:, None] * sks + d[None, :], mask=m[:, None], other=0.0)\n"
        "        acc += k.to(tl.float32) * v.to(tl.float32)\n"
        "    tl.store(SINK + (sp * tl.num_programs(0) + bh) * D + d, tl.sum(acc, 0))\n"
        f"    t_end = {STAMP}\n"
        "    base = TIMES + (sp * tl.num_programs(0) + bh) * 4\n"
        f"    tl.store(base, {SMID}.to(tl.int64))\n"
        "    tl.store(base + 1, t_start)\n    tl.store(base + 2, t_end)\n    tl.store(base + 3, t_end)\n"
    )
    return _write_module(name, code, header=False)


def _write_module(name: str, code: str, header: bool = True) -> object:
    import importlib

    if header:
        code = "import triton\nimport triton.language as tl\nfrom gorgon.kernels.tree_attention import _online\n\n" + code
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(code)
    sys.path.insert(0, str(path.parent))
    return importlib.import_module(name)


tk = patched_module()
tk_early = patched_module("timed_early", early=True)
plain_early = patched_module("plain_early", stamps=False, early=True)


class Timed:
    """Stands in for a kernel of tree_attention: launches the stamped copy with this call's buffer."""

    def __init__(self, kernel, slots: int):
        self.kernel, self.slots, self.buf = kernel, slots, None

    def __getitem__(self, grid):
        def launch(*args, **kw):
            n = grid[0] * (grid[1] if len(grid) > 1 else 1) * (grid[2] if len(grid) > 2 else 1)
            self.buf = torch.zeros(n, self.slots, dtype=torch.int64, device="cuda")
            self.grid = grid
            return self.kernel[grid](*args, TIMES=self.buf, **kw)

        return launch

    def warmup(self, *args, **kw):
        return ta._tree_attention_kernel_orig.warmup(*args, **kw)


ta._tree_attention_kernel_orig = ta._tree_attention_kernel


def timeline(n: int, p: int, hq: int = 32, hkv: int = 8, d: int = 128, launch=ta.DEFAULT_LAUNCH, mod=None) -> dict:
    mod = mod or tk
    sets = input_sets(1, p + n, hkv, d, True)
    cases = [_case(1, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    calls = []
    for q, k, v, tree in cases:
        att, mrg = Timed(mod._tree_attention_kernel, 4), Timed(mod._merge_kernel, 3)
        stamps = torch.zeros(2, dtype=torch.int64, device="cuda")
        calls.append((q, k, v, tree, att, mrg, stamps))

    def run_all():
        for q, k, v, tree, att, mrg, stamps in calls:
            ta._tree_attention_kernel, ta._merge_kernel = att, mrg
            tk.stamp_kernel[(1,)](stamps)
            ta.tree_attention(q, k, v, tree.committed, tree.bits, p + n, d**-0.5, launch=launch)
            tk.stamp_kernel[(1,)](stamps[1:])
        ta._tree_attention_kernel = ta._tree_attention_kernel_orig

    run_all()  # compile, and the plans' occupancy queries
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run_all()
    ta._tree_attention_kernel = ta._tree_attention_kernel_orig
    rows = []
    for rep in range(7):
        graph.replay()
        torch.cuda.synchronize()
        for q, k, v, tree, att, mrg, stamps in calls:
            s = stamps.tolist()
            a = att.buf.tolist()
            m = mrg.buf.tolist() if mrg.buf is not None else []
            t0 = s[0]
            rec = {
                "rep": rep,
                "total_us": (s[1] - t0) / 1e3,
                "att_first_start": (min(x[1] for x in a) - t0) / 1e3,
                "att_last_start": (max(x[1] for x in a) - t0) / 1e3,
                "att_first_end": (min(x[3] for x in a) - t0) / 1e3,
                "att_last_end": (max(x[3] for x in a) - t0) / 1e3,
                "att_med_dur": statistics.median((x[3] - x[1]) / 1e3 for x in a),
                "att_max_dur": max((x[3] - x[1]) / 1e3 for x in a),
                "att_med_epilogue": statistics.median((x[3] - x[2]) / 1e3 for x in a),
                "programs": len(a),
                "sms_used": len({x[0] for x in a}),
                "max_per_sm": max(sum(1 for x in a if x[0] == sm) for sm in {x[0] for x in a}),
            }
            if m:
                rec.update(
                    merge_first_start=(min(x[1] for x in m) - t0) / 1e3,
                    merge_last_end=(max(x[2] for x in m) - t0) / 1e3,
                    merge_programs=len(m),
                )
            rows.append(rec)
    raw = {"grid": list(calls[-1][4].grid), "att": calls[-1][4].buf.tolist(), "stamps": calls[-1][6].tolist(),
           "merge": calls[-1][5].buf.tolist() if calls[-1][5].buf is not None else []}
    keys = [k for k in rows[0] if k != "rep"]
    summary = {k: statistics.median(r[k] for r in rows[len(calls):]) for k in keys}
    return {"n": n, "p": p, "hq": hq, "hkv": hkv, "d": d, "summary": summary, "raw_last": raw}


def read_timeline(p: int, hkv: int = 8, d: int = 128, splits: int = 16, block: int = 64) -> dict:
    """The read-only kernel: programs (hkv x splits), each summing k*v over its slots."""
    sets = input_sets(1, p, hkv, d, True)
    ks = [torch.randn(p, hkv, d, device="cuda", dtype=torch.bfloat16) for _ in range(2 * sets)]
    sink = torch.empty(splits * hkv * d, device="cuda")
    bufs = [torch.zeros(splits * hkv, 4, dtype=torch.int64, device="cuda") for _ in range(sets)]
    stamps = [torch.zeros(2, dtype=torch.int64, device="cuda") for _ in range(sets)]
    split = triton.cdiv(p, splits)

    def run_all():
        for i in range(sets):
            tk.stamp_kernel[(1,)](stamps[i])
            k, v = ks[2 * i], ks[2 * i + 1]
            tk.read_kernel[(hkv, splits)](k, v, sink, bufs[i], split, p, k.stride(1), k.stride(0), hkv, D=d, BLOCK=block)
            tk.stamp_kernel[(1,)](stamps[i][1:])

    run_all()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run_all()
    rows = []
    for _ in range(7):
        graph.replay()
        torch.cuda.synchronize()
        for i in range(sets):
            s, a = stamps[i].tolist(), bufs[i].tolist()
            rows.append({
                "total_us": (s[1] - s[0]) / 1e3,
                "first_start": (min(x[1] for x in a) - s[0]) / 1e3,
                "last_end": (max(x[3] for x in a) - s[0]) / 1e3,
                "med_dur": statistics.median((x[3] - x[1]) / 1e3 for x in a),
            })
    summary = {k: statistics.median(r[k] for r in rows[sets:]) for k in rows[0]}
    ms = time_rotating([lambda i=i: tk.read_kernel[(hkv, splits)](ks[2 * i], ks[2 * i + 1], sink, bufs[i], split, p, ks[0].stride(1), ks[0].stride(0), hkv, D=d, BLOCK=block) for i in range(sets)])  # noqa: E501
    return {"p": p, "splits": splits, "block": block, "summary": summary, "graph_us": ms * 1e3}


def timed(n: int, p: int, launch, early: bool, hq: int = 32, hkv: int = 8, d: int = 128) -> float:
    """us per call, the kernel table's way (cold L2, graphs), with the shipped kernel or the early trigger."""
    sets = input_sets(1, p + n, hkv, d, True)
    cases = [_case(1, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    if early:
        ta._tree_attention_kernel = plain_early._tree_attention_kernel
    try:
        fns = [lambda q=q, k=k, v=v, t=t: ta.tree_attention(q, k, v, t.committed, t.bits, p + n, d**-0.5, launch=launch) for q, k, v, t in cases]  # noqa: E501
        ref = ta.tree_attention(*cases[0][:3], cases[0][3].committed, cases[0][3].bits, p + n, d**-0.5, launch=ta.Launch(pdl=False))
        err = (fns[0]() - ref).abs().max().item()
        assert err < 1e-2, err
        return time_rotating(fns) * 1e3
    finally:
        ta._tree_attention_kernel = ta._tree_attention_kernel_orig


VARIANTS = {
    "auto": (ta.Launch(), False),
    "pdl": (ta.Launch(pdl=True), False),
    "pdl_early": (ta.Launch(pdl=True), True),
    "nosplit_tree": (ta.Launch(tree_split=False), False),
    "nosplit_tree_pdl_early": (ta.Launch(tree_split=False, pdl=True), True),
}


def main2() -> None:
    """Round 2: the timeline and the table's timing of each variant."""
    bw = copy_bandwidth("cuda")
    res = {"copy_bandwidth": bw, "floor_us": {n: kv_bytes(1, 8192 + n, 8, 128) / bw * 1e6 for n in (1, 16, 64)}}
    print(json.dumps(res))
    for n in (1, 16, 64):
        for name, (launch, early) in VARIANTS.items():
            r = timeline(n, 8192, launch=launch, mod=tk_early if early else tk)
            print(n, name, json.dumps(r["summary"]))
            res[f"n{n}_{name}"] = r
    rows = []
    for rep in range(3):
        for n in (1, 16, 64):
            for name, (launch, early) in VARIANTS.items():
                row = {"n": n, "variant": name, "rep": rep, "us": timed(n, 8192, launch, early)}
                print(json.dumps(row))
                rows.append(row)
    res["timed"] = rows
    (OUT / "timeline2.json").write_text(json.dumps(res))


def main() -> None:
    bw = copy_bandwidth("cuda")
    floor_us = kv_bytes(1, 8192 + 16, 8, 128) / bw * 1e6
    res = {"copy_bandwidth": bw, "floor_us_n16": floor_us}
    print(json.dumps(res))
    for n in (1, 16, 64):
        r = timeline(n, 8192)
        print(n, json.dumps(r["summary"]))
        res[f"n{n}"] = r
    for splits, block in ((16, 64), (17, 64), (32, 64), (64, 64), (16, 128)):
        r = read_timeline(8192, splits=splits, block=block)
        print("read", splits, block, json.dumps(r["summary"]), r["graph_us"])
        res[f"read_{splits}_{block}"] = r
    (OUT / "timeline.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main2() if len(sys.argv) > 2 and sys.argv[2] == "2" else main()
