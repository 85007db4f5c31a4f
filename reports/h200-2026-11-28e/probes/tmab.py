"""Study (2026-11-28e). Round 2: the same with the flag code compiled out of the default build, and fls:
the flag wait with a 64 ns sleep between polls (GORGON_MERGE_FLAGS=2). Round 1: with merge_w2 shipped (auto: two warps a merged row where the merge is a PDL
launch), the ws kernel's PDL merge waiting on each row block's ready count instead of the attention grid's end
(fl: GORGON_MERGE_FLAGS=1; fl1 with GORGON_PDL=1, auto1 its baseline), against HEAD 3b06d3e (old); outputs
against float64 on the GPU tests' ragged cases, fl against auto to the bit; the block counters zero after;
same run, cold L2, medians of REPEATS interleaved.

usage: python .tmab.py OUT [build NAME]
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLAGS = {"fl": ["-DGORGON_MERGE_FLAGS=1"], "fls": ["-DGORGON_MERGE_FLAGS=2"], "str": ["-DGORGON_WS_STRIDE=1"], "cv": ["-DGORGON_MERGE_CARVEOUT=1"],
         "both": ["-DGORGON_WS_STRIDE=1", "-DGORGON_MERGE_CARVEOUT=1"], "warm": ["-DGORGON_WS_WARM=1"],
         "nost": ["-DGORGON_WS_NOSTORE=1"], "pdl1": ["-DGORGON_WS_PDL=1"], "pdl2": ["-DGORGON_WS_PDL=2"],
         "at3": ["-DGORGON_WS_PDL_AT=3"], "w1": ["-DGORGON_MERGE_W=1"], "w2": ["-DGORGON_MERGE_W=2"]}
SPLITS = {"s11": 11}  # context splits forced (launch's `splits`)
# GORGON_PDL (None: unset, the default policy): the merge launched as a programmatic dependent
ENV = {"auto0": "0", "fls": None, "fl": None, "fl1": "1", "auto1": "1", "pdl0": "1", "pdl1": "1", "pdl2": "1", "ship1": "1", "at3": "1", "auto": None, "w1": None, "w2": None,
       "s11": None}
TIMING_ONLY = {"nost"}  # wrong outputs by design
TILE: dict[str, int] = {}  # split tiles (default 128)
BUILD = {"auto0": "ship", "fl1": "fl", "auto1": "ship", "pdl0": "ship", "ship0": "ship", "ship1": "ship", "auto": "ship", "s11": "ship"}  # their builds


def get(name: str):
    from gorgon.kernels import cuda_ops

    name = BUILD.get(name, name)
    if name == "ship":
        return cuda_ops.extension()
    if name == "old":
        return cuda_ops.build("gorgon_old", [HERE / ".old" / "tree_attention.cu", HERE / ".old" / "binding.cpp"],
                              "old", ["-lineinfo"])  # fmt: skip
    return cuda_ops.build(f"gorgon_{name}", cuda_ops.SOURCES, name, ["-lineinfo", *FLAGS[name]])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[2] == "build":
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"
        get(sys.argv[3])
        print("built", sys.argv[3])
        return
    import torch

    from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
    from gorgon.bench.timing import copy_bandwidth
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.attention import block_counters
    from gorgon.kernels.tree_attention import tree_attention

    spec = importlib.util.spec_from_file_location("tk", HERE.parent / "tests" / "test_kernels_gpu.py")
    tk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tk)
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = os.environ.get("VARIANTS", "auto fl old").split()
    exts = {name: get(name) for name in names}
    log = open(out_dir / "tmab.jsonl", "a")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")

    def call(name, ext, code, q, k, v, tree, kv_len, scale, out):
        cuda_ops.WS_TILE = TILE.get(name, 128)
        env = ENV.get(name, "0")
        if env is None:
            os.environ.pop("GORGON_PDL", None)
        else:
            os.environ["GORGON_PDL"] = env
        try:
            return cuda_ops.launch(ext, code, q, k, v, tree.committed, tree.bits, kv_len, scale, out, SPLITS.get(name))
        finally:
            cuda_ops.WS_TILE = 128

    code = cuda_ops.KERNELS["ws"]
    bad, diffs = [], {}
    for n, hq, hkv, d in [(1, 32, 8, 128), (16, 32, 8, 128), (64, 32, 8, 128), (128, 32, 8, 128), (7, 9, 3, 64),
                          (64, 9, 3, 64), (16, 4, 4, 64), (33, 4, 4, 128), (128, 9, 3, 128)]:  # fmt: skip
        for dtype in (torch.bfloat16, torch.float16):
            for context in ("short", "long"):
                q, k, v, tree, kv_len, ref = tk._case(n, hq, hkv, d, dtype, context)
                outs = {}
                for name, ext in exts.items():
                    if name in TIMING_ONLY:
                        continue
                    out = torch.full_like(q, float("nan"))
                    call(name, ext, code, q, k, v, tree, kv_len, d**-0.5, out)
                    torch.cuda.synchronize()
                    outs[name] = out
                    try:
                        torch.testing.assert_close(out.double(), ref, **tk.TOL[dtype])
                    except AssertionError as e:
                        bad.append(f"{name} {n, hq, hkv, d, dtype, context}: {str(e)[:200]}")
                pairs = {"fl": "auto", "fls": "auto", "fl1": "auto1"}  # to the bit
                for name, out in outs.items():
                    base = outs[pairs.get(name, names[0])]
                    diff = (out.float() - base.float()).abs().max().item()
                    diffs[name] = max(diffs.get(name, 0.0), diff)
                    if name in pairs and diff != 0:
                        bad.append(f"{name} differs from {pairs[name]} {n, hq, hkv, d, dtype, context}: {diff}")
    counters = int(block_counters(torch.device("cuda", 0)).abs().sum())
    emit({"check": "float64, and fl/fl1 against auto/auto1 to the bit", "failures": bad[:20], "count": len(bad),
          "max_diff_vs_first": diffs, "counters": counters})  # fmt: skip

    bw = copy_bandwidth("cuda")
    heads = {"llama": (32, 8, 128), "smollm2": (9, 3, 64)}
    for shape, batch, n, p in json.loads(os.environ["CASES"]):
        hq, hkv, d = heads[shape]
        scale = d**-0.5
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        kv_len = p + n
        tag = {"shape": shape, "batch": batch, "n": n, "p": p}
        kcode = cuda_ops._kernel_code(cases[0][0], (cases[0][0], cases[0][1], cases[0][2], cases[0][0]), None, None, p)

        def run(name, ext):
            return lambda c: call(name, ext, kcode, c[0], c[1], c[2], c[3], kv_len, scale, torch.empty_like(c[0]))

        variants = {"triton": lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale)}
        variants.update({name: run(name, ext) for name, ext in exts.items()})
        res = {k: [] for k in variants}
        for _ in range(int(os.environ.get('REPEATS', '5'))):
            for name, fn in variants.items():
                res[name].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in cases]) * 1e3)
        floor = kv_bytes(batch, kv_len, hkv, d) / bw * 1e6
        kname = {v: k for k, v in cuda_ops.KERNELS.items()}[kcode]
        plans = {t: cuda_ops.split_plan(cases[0][0], cases[0][1], kv_len, kcode) for t in (64, 128)
                 if not setattr(cuda_ops, "WS_TILE", t)}  # fmt: skip
        cuda_ops.WS_TILE = 128
        for name, ts in res.items():
            nsplit = plans[TILE.get(name, 128)] if name != "triton" else None
            us = statistics.median(ts)
            emit({**tag, "kernel": kname, "nsplit": nsplit, "variant": name, "us": round(us, 3),
                  "x_floor": round(us / floor, 3), "spread": round(max(ts) - min(ts), 3)})  # fmt: skip
        del cases
        torch.cuda.empty_cache()
    emit({"counters_after": int(block_counters(torch.device("cuda", 0)).abs().sum())})


if __name__ == "__main__":
    main()
