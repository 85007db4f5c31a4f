"""The CUDA tree-attention kernels side by side on the GPU: the mma.sync kernel in blocks of 4 and of 8
warps, and the WMMA one.

    python scripts/cuda_compare.py [--no-check] [--no-timing]

1. Accuracy: both kernels against the float64 reference (random trees, two rows of different committed
   lengths) over N in {1, 7, 64, 128}, P in {0, 5, 300, 2048, 4100}, GQA 1/3/4, head_dim 64/128, bf16 and
   fp16; the worst error per (dtype, head_dim, N), and every case past the GPU tests' tolerance.
2. Speed at Llama-3-8B heads (32 q, 8 KV, dim 128), bf16, full top-4 trees: each kernel and SDPA with a
   dense boolean mask, N in {1, 16, 64, 128}, P in {512, 2048, 8192}, batch 1 and 8. Each is captured
   10 calls to a CUDA graph (no Python or launch overhead), warmed up, then timed by CUDA events over
   replays; the median per call in microseconds, as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from gorgon.kernels import AttentionMeta, TreeMask, cuda_ops, reference
from gorgon.spec.tree import ancestor_matrix

TOL = {torch.float16: (5e-3, 5e-3), torch.bfloat16: (3e-2, 3e-2)}  # (rtol, atol) as tests/test_kernels_gpu.py
VARIANTS = ("mma4", "mma8", "wmma")


def variants() -> tuple[str, ...]:
    """The kernels this GPU runs: the mma.sync and WMMA ones, and on sm_90 the wgmma forms."""
    return VARIANTS + (("wgmma4", "wgmma8") if cuda_ops.has_wgmma() else ())


def _tree(batch: int, n: int, committed: list[int], g: torch.Generator, kind: str = "random") -> TreeMask:
    if kind == "topk":
        rows = [[0] + [(i - 1) // 4 for i in range(1, n)]] * batch
    else:
        rows = [[0] + [int(torch.randint(0, i, (), generator=g)) for i in range(1, n)] for _ in range(batch)]
    return TreeMask(torch.tensor(committed, device="cuda"), ancestor_matrix(torch.tensor(rows)).cuda())


def _check_case(dtype, d, n, p, hq, hkv, g: torch.Generator) -> dict[str, tuple[float, bool]]:
    """Per variant: (max error, whether every element is within tolerance) on one random case."""
    rtol, atol = TOL[dtype]
    tree = _tree(2, n, [p, p // 3], g)
    kv_len = p + n
    q = torch.randn(2, n, hq, d, generator=g).to("cuda", dtype)
    k = torch.randn(2, kv_len + 3, hkv, d, generator=g).to("cuda", dtype)
    v = torch.randn(2, kv_len + 3, hkv, d, generator=g).to("cuda", dtype)
    meta = AttentionMeta(torch.zeros(2, n, dtype=torch.long, device="cuda"), kv_len, tree=tree)
    ref = reference.attend(q.double(), k.double(), v.double(), meta, d**-0.5)
    result = {}
    for variant in variants():
        out = torch.full_like(q, float("nan"))  # an element the kernel does not write fails
        cuda_ops.tree_attention(q, k, v, tree.committed, tree.bits, kv_len, d**-0.5, out=out, kernel=variant)
        diff = (out.double() - ref).abs()
        ok = bool((diff <= atol + rtol * ref.abs()).all())  # NaN compares false
        err = diff.nan_to_num(float("inf")).max().item()
        result[variant] = (err, ok)
    return result


def check() -> bool:
    g = torch.Generator().manual_seed(0)
    worst: dict[tuple, dict[str, float]] = {}
    failures = []
    cases = [
        (dtype, d, n, p, hq, hkv)
        for dtype in (torch.bfloat16, torch.float16)
        for d in (64, 128)
        for n in (1, 7, 64, 128)
        for p in (0, 5, 300, 2048, 4100)
        for hq, hkv in ((8, 8), (9, 3), (32, 8))  # GQA 1, 3, 4
    ]
    for dtype, d, n, p, hq, hkv in cases:
        key = (str(dtype).removeprefix("torch."), d, n)
        for variant, (err, ok) in _check_case(dtype, d, n, p, hq, hkv, g).items():
            slot = worst.setdefault(key, {})
            slot[variant] = max(slot.get(variant, 0.0), err)
            if not ok:
                where = f"{key[0]} D={d} N={n} P={p} hq={hq} hkv={hkv}"
                failures.append(f"FAIL {variant}: {where}: max err {err:.3e}")
    torch.cuda.synchronize()
    print("\n## Accuracy: max |out - reference| over P and GQA\n")
    print("| dtype | D | N | " + " | ".join(variants()) + " |")
    print("|---|---|---|" + "---|" * len(variants()))
    for (dt, d, n), errs in worst.items():
        print(f"| {dt} | {d} | {n} | " + " | ".join(f"{errs[v]:.2e}" for v in variants()) + " |")
    print("\n".join(failures))
    print(f"\n{len(cases)} cases: " + (f"{len(failures)} failures" if failures else "all within tolerance"))
    return not failures


def _time_us(fn, calls: int = 10, reps: int = 25) -> float:
    """Median microseconds per call: `calls` calls captured in a CUDA graph, replayed `reps` times."""
    fn()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream before capture, as torch recommends
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(times)


def _time_case(batch: int, n: int, p: int, g: torch.Generator) -> dict[str, float]:
    """Microseconds per call of SDPA and each variant at Llama-3-8B heads; `diff`: mma vs SDPA."""
    hq, hkv, d = 32, 8, 128
    scale = d**-0.5
    tree = _tree(batch, n, [p] * batch, g, kind="topk")
    kv_len = p + n
    q = torch.randn(batch, n, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, kv_len, hkv, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    mask = tree.dense(kv_len)[:, None]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def sdpa():
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=True)

    outs = {x: torch.empty_like(q) for x in variants()}

    def tree_kernel(x: str):
        return lambda: cuda_ops.tree_attention(
            q, k, v, tree.committed, tree.bits, kv_len, scale, out=outs[x], kernel=x
        )

    us = {"sdpa": _time_us(sdpa), **{x: _time_us(tree_kernel(x)) for x in variants()}}
    want = sdpa().transpose(1, 2).float()
    us["diff"] = max((outs[x].float() - want).abs().max().item() for x in variants())
    for x in ("mma4", "mma8"):
        us[f"splits {x}"] = cuda_ops.split_plan(q, k, kv_len, cuda_ops.KERNELS[x])[0]
    return us


def timing() -> None:
    g = torch.Generator().manual_seed(1)
    print("\n## Speed: Llama-3-8B heads (32 q, 8 KV, D 128), bf16, microseconds per call (median)\n")
    head = "B | N | P | programs a row block (mma4, mma8) | SDPA dense mask | " + " | ".join(variants())
    print(f"| {head} | mma8 vs SDPA | mma8 vs mma4 | max diff vs SDPA |")
    print("|---" * (8 + len(variants())) + "|")
    for batch, n, p in [(b, n, p) for b in (1, 8) for n in (1, 16, 64, 128) for p in (512, 2048, 8192)]:
        us = _time_case(batch, n, p, g)
        cells = [batch, n, p, f"{us['splits mma4']}, {us['splits mma8']}"]
        cells += [f"{us[x]:.1f}" for x in ("sdpa", *variants())]
        cells += [f"{us['sdpa'] / us['mma8']:.2f}x", f"{us['mma4'] / us['mma8']:.2f}x", f"{us['diff']:.1e}"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-check", action="store_true", help="skip the accuracy sweep")
    ap.add_argument("--no-timing", action="store_true", help="skip the timing table")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cuda_ops.extension()
    print(f"{torch.cuda.get_device_name()}; extension ready in {time.perf_counter() - t0:.0f} s", flush=True)
    ok = True
    if not args.no_check:
        ok = check()
    if not args.no_timing:
        timing()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
