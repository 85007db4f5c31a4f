"""Plain decode attention on a GPU: the tree kernel on a one-node tree against the older split kernel.

    python scripts/decode_attention_ab.py [--out DIR] [--repeats R]

One new token per row over P cached slots, SmolLM2-135M and Llama-3-8B heads, batch 1 and 8, bf16; each
kernel's output is checked against the other's, then both are timed in CUDA graphs (median), interleaved R
times, against the memory floor (K/V bytes over the measured copy bandwidth). Writes decode_ab.md/.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from gorgon.bench.kernels import HEADS, _time, kv_bytes
from gorgon.bench.timing import copy_bandwidth, machine
from gorgon.kernels import triton_ops

CASES = [(shape, b, p) for shape in HEADS for b in (1, 8) for p in (512, 2048, 8192)]


def measure(shape: str, batch: int, p: int, repeats: int, bandwidth: float) -> dict:
    hq, hkv, d = HEADS[shape]
    dev = torch.device("cuda")
    q = torch.randn(batch, 1, hq, d, device=dev, dtype=torch.bfloat16)
    k = torch.randn(batch, p + 1, hkv, d, device=dev, dtype=torch.bfloat16)
    v = torch.randn_like(k)
    positions = torch.full((batch, 1), p, device=dev)
    runs = {
        kernel: lambda kernel=kernel: triton_ops.decode_attention(q, k, v, positions, p + 1, d**-0.5, kernel)
        for kernel in triton_ops.DECODE_KERNELS
    }
    torch.testing.assert_close(runs["tree"]().float(), runs["split"]().float(), atol=2e-2, rtol=2e-2)
    times = {kernel: [] for kernel in runs}
    for _ in range(repeats):
        for kernel, fn in runs.items():
            times[kernel].append(_time(fn) * 1e3)
    us = {kernel: statistics.median(t) for kernel, t in times.items()}
    floor = kv_bytes(batch, p + 1, hkv, d) / bandwidth * 1e6
    times_us = {f"{kernel}_us": t for kernel, t in us.items()}
    return {"shape": shape, "batch": batch, "p": p, "floor_us": floor, **times_us}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bandwidth = copy_bandwidth("cuda")
    rows = [measure(*case, args.repeats, bandwidth) for case in CASES]
    (out / "decode_ab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = [
        f"Decode attention, {machine().get('gpu')}, bf16, median of {args.repeats} interleaved (us)",
        "",
        "| heads | B | P | floor | split kernel | tree kernel | split / tree | tree x floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["shape"], r["batch"], r["p"], f"{r['floor_us']:.1f}", f"{r['split_us']:.1f}"]
        cells += [f"{r['tree_us']:.1f}", f"{r['split_us'] / r['tree_us']:.2f}x"]
        cells += [f"{r['tree_us'] / r['floor_us']:.2f}"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (out / "decode_ab.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
