"""Timeline of the CUDA ws kernel at batch 1, Llama-3-8B heads, P=8192 (N=1 and 16): every block's SM and
%globaltimer at its start, first K tile landed, loop end and end (group 0's first thread), and the merge
kernel's blocks, between stamp kernels, in a CUDA graph of rotating inputs (the last call read cold).
Then the same-run times of the CUDA forms, study builds, and Triton.

usage: python .ws_timeline.py OUT [--patch-only DIR]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "gorgon" / "kernels" / "cuda"
TIMELINE = False
OLD = [Path(__file__).resolve().parent / ".old" / name for name in ("tree_attention.cu", "binding.cpp")]

HELPERS = """namespace gorgon {
__device__ unsigned long long* g_times;
__device__ __forceinline__ unsigned long long gtimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned smid_() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}
"""

TAIL = """
namespace gorgon {
__global__ void stamp_kernel(unsigned long long* t) { *t = gtimer(); }
void set_times(void* p) { cudaMemcpyToSymbol(g_times, &p, sizeof(p)); }
void stamp(void* p, cudaStream_t s) { stamp_kernel<<<1, 1, 0, s>>>((unsigned long long*)p); }
}  // namespace gorgon
"""


def sub(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def timeline_sources(folder: Path) -> list[Path]:
    cu = (SRC / "tree_attention.cu").read_text()
    cu = cu.replace("namespace gorgon {\n", HELPERS, 1)
    cu = sub(
        cu,
        "  const int n_tiles = hi > lo ? (int)((hi - lo + kWsBN - 1) / kWsBN) : 0;\n",
        "  const int n_tiles = hi > lo ? (int)((hi - lo + kWsBN - 1) / kWsBN) : 0;\n"
        "  const unsigned long long t_start = gtimer();\n  unsigned long long t_first = 0, t_loop = 0;\n",
    )
    cu = sub(cu, "    mbar_wait(full_k(0), 0);\n", "    mbar_wait(full_k(0), 0);\n    t_first = gtimer();\n")
    cu = sub(cu, "  // Where both groups compute at head_dim 128", "  t_loop = gtimer();\n  // Where both groups compute at head_dim 128")
    cu = sub(
        cu,
        "  // the computing consumer groups (warps 0",
        "  if (gtid == 0 && group == 0) {\n"
        "    unsigned long long* r = g_times + 8ull * ((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);\n"
        "    r[0] = smid_(); r[1] = t_start; r[2] = t_first; r[3] = t_loop; r[4] = gtimer();\n  }\n"
        "  // the computing consumer groups (warps 0",
    )
    cu = sub(
        cu,
        "  const int row = blockIdx.x * (kMergeWarps / W) + warp / W;  // (b * n + node) * hq + head\n",
        "  const int row = blockIdx.x * (kMergeWarps / W) + warp / W;  // (b * n + node) * hq + head\n"
        "  const unsigned long long t_ms = gtimer();\n",
    )
    cu = sub(
        cu,
        "      merge_row<T, D, W, false, kLoads>(a, live ? row : 0, live ? a.nsplit : 0, lane, part_of_row, acc);\n",
        "      merge_row<T, D, W, false, kLoads>(a, live ? row : 0, live ? a.nsplit : 0, lane, part_of_row, acc);\n"
        "  const unsigned long long t_mr = gtimer();\n",
    )
    cu = sub(
        cu,
        "  if (live) store_merged<T, D>(a, row, lane, acc, den);\n}\n",
        "  if (live) store_merged<T, D>(a, row, lane, acc, den);\n"
        "  if (threadIdx.x == 0) { unsigned long long* r = g_times + 65536 + 4ull * blockIdx.x;"
        " r[0] = smid_(); r[1] = t_ms; r[2] = gtimer(); r[3] = t_mr; }\n}\n",
    )
    cu += TAIL
    bind = (SRC / "binding.cpp").read_text()
    bind = sub(
        bind,
        "}  // namespace gorgon\n",
        "void set_times(void* p);\nvoid stamp(void* p, cudaStream_t s);\n}  // namespace gorgon\n",
    )
    bind = sub(
        bind,
        "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n",
        "void set_times(torch::Tensor t) { gorgon::set_times(t.data_ptr()); }\n"
        "void stamp(torch::Tensor t, int64_t i) {\n"
        "  gorgon::stamp((unsigned long long*)t.data_ptr() + i, at::cuda::getCurrentCUDAStream().stream());\n}\n"
        "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n"
        '  m.def("set_times", &set_times);\n  m.def("stamp", &stamp);\n',
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tree_attention.cu").write_text(cu)
    (folder / "binding.cpp").write_text(bind)
    return [folder / "tree_attention.cu", folder / "binding.cpp"]


STAGED_START = "  // The group's rows go out through its Q buffer"
STAGED_END = "  // the computing consumer groups (warps 0"
WRITE_ROW = (
    "#pragma unroll\n  for (int h = 0; h < 2; ++h)\n"
    "    write_row<T, D>(a, o, h, m[h], quad_sum(l[h]), b, kvh, row0 + gwarp * 16 + g + 8 * h, split, tq);\n"
)
PREFETCH = (
    '      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&maps.k)) : "memory");\n'
    '      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&maps.v)) : "memory");\n'
)


def variant_sources(folder: Path, stage: bool = True, prefetch: bool = True) -> list[Path]:
    """The shipped sources without the staged partial stores (write_row as before) or the prefetch."""
    cu = (SRC / "tree_attention.cu").read_text()
    if not stage:
        i, j = cu.index(STAGED_START), cu.index(STAGED_END)
        cu = cu[:i] + WRITE_ROW + cu[j:]
    if not prefetch:
        cu = sub(cu, PREFETCH, "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tree_attention.cu").write_text(cu)
    (folder / "binding.cpp").write_text((SRC / "binding.cpp").read_text())
    return [folder / "tree_attention.cu", folder / "binding.cpp"]


def summarize(times, stamps, blocks: int, nsplit: int, merge_blocks: int) -> dict:
    t0 = int(stamps[0])
    rec = times[: 8 * blocks].view(blocks, 8)[:, :5].tolist()
    ctx = [r for i, r in enumerate(rec) if i // (blocks // nsplit) < nsplit - 1]
    tree = [r for i, r in enumerate(rec) if i // (blocks // nsplit) == nsplit - 1]
    us = lambda t: (t - t0) / 1e3
    mrec = times[65536 : 65536 + 4 * merge_blocks].view(merge_blocks, 4).tolist()
    mean = statistics.mean
    return {
        "first_start": min(us(r[1]) for r in rec),
        "start_mean": mean(us(r[1]) for r in ctx),
        "start_max": max(us(r[1]) for r in ctx),
        "first_tile_wait_mean": mean((r[2] - r[1]) / 1e3 for r in ctx),
        "first_tile_at_mean": mean(us(r[2]) for r in ctx),
        "loop_end_mean": mean(us(r[3]) for r in ctx),
        "loop_end_min": min(us(r[3]) for r in ctx),
        "loop_end_max": max(us(r[3]) for r in ctx),
        "end_max": max(us(r[4]) for r in ctx),
        "write_mean": mean((r[4] - r[3]) / 1e3 for r in ctx),
        "tree_end_max": max(us(r[4]) for r in tree),
        "merge_start_min": min(us(r[1]) for r in mrec) if mrec else None,
        "merge_start_max": max(us(r[1]) for r in mrec) if mrec else None,
        "merge_end_max": max(us(r[2]) for r in mrec) if mrec else None,
        "merge_row_done_mean": statistics.mean(us(r[3]) for r in mrec) if mrec else None,
        "stamp_after": us(int(stamps[1])),
        "sms": len({r[0] for r in rec}),
    }


def main() -> None:
    if "--patch-only" in sys.argv:
        folder = Path(sys.argv[sys.argv.index("--patch-only") + 1])
        timeline_sources(folder / "timeline")

        return
    import torch

    from gorgon.bench.kernels import _case, input_sets, kv_bytes, time_rotating
    from gorgon.bench.timing import copy_bandwidth
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.tree_attention import tree_attention

    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path("build/study")
    ship = cuda_ops.extension()
    exts = {
        "new": ship,
        "old": cuda_ops.build("gorgon_old", OLD, "old", ["-lineinfo"]),
        "timeline": cuda_ops.build("gorgon_tl", timeline_sources(work / "timeline"), "tl", ["-lineinfo"]),
        "lateq": cuda_ops.build("gorgon_lq", cuda_ops.SOURCES, "lq", ["-lineinfo", "-DGORGON_WS_EARLY_Q=0"]),
    }
    times = torch.zeros(65536 + 4 * 4096, dtype=torch.int64, device="cuda")
    stamps = torch.zeros(4, dtype=torch.int64, device="cuda")
    exts["timeline"].set_times(times)
    bw = copy_bandwidth("cuda")
    log = open(out_dir / "ws_timeline.jsonl", "w")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")

    heads = {"llama": (32, 8, 128), "smollm2": (9, 3, 64)}
    cases_list = [("llama", 1, n, 8192) for n in (1, 16, 64)]
    for shape, batch, n, p in cases_list:
        hq, hkv, d = heads[shape]
        scale = d**-0.5
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        kv_len = p + n
        tag = {"shape": shape, "batch": batch, "n": n, "p": p}

        def cuda_run(ext, kernel, splits=None):
            code = cuda_ops.KERNELS[kernel]
            return lambda c: cuda_ops.launch(
                ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0]), splits
            )

        for kernel in ("ws",):
            ref = cuda_run(exts["old"], kernel)(cases[0])
            bad = {}
            for name, ext in exts.items():
                got = cuda_run(ext, kernel)(cases[0])
                err = (got.float() - ref.float()).abs().max().item()
                if err != 0.0:
                    bad[name] = err
            emit({**tag, "check": kernel, "differs": bad})

        if shape == "llama" and batch == 1 and n <= 16 and p == 8192 and TIMELINE:
            tl = exts["timeline"]
            run = cuda_run(tl, "ws")
            for c in cases:
                run(c)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i, c in enumerate(cases):
                    if i == len(cases) - 1:
                        tl.stamp(stamps, 0)
                    run(c)
                tl.stamp(stamps, 1)
            nsplit, _ = cuda_ops.split_plan(cases[0][0], cases[0][1], kv_len, cuda_ops.KERNELS["ws"])
            blocks = batch * hkv * -(-n * 4 // 128) * nsplit
            merge_blocks = -(-batch * n * hq // (1 if batch * n * hq < 1024 else 4))
            reps = []
            for _ in range(7):
                graph.replay()
                torch.cuda.synchronize()
                reps.append(summarize(times.cpu(), stamps.cpu(), blocks, nsplit, merge_blocks))
            med = {k: statistics.median(r[k] for r in reps) if reps[0][k] is not None else None for k in reps[0]}
            emit({**tag, "timeline": "ws (new)", "nsplit": nsplit, "blocks": blocks, **med})
            del graph

        auto = lambda ext: lambda c: cuda_ops.launch(
            ext, cuda_ops._kernel_code(c[0], (c[0], c[1], c[2], c[0]), None, None, p), c[0], c[1], c[2],
            c[3].committed, c[3].bits, kv_len, scale, torch.empty_like(c[0]))
        variants = {
            "triton": lambda c: tree_attention(c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len, scale),
            "old auto": auto(exts["old"]),
            "new auto": auto(ship),
        }
        for name in ("lateq",):
            variants[f"{name} auto"] = auto(exts[name])
        res = {k: [] for k in variants}
        for _ in range(5):
            for name, fn in variants.items():
                res[name].append(time_rotating([lambda c=c, fn=fn: fn(c) for c in cases]) * 1e3)
        floor = kv_bytes(batch, kv_len, hkv, d) / bw * 1e6
        for name, ts in res.items():
            us = statistics.median(ts)
            emit({**tag, "variant": name, "us": round(us, 3), "x_floor": round(us / floor, 3), "floor_us": round(floor, 3)})
        del cases
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
