"""Cluster form study (2026-11-28b), round 2: where the cluster form's time goes. A timeline build of the
cluster kernel (each block's SM and %globaltimer at its start, first K tile, loop end, after the first
cluster barrier, after its merge, after the second barrier; group 0's first thread), between stamp kernels
in a CUDA graph of rotating inputs; and the ws kernel launched as clusters without using them (`wscl`:
GORGON_STUDY_CLUSTER_LAUNCH), which isolates the cost of launching clusters.

usage: python .cltl.py OUT [build NAME]
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
SRC = HERE.parent / "src" / "gorgon" / "kernels" / "cuda"
sub = wt.sub

LAUNCH_OLD = """  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes);
  if (err != cudaSuccess) return err;
  dim3 grid(batch * a.hkv, (rows + 127) / 128, a.nsplit);
  kernel<<<grid, fa2::kWsThreads, L::bytes, stream>>>(a, maps);
"""
LAUNCH_NEW = """  dim3 grid(batch * a.hkv, (rows + 127) / 128, a.nsplit);
  if (a.nsplit > 1 && a.nsplit <= 16) {  // study: the same kernel launched as clusters of its splits
    cudaLaunchAttribute attr[1];
    const cudaLaunchConfig_t config = cluster_config(kernel, grid, a.nsplit, L::bytes, stream, attr);
    cudaLaunchKernelEx(&config, kernel, a, maps);
  } else {
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes);
    if (err != cudaSuccess) return err;
    kernel<<<grid, fa2::kWsThreads, L::bytes, stream>>>(a, maps);
  }
"""


def sources(name: str, folder: Path) -> list[Path]:
    cu = (SRC / "tree_attention.cu").read_text()
    bind = (SRC / "binding.cpp").read_text()
    if name == "wscl":
        cu = sub(cu, LAUNCH_OLD, LAUNCH_NEW)
    if name == "tl":
        cu = cu.replace("namespace gorgon {\n", wt.HELPERS, 1)
        cu = sub(cu, "  const int n_tiles = hi > lo ? (int)((hi - lo + kWsBN - 1) / kWsBN) : 0;\n",
                 "  const int n_tiles = hi > lo ? (int)((hi - lo + kWsBN - 1) / kWsBN) : 0;\n"
                 "  const unsigned long long t_start = gtimer();\n  unsigned long long t_first = 0, t_loop = 0;\n")
        cu = sub(cu, "    mbar_wait(full_k(0), 0);\n", "    mbar_wait(full_k(0), 0);\n    t_first = gtimer();\n")
        cu = sub(cu, "  if constexpr (kCluster) {\n    // The group's rows",
                 "  t_loop = gtimer();\n  if constexpr (kCluster) {\n    // The group's rows")
        cu = sub(cu, "    cluster_sync();\n    merge_cluster();\n    cluster_sync();\n    return;\n  }\n  // Where both",
                 "    cluster_sync();\n    const unsigned long long t_s1 = gtimer();\n    merge_cluster();\n"
                 "    const unsigned long long t_m = gtimer();\n    cluster_sync();\n"
                 "    if (gtid == 0 && group == 0) {\n"
                 "      unsigned long long* r = g_times + 8ull * ((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);\n"
                 "      r[0] = smid_(); r[1] = t_start; r[2] = t_first; r[3] = t_loop; r[4] = t_s1; r[5] = t_m; r[6] = gtimer();\n"
                 "    }\n    return;\n  }\n  // Where both")  # fmt: skip
        cu += wt.TAIL
        bind = sub(bind, "}  // namespace gorgon\n",
                   "void set_times(void* p);\nvoid stamp(void* p, cudaStream_t s);\n}  // namespace gorgon\n")
        bind = sub(bind, "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n",
                   "void set_times(torch::Tensor t) { gorgon::set_times(t.data_ptr()); }\n"
                   "void stamp(torch::Tensor t, int64_t i) {\n"
                   "  gorgon::stamp((unsigned long long*)t.data_ptr() + i, at::cuda::getCurrentCUDAStream().stream());\n}\n"
                   "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n"
                   '  m.def("set_times", &set_times);\n  m.def("stamp", &stamp);\n')  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tree_attention.cu").write_text(cu)
    (folder / "binding.cpp").write_text(bind)
    return [folder / "tree_attention.cu", folder / "binding.cpp"]


def get(name: str):
    from gorgon.kernels import cuda_ops

    if name == "ship":
        return cuda_ops.extension()
    return cuda_ops.build(f"gorgon_{name}", sources(name, Path(f"build/study/{name}")), name, ["-lineinfo"])


def timeline(ext, cases, kv_len, scale, splits):
    import torch

    from gorgon.kernels import cuda_ops

    times = torch.zeros(65536, dtype=torch.int64, device="cuda")
    stamps = torch.zeros(4, dtype=torch.int64, device="cuda")
    ext.set_times(times)
    code = cuda_ops.KERNELS["wsc"]
    run = lambda c: cuda_ops.launch(ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale,
                                    torch.empty_like(c[0]), splits)  # fmt: skip
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
    q, k = cases[0][0], cases[0][1]
    nsplit = cuda_ops.cluster_plan(ext, q, k, kv_len, splits)
    blocks = q.shape[0] * k.shape[2] * -(-q.shape[1] * (q.shape[2] // k.shape[2]) // 128) * nsplit
    reps = []
    for _ in range(7):
        graph.replay()
        torch.cuda.synchronize()
        t0 = int(stamps[0])
        rec = times[: 8 * blocks].view(blocks, 8)[:, :7].tolist()
        us = lambda t: (t - t0) / 1e3
        col = lambda i: [us(r[i]) for r in rec]
        mean = statistics.mean
        reps.append({
            "start_min": min(col(1)), "start_mean": mean(col(1)), "start_max": max(col(1)),
            "first_tile_mean": mean(col(2)), "loop_end_mean": mean(col(3)), "loop_end_max": max(col(3)),
            "sync1_mean": mean(col(4)), "sync1_max": max(col(4)), "merged_mean": mean(col(5)),
            "merged_max": max(col(5)), "end_max": max(col(6)), "stamp_after": us(int(stamps[1])),
            "sms": len({r[0] for r in rec}),
        })  # fmt: skip
    del graph
    return {"nsplit": nsplit, "blocks": blocks, **{k: round(statistics.median(r[k] for r in reps), 3) for k in reps[0]}}


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

    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    exts = {name: get(name) for name in ("ship", "wscl", "tl")}
    bw = copy_bandwidth("cuda")
    log = open(out_dir / "cltl.jsonl", "a")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")

    heads = {"llama": (32, 8, 128), "smollm2": (9, 3, 64)}
    for shape, batch, n, p, tls, names in json.loads(os.environ["CASES"]):
        hq, hkv, d = heads[shape]
        scale = d**-0.5
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        kv_len = p + n
        tag = {"shape": shape, "batch": batch, "n": n, "p": p}
        for splits in tls:
            emit({**tag, "timeline": splits, **timeline(exts["tl"], cases, kv_len, scale, splits or None)})

        def run(name):
            ext, base = exts["wscl" if name.startswith("wscl") else "ship"], name.removeprefix("wscl")
            base = base or "ws"
            kernel = base.rstrip("0123456789")
            splits = int(base[len(kernel):]) if base != kernel else None
            code = cuda_ops.KERNELS[kernel]
            return lambda c: cuda_ops.launch(ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale,
                                             torch.empty_like(c[0]), splits)  # fmt: skip

        variants = {name: run(name) for name in names}
        res = {k: [] for k in variants}
        for _ in range(5):
            for name, fn in variants.items():
                res[name].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in cases]) * 1e3)
        floor = kv_bytes(batch, kv_len, hkv, d) / bw * 1e6
        for name, ts in res.items():
            us = statistics.median(ts)
            emit({**tag, "variant": name, "us": round(us, 3), "x_floor": round(us / floor, 3),
                  "spread": round(max(ts) - min(ts), 3)})  # fmt: skip
        del cases
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
