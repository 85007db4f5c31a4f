"""L2 policy study (2026-11-28), round 2: K/V tiles evict-first in the ws kernel (shipped) against normal
(noev); 16-byte partial stores (qs), a warp a merge row (mw1), evict-first cp.async in the mma kernels
(cpev); same run, cold L2, medians of 5 interleaved; timelines with and without the partial stores.

usage: python .l2probe.py OUT [build NAME]
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("wt", HERE / ".ws_timeline.py")
wt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wt)

FLAGS = {
    "noev": ["-DGORGON_WS_EVICT=0"],
    "qs": ["-DGORGON_QUAD_STORE=1"],
    "mw1": ["-DGORGON_MERGE_W=1"],
    "cpev": ["-DGORGON_CP_EVICT=1"],
}
NO_STORE = ("    *reinterpret_cast<uint32_t*>(dst + 8 * j) = pack2<T>(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);\n")


def get(name: str):
    from gorgon.kernels import cuda_ops

    if name == "ship":
        return cuda_ops.extension()  # sets the architecture list the other builds use
    if name == "old":  # the sources before round 4 (evict-first, 4-byte partial stores)
        return cuda_ops.build("gorgon_old", [HERE / ".old" / "tree_attention.cu", HERE / ".old" / "binding.cpp"],
                              "old", ["-lineinfo"])  # fmt: skip
    if name.startswith("tl"):
        folder = Path(f"build/study/{name}")
        src = wt.timeline_sources(folder)
        flags = {"tl": [], "tlqs": ["-DGORGON_QUAD_STORE=1"], "tlns": []}[name]
        if name == "tlns":  # write_row without its partial stores: what they cost (wrong output)
            cu = src[0].read_text()
            assert cu.count(NO_STORE) == 1
            src[0].write_text(cu.replace(NO_STORE, "    (void)0;\n"))
        return cuda_ops.build(f"gorgon_{name}", src, name, ["-lineinfo", *flags])
    return cuda_ops.build(f"gorgon_{name}", cuda_ops.SOURCES, name, ["-lineinfo", *FLAGS[name]])


def timeline(ext, cases, kv_len, scale, batch, n, hkv, hq, fuse=False):
    import torch

    from gorgon.kernels import cuda_ops

    times = torch.zeros(65536 + 4 * 4096, dtype=torch.int64, device="cuda")
    stamps = torch.zeros(4, dtype=torch.int64, device="cuda")
    ext.set_times(times)
    code = cuda_ops.KERNELS["ws"]
    run = lambda c: cuda_ops.launch(ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale,
                                    torch.empty_like(c[0]), None, fuse)  # fmt: skip
    for c in cases:
        run(c)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i, c in enumerate(cases):
            if i == len(cases) - 1:
                ext.stamp(stamps, 0)
            run(c)
        ext.stamp(stamps, 1)
    nsplit, _ = cuda_ops.split_plan(cases[0][0], cases[0][1], kv_len, code)
    blocks = batch * hkv * -(-n * (hq // hkv) // 128) * nsplit
    rows = batch * n * hq
    merge_blocks = 0 if fuse else -(-rows // (1 if rows < 1024 else 4))
    reps = []
    for _ in range(7):
        graph.replay()
        torch.cuda.synchronize()
        reps.append(wt.summarize(times.cpu(), stamps.cpu(), blocks, nsplit, merge_blocks))
    del graph
    return {"nsplit": nsplit, "blocks": blocks,
            **{k: statistics.median(r[k] for r in reps) if reps[0][k] is not None else None for k in reps[0]}}


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
    from gorgon.kernels.tree_attention import tree_attention

    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("ROUND") == "4":
        exts = {name: get(name) for name in ("ship", "old")}
        tls = {}
    elif os.environ.get("ROUND") == "3":
        exts = {name: get(name) for name in ("ship", "noev")}
        tls = {}
    else:
        exts = {name: get(name) for name in ("ship", "noev", "qs", "mw1", "cpev")}
        tls = {name: get(name) for name in ("tl", "tlns", "tlqs")}
    bw = copy_bandwidth("cuda")
    log = open(out_dir / "l2probe.jsonl", "w")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")

    heads = {"llama": (32, 8, 128), "smollm2": (9, 3, 64)}
    ws_all = ["triton", "noev", "ship", "qs", "mw1"]
    cases_list = [
        (("llama", 1, 1, 8192), ws_all),
        (("llama", 1, 16, 8192), ws_all),
        (("llama", 1, 64, 8192), ["triton", "noev", "ship", "mw1"]),
        (("smollm2", 1, 16, 256), ["triton", "ship", "cpev", "qs"]),
        (("llama", 1, 16, 2048), ["triton", "ship", "cpev", "qs"]),
        (("llama", 1, 64, 512), ["triton", "ship", "cpev", "qs"]),
        (("llama", 8, 64, 8192), ["triton", "noev", "ship"]),
        (("llama", 8, 1, 8192), ["triton", "noev", "ship", "qs"]),
        (("smollm2", 1, 64, 8192), ["triton", "noev", "ship", "qs"]),
    ]
    if os.environ.get("ROUND") == "4":  # write_row's 16-byte stores in the ws kernel at 17-64 rows
        cases_list = [
            (("llama", 1, 16, 8192), ["triton", "old", "ship"]),
            (("smollm2", 8, 8, 8192), ["triton", "old", "ship"]),
            (("smollm2", 1, 16, 8192), ["triton", "old", "ship"]),
            (("llama", 2, 16, 8192), ["triton", "old", "ship"]),
            (("smollm2", 8, 16, 8192), ["triton", "old", "ship"]),
            (("llama", 1, 1, 8192), ["triton", "old", "ship"]),
        ]
    if os.environ.get("ROUND") == "3":  # shapes round 2 did not reach, ship against noev
        cases_list = [
            (("llama", 8, 64, 8192), ["triton", "noev", "ship"]),
            (("llama", 8, 1, 8192), ["triton", "noev", "ship"]),
            (("smollm2", 1, 64, 8192), ["triton", "noev", "ship"]),
            (("smollm2", 8, 16, 8192), ["triton", "noev", "ship"]),
            (("llama", 1, 128, 8192), ["triton", "noev", "ship"]),
        ]
    for (shape, batch, n, p), names in cases_list:
        hq, hkv, d = heads[shape]
        scale = d**-0.5
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        kv_len = p + n
        tag = {"shape": shape, "batch": batch, "n": n, "p": p}
        code = cuda_ops._kernel_code(cases[0][0], (cases[0][0], cases[0][1], cases[0][2], cases[0][0]), None, None, p)
        kname = {v: k for k, v in cuda_ops.KERNELS.items()}[code]

        def run(ext):
            return lambda c: cuda_ops.launch(
                ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0]))

        ref = run(exts["old" if "old" in exts else "noev"])(cases[0])
        bad = {}
        for name, ext in exts.items():
            err = (run(ext)(cases[0]).float() - ref.float()).abs().max().item()
            if err != 0.0:
                bad[name] = err
        emit({**tag, "kernel": kname, "check": "vs noev", "differs": bad})
        if batch == 1 and p == 8192 and shape == "llama" and kname == "ws" and n <= 16:
            for name, ext in tls.items():
                emit({**tag, "timeline": name, **timeline(ext, cases, kv_len, scale, batch, n, hkv, hq)})
        variants = {
            name: (lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale))
            if name == "triton" else run(exts[name])
            for name in names
        }
        res = {k: [] for k in variants}
        for _ in range(5):
            for name, fn in variants.items():
                res[name].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in cases]) * 1e3)
        floor = kv_bytes(batch, kv_len, hkv, d) / bw * 1e6
        for name, ts in res.items():
            us = statistics.median(ts)
            emit({**tag, "kernel": kname, "variant": name, "us": round(us, 3), "x_floor": round(us / floor, 3),
                  "spread": round(max(ts) - min(ts), 3), "floor_us": round(floor, 3)})  # fmt: skip
        del cases
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
