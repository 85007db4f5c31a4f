"""Tree-attention microbenchmarks on the GPU: each backend against SDPA with a dense mask.

    python -m gorgon.bench.kernels [--quick] [--flex n64|all|off] [--shapes smollm2-135m,llama-3-8b]
    (gorgon bench kernels)

For the heads of SmolLM2-135M (9 query, 3 KV, dim 64) and Llama-3-8B (32, 8, 128), batch 1 and 8, tree
sizes N in {1, 16, 64, 128} over P in {512, 2048, 8192} committed tokens (bf16, random full top-4
trees): milliseconds per call inside a CUDA graph (median), for Gorgon's Triton kernel (and, where it would
run, its opt-in dynamic-tile kernel: backend triton_dynamic), its CUDA kernels, PyTorch SDPA with
a dense boolean mask, and FlexAttention with a tree mask_mod where it runs (compiled once per shape, so
by default only at batch 1, N=64; --flex all times it everywhere, --shapes splits the table over calls);
and the memory floor, the K/V bytes read over the measured copy bandwidth. Timed with a cold L2 (each call
reads inputs that the calls before it evicted, as a model step reads a layer's K/V) unless --warm. Rows go to
OUT/benchmark.jsonl (one JSON object per row, with backend, n, p, batch, q_heads, kv_heads, head_dim,
dtype, ms, speedup_vs_sdpa) and a table to OUT/benchmark.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from gorgon.bench.timing import copy_bandwidth, machine, matmul_throughput
from gorgon.kernels import TreeMask
from gorgon.spec.tree import ancestor_matrix

HEADS = {"smollm2-135m": (9, 3, 64), "llama-3-8b": (32, 8, 128)}


def _case(batch: int, n: int, p: int, hq: int, hkv: int, d: int, dtype: torch.dtype):
    dev = torch.device("cuda")
    parents = torch.tensor([0] + [(i - 1) // 4 for i in range(1, n)], device=dev).expand(batch, -1)
    tree = TreeMask(torch.full((batch,), p, device=dev), ancestor_matrix(parents))
    q = torch.randn(batch, n, hq, d, device=dev, dtype=dtype)
    k = torch.randn(batch, p + n, hkv, d, device=dev, dtype=dtype)
    v = torch.randn(batch, p + n, hkv, d, device=dev, dtype=dtype)
    return q, k, v, tree


def kv_bytes(batch: int, slots: int, hkv: int, d: int) -> int:
    """K and V bytes (bf16) that attention over `slots` cache slots reads once: the floor's numerator."""
    return 2 * batch * slots * hkv * d * 2


def _time(fn) -> float:
    from triton.testing import do_bench_cudagraph

    return do_bench_cudagraph(fn, rep=25, return_mode="median")


COLD_BYTES = 160 * 2**20  # K/V rotated over for a cold L2: three times the H100's 50 MB


def input_sets(batch: int, slots: int, hkv: int, d: int, cold: bool) -> int:
    """How many copies of a case's inputs to rotate over: enough that their K/V exceed COLD_BYTES, so that
    each call's K/V was evicted from the L2 by the calls since it was last read (1 when `cold` is off).
    Without it, back-to-back replays of batch-1 Llama-3-8B heads over 8192 slots (34 MB) read the L2."""
    return -(-COLD_BYTES // kv_bytes(batch, slots, hkv, d)) if cold else 1


def time_rotating(fns: list) -> float:
    """Milliseconds per call of the functions called in turn in one CUDA graph (each on its own inputs)."""
    return _time(lambda: [fn() for fn in fns]) / len(fns)


def flex_tree_attention(q, k, v, tree: TreeMask, scale: float, compiled: bool = True):
    """Tree attention as FlexAttention computes it (q [B, N, Hq, D], cache rows [B, P + N, Hkv, D]): a
    mask_mod that lets row b's tree node q_idx see every committed slot and, among the tree's slots, its
    ancestors. Returns a callable (compiled once per shape when `compiled`, as a user would run it), or
    None where FlexAttention does not run here."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        committed, anc = tree.committed, tree.ancestors
        n = anc.shape[1]

        def mask_mod(b, h, q_idx, kv_idx):
            rel = kv_idx - committed[b]
            in_tree = (rel >= 0) & (rel < n)
            return (rel < 0) | (in_tree & anc[b, q_idx, rel.clamp(0, n - 1)])

        block = create_block_mask(mask_mod, q.shape[0], None, q.shape[1], k.shape[1], device=q.device)
        attend = flex_attention
        if compiled:
            for limit in ("cache_size_limit", "recompile_limit"):  # one compile per shape, never eager
                if hasattr(torch._dynamo.config, limit):
                    setattr(torch._dynamo.config, limit, 256)
            attend = torch.compile(flex_attention, dynamic=False)
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        run = lambda: attend(qt, kt, vt, block_mask=block, scale=scale, enable_gqa=True).transpose(1, 2)
        run()
        return run
    except Exception as err:  # e.g. no Triton for this GPU, or a shape the kernel does not take
        print(f"flex_attention does not run: {str(err)[:160]}")
        return None


def measure(
    batch: int, n: int, p: int, hq: int, hkv: int, d: int, flex: str = "n64", cold: bool = True
) -> dict[str, float]:
    """Milliseconds per call of each backend for one case (bf16, a full top-4 tree), over input_sets
    copies of the inputs."""
    from gorgon.kernels import cuda_ops
    from gorgon.kernels.tree_attention import Launch, _dynamic_plan, _num_sms, tree_attention

    sets = input_sets(batch, p + n, hkv, d, cold)
    cases = [_case(batch, n, p, hq, hkv, d, torch.bfloat16) for _ in range(sets)]
    scale, kv_len = d**-0.5, p + n
    mask = cases[0][3].dense(kv_len)[:, None]  # every set has the same tree

    def sdpa(q, k, v, tree):
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        attend = F.scaled_dot_product_attention
        return lambda: attend(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=True)

    def triton_tree(q, k, v, tree):
        return lambda: tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale)

    def cuda_tree(q, k, v, tree):
        return lambda: cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale)

    def triton_dynamic(q, k, v, tree):
        dynamic = Launch(dynamic=True)
        return lambda: tree_attention(q, k, v, tree.committed, tree.bits, kv_len, scale, launch=dynamic)

    makers = {"sdpa_dense_mask": sdpa, "triton": triton_tree}
    q0 = cases[0][0]
    if _dynamic_plan(q0, Launch(dynamic=True), n * hq // hkv, batch * hkv, p, _num_sms(q0.device)):
        makers["triton_dynamic"] = triton_dynamic  # the opt-in dynamic-tile kernel, where it would run
    if cuda_ops.buildable():
        cuda_ops.extension()  # built (or loaded from the cache) before any timing or graph capture
        makers["cuda"] = cuda_tree
    times = {name: time_rotating([make(*case) for case in cases]) for name, make in makers.items()}
    if flex == "all" or (flex == "n64" and batch == 1 and n == 64):  # compiled per shape: opt-in beyond
        runs = [flex_tree_attention(*case, scale) for case in cases]
        try:
            if None not in runs:
                times["flex_attention"] = time_rotating(runs)
        except RuntimeError as err:  # e.g. a fallback that cannot be graph-captured
            print(f"flex_attention not timed: {str(err)[:120]}")
    return times


ROOFLINE_NOTE = (
    "Memory floor: K/V bytes over the measured copy bandwidth (a 1 GiB copy). Roofline: the larger of that "
    "floor and the two products over every slot at the measured cuBLAS bf16 rate. Same-size copy: a copy "
    "whose reads plus writes are the K/V bytes, timed like the kernels (in a CUDA graph): what moving that "
    "many bytes costs in one kernel, launch and ramp included, where the floor is below a few microseconds."
)
COLD_NOTE = (
    "Cold L2: every call reads inputs that the calls before it evicted (copies of the case rotated over "
    "160 MB of K/V), as a model step reads each layer's K/V once."
)


def copy_ms(nbytes: int, sets: int = 1) -> float:
    """Milliseconds of a device copy that reads and writes nbytes in all, timed like the kernels (rotating
    over `sets` sources)."""
    srcs = [torch.empty(nbytes // 2, device="cuda", dtype=torch.uint8) for _ in range(sets)]
    dst = torch.empty_like(srcs[0])
    return time_rotating([lambda src=src: dst.copy_(src) for src in srcs])


def bench(
    quick: bool = False, flex: str = "n64", shapes: list[str] | None = None, cold: bool = True
) -> list[dict]:
    bandwidth, flops = copy_bandwidth("cuda"), matmul_throughput("cuda")
    rows = []
    sizes = [(1, 16, 512), (1, 64, 2048), (1, 64, 8192), (8, 64, 2048), (8, 128, 512)]
    if not quick:
        sizes = [(b, n, p) for b in (1, 8) for n in (1, 16, 64, 128) for p in (512, 2048, 8192)]
    for shape, (hq, hkv, d) in HEADS.items():
        if shapes and shape not in shapes:
            continue
        for batch, n, p in sizes:
            times = measure(batch, n, p, hq, hkv, d, flex, cold)
            floor_ms = kv_bytes(batch, p + n, hkv, d) / bandwidth * 1e3
            # the two products over every slot at cuBLAS's dense rate: where it exceeds the memory floor
            # (many tree tokens), no kernel gets near that floor
            compute_ms = 4 * batch * hq * n * (p + n) * d / flops * 1e3
            roofline_ms = max(floor_ms, compute_ms)
            nbytes = kv_bytes(batch, p + n, hkv, d)
            same_size_ms = copy_ms(nbytes, input_sets(batch, p + n, hkv, d, cold))
            for backend, ms in times.items():
                case = {
                    "shape": shape,
                    "n": n,
                    "p": p,
                    "batch": batch,
                    "q_heads": hq,
                    "kv_heads": hkv,
                    "head_dim": d,
                }
                speed = {"ms": ms, "speedup_vs_sdpa": times["sdpa_dense_mask"] / ms, "floor_ms": floor_ms,
                         "x_floor": ms / floor_ms, "compute_floor_ms": compute_ms,
                         "x_roofline": ms / roofline_ms, "copy_ms": same_size_ms,
                         "x_copy": ms / same_size_ms}  # fmt: skip
                kind = {"kind": "kernel", "op": "tree_attention", "backend": backend, "dtype": "bfloat16",
                        "l2": "cold" if cold else "warm"}  # fmt: skip
                rows.append({**kind, **case, **speed})
                print(json.dumps(rows[-1]), flush=True)  # every row as it comes: a time limit keeps them
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports")
    p.add_argument("--quick", action="store_true", help="five cases per head shape")
    p.add_argument(
        "--flex", choices=["n64", "all", "off"], default="n64",
        help="FlexAttention (compiled once per shape, ~10 s each): batch 1 N=64 only, every case, or none",
    )  # fmt: skip
    p.add_argument("--shapes", help=f"comma-separated head shapes (default all: {', '.join(HEADS)})")
    p.add_argument("--warm", action="store_true", help="replay one set of inputs (a warm L2 where they fit)")
    args = p.parse_args(argv)
    shapes = args.shapes.split(",") if args.shapes else None
    if shapes and set(shapes) - set(HEADS):
        p.error(f"unknown head shapes {sorted(set(shapes) - set(HEADS))}; known: {', '.join(HEADS)}")
    rows = bench(args.quick, args.flex, shapes, cold=not args.warm)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine()
    with open(out / "benchmark.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps({**r, "time": now, "gpu": info.get("gpu")}) + "\n")
    head = "| shape | batch | N | P | backend | ms | speedup vs SDPA | x memory floor | x roofline |"
    head += " x same-size copy |"
    lines = [f"## Tree attention kernels ({now}, {info.get('gpu')})", "", head, "|---" * 10 + "|"]
    lines[1:1] = ["", ROOFLINE_NOTE + " " + (COLD_NOTE if not args.warm else "Warm L2: one set of inputs.")]
    for r in rows:
        speed = [f"{r['ms']:.4f}", f"{r['speedup_vs_sdpa']:.2f}x"]
        speed += [f"{r['x_floor']:.2f}", f"{r['x_roofline']:.2f}", f"{r['x_copy']:.2f}"]
        cells = [r["shape"], r["batch"], r["n"], r["p"], r["backend"], *speed]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    with open(out / "benchmark.md", "a") as f:  # the harness's report, one section per run
        f.write("\n".join(lines) + "\n\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
