"""Study (2026-11-28c), round 7: why half-tile splits were 3 us slower. Timelines (every block's SM and
%globaltimer at its start, first K tile, loop end and end; the merge kernel's blocks) of the shipped ws
kernel (whole-tile splits) and of round 4's half-tile form (scripts/.half, splits in 64-slot multiples),
between stamp kernels in a CUDA graph of rotating inputs, Llama-3-8B heads, P=8192, batch 1 N=16 and 1,
batch 2 N=16.

usage: python .htl.py OUT
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("wt", HERE / ".ws_timeline.py")
wt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wt)
sub = wt.sub
ANCHOR = "  // kEarlyQ (launch_ws: where the first row block"


def timeline(src: Path, folder: Path) -> list[Path]:
    cu = src.joinpath("tree_attention.cu").read_text().replace("namespace gorgon {\n", wt.HELPERS, 1)
    cu = sub(cu, ANCHOR, "  const unsigned long long t_start = gtimer();\n  unsigned long long t_first = 0, t_loop = 0;\n"
             + ANCHOR)  # fmt: skip
    cu = sub(cu, "    mbar_wait(full_k(0), 0);\n", "    mbar_wait(full_k(0), 0);\n    t_first = gtimer();\n")
    cu = sub(cu, "  // Where both groups compute at head_dim 128",
             "  t_loop = gtimer();\n  // Where both groups compute at head_dim 128")  # fmt: skip
    cu = sub(cu, "  // the computing consumer groups (warps 0",
             "  if (gtid == 0 && group == 0) {\n"
             "    unsigned long long* r = g_times + 8ull * ((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);\n"
             "    r[0] = smid_(); r[1] = t_start; r[2] = t_first; r[3] = t_loop; r[4] = gtimer(); r[5] = n_tiles;\n  }\n"
             "  // the computing consumer groups (warps 0")  # fmt: skip
    cu = sub(cu, "  const int row = blockIdx.x * (kMergeWarps / W) + warp / W;  // (b * n + node) * hq + head\n",
             "  const int row = blockIdx.x * (kMergeWarps / W) + warp / W;  // (b * n + node) * hq + head\n"
             "  const unsigned long long t_ms = gtimer();\n")  # fmt: skip
    cu = sub(cu, "  if (live) store_merged<T, D>(a, row, lane, acc, den);\n}\n",
             "  if (live) store_merged<T, D>(a, row, lane, acc, den);\n"
             "  if (threadIdx.x == 0) { unsigned long long* r = g_times + 65536 + 4ull * blockIdx.x;"
             " r[0] = smid_(); r[1] = t_ms; r[2] = gtimer(); r[3] = 0; }\n}\n")  # fmt: skip
    cu += wt.TAIL
    bind = src.joinpath("binding.cpp").read_text()
    bind = sub(bind, "}  // namespace gorgon\n",
               "void set_times(void* p);\nvoid stamp(void* p, cudaStream_t s);\n}  // namespace gorgon\n")  # fmt: skip
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


def main() -> None:
    import torch

    from gorgon.bench.kernels import _case, input_sets
    from gorgon.kernels import cuda_ops

    import os

    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = {"whole": HERE.parent / "src" / "gorgon" / "kernels" / "cuda", "half": HERE / ".half"}
    only = sys.argv[3:] if len(sys.argv) > 2 and sys.argv[2] == "build" else list(srcs)
    tiles = {"whole": 128, "half": 64}
    exts = {k: cuda_ops.build(f"gorgon_tl_{k}", timeline(srcs[k], Path("build/study") / k), f"tl{k}", ["-lineinfo"])
            for k in only}  # fmt: skip
    if len(sys.argv) > 2 and sys.argv[2] == "build":
        return
    times = torch.zeros(65536 + 4 * 4096, dtype=torch.int64, device="cuda")
    stamps = torch.zeros(4, dtype=torch.int64, device="cuda")
    log = open(out_dir / "htl.jsonl", "w")  # noqa: SIM115
    code = cuda_ops.KERNELS["ws"]
    for batch, n in ((1, 16), (1, 1), (2, 16)):
        p, hq, hkv, d = 8192, 32, 8, 128
        scale, kv_len = d**-0.5, p + n
        cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(input_sets(batch, p + n, hkv, d, True))]
        for name, ext in exts.items():
            ext.set_times(times)
            cuda_ops.WS_TILE = tiles[name]
            nsplit, split = cuda_ops.split_plan(cases[0][0], cases[0][1], kv_len, code)
            run = lambda c, ext=ext: cuda_ops.launch(ext, code, c[0], c[1], c[2], c[3].committed, c[3].bits, kv_len,
                                                     scale, torch.empty_like(c[0]))  # fmt: skip
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
            cuda_ops.WS_TILE = 128
            blocks = batch * hkv * nsplit
            rows = batch * n * hq
            merge_blocks = -(-rows // (1 if rows < 1024 else 4))
            reps, per_block = [], []
            for _ in range(7):
                times.zero_()
                graph.replay()
                torch.cuda.synchronize()
                reps.append(wt.summarize(times.cpu(), stamps.cpu(), blocks, nsplit, merge_blocks))
                t = times.cpu()[: 8 * blocks].view(blocks, 8)
                t0 = int(stamps.cpu()[0])
                per_block.append([[int(r[0]), round((int(r[1]) - t0) / 1e3, 2), round((int(r[2]) - t0) / 1e3, 2),
                                   round((int(r[3]) - t0) / 1e3, 2), round((int(r[4]) - t0) / 1e3, 2), int(r[5])]
                                  for r in t.tolist()])  # fmt: skip
            med = {k: statistics.median(r[k] for r in reps) if reps[0][k] is not None else None for k in reps[0]}
            rec = {"batch": batch, "n": n, "variant": name, "nsplit": nsplit, "split": split, "blocks": blocks, **med}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.write(json.dumps({"batch": batch, "n": n, "variant": name, "blocks_last_rep": per_block[-1]}) + "\n")
            del graph


if __name__ == "__main__":
    main()
