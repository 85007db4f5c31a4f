"""The CUDA backend at the default model's verify shapes (batch 1, short contexts, warm L2): its own plan
against the same kernel unsplit (one block a row block, no merge kernel) and 2-4 context splits, next to
the Triton kernel. Medians of 5 interleaved CUDA-graph timings, us."""

import statistics

import torch

from gorgon.bench.kernels import HEADS, _case, time_rotating
from gorgon.kernels import cuda_ops
from gorgon.kernels.tree_attention import tree_attention

CASES = [("smollm2-135m", 1, n, p) for n in (16, 32, 64) for p in (128, 256, 768, 2048)]
CASES += [("llama-3-8b", 1, 64, 512), ("llama-3-8b", 1, 16, 512), ("smollm2-135m", 8, 64, 256)]


def measure(shape: str, b: int, n: int, p: int) -> str:
    hq, hkv, d = HEADS[shape]
    q, k, v, tree = _case(b, n, p, hq, hkv, d, torch.bfloat16)
    args = (q, k, v, tree.committed, tree.bits, p + n, d**-0.5)
    code = cuda_ops._kernel_code(q, (q, k, v, q), None, None, p)
    name = next(key for key, value in cuda_ops.KERNELS.items() if value == code)
    plan = cuda_ops.split_plan(q, k, p + n, code)
    out = torch.empty_like(q)
    fns = {"triton": lambda: tree_attention(*args), "auto": lambda: cuda_ops.tree_attention(*args, out=out)}
    for s in (1, 2, 4):
        fns[s] = lambda s=s: cuda_ops.tree_attention(*args, out=out, kernel=name, splits=s)
    want = fns["triton"]().float()
    for key, fn in fns.items():
        assert torch.allclose(fn().float(), want, atol=2e-2, rtol=2e-2), key
    times = {key: [] for key in fns}
    for _ in range(5):
        for key, fn in fns.items():
            times[key].append(time_rotating([fn]) * 1e3)
    us = {key: statistics.median(t) for key, t in times.items()}
    return (
        f"| {shape} b{b} N={n} P={p} | {us['triton']:.1f} | {us['auto']:.1f} | {name} {plan} | "
        f"{us[1]:.1f} | {us[2]:.1f} | {us[4]:.1f} |"
    )


def main() -> None:
    cuda_ops.extension()
    print("| case | triton | cuda (auto) | auto plan | unsplit | 2 splits | 4 splits |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        print(measure(*case), flush=True)


if __name__ == "__main__":
    main()
